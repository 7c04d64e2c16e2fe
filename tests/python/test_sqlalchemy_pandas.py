"""SQLAlchemy 2's Inspector and pandas, as notebooks, Streamlit apps and ETL scripts
use them: reflection of a table with a vector column, a primary key and bm25 and hnsw
indexes; `read_sql` of a query, `read_sql_table` and `DataFrame.to_sql`; server-side
cursors (psycopg2's named cursors, pandas' `chunksize`). Run by tests/python.rs.
"""

import pandas as pd
from sqlalchemy import create_engine, inspect, text

import tarn_checks
from tarn_checks import URL, check


def engine(driver="psycopg"):
    return create_engine(URL.replace("postgresql://", f"postgresql+{driver}://"))


def setup():
    with engine().begin() as conn:
        conn.execute(text(
            "CREATE TABLE reflected (id BIGINT PRIMARY KEY, title TEXT NOT NULL DEFAULT 'untitled', "
            "price NUMERIC(10,2), created TIMESTAMP, embedding VECTOR(3))"))
        conn.execute(text("CREATE INDEX reflected_title ON reflected USING bm25 (title)"))
        conn.execute(text("CREATE INDEX reflected_embedding ON reflected USING hnsw (embedding vector_l2_ops)"))
        conn.execute(text("INSERT INTO reflected VALUES (1, 'lamp', 19.5, '2026-01-02 03:04:05', '[1,2,3]'), "
                          "(2, 'desk', 120, NULL, NULL)"))
        conn.execute(text("CREATE VIEW reflected_cheap AS SELECT id, title FROM reflected WHERE price < 50"))


@check
def inspector_reflects_tables_columns_keys_and_indexes():
    for driver in ["psycopg", "psycopg2"]:
        inspector = inspect(engine(driver))
        assert "public" in inspector.get_schema_names(), driver
        assert "reflected" in inspector.get_table_names(), driver
        assert inspector.get_view_names() == ["reflected_cheap"], driver
        assert "reflected_cheap" not in inspector.get_table_names(), driver
        assert "SELECT id, title FROM reflected" in inspector.get_view_definition("reflected_cheap"), driver
        view_columns = [(c["name"], str(c["type"])) for c in inspector.get_columns("reflected_cheap")]
        assert view_columns == [("id", "BIGINT"), ("title", "TEXT")], view_columns
        assert inspector.has_table("reflected") and not inspector.has_table("nothing"), driver
        columns = {c["name"]: c for c in inspector.get_columns("reflected")}
        assert list(columns) == ["id", "title", "price", "created", "embedding"], columns
        assert str(columns["id"]["type"]) == "BIGINT" and not columns["id"]["nullable"]
        assert columns["title"]["default"] == "'untitled'", columns["title"]
        assert str(columns["price"]["type"]) == "NUMERIC(10, 2)", columns["price"]
        assert str(columns["created"]["type"]) == "TIMESTAMP", columns["created"]
        pk = inspector.get_pk_constraint("reflected")
        assert pk["constrained_columns"] == ["id"] and pk["name"] == "reflected_pkey", pk
        indexes = {i["name"]: i for i in inspector.get_indexes("reflected")}
        assert indexes["reflected_title"]["column_names"] == ["title"], indexes
        assert indexes["reflected_title"]["dialect_options"]["postgresql_using"] == "bm25", indexes
        assert indexes["reflected_embedding"]["dialect_options"]["postgresql_using"] == "hnsw", indexes
        assert inspector.get_foreign_keys("reflected") == []
        assert inspector.get_unique_constraints("reflected") == []
        assert inspector.get_check_constraints("reflected") == []
        assert inspector.get_table_comment("reflected") == {"text": None}


@check
def pandas_reads_and_writes():
    e = engine()
    frame = pd.read_sql("SELECT id, title, price FROM reflected ORDER BY id", e)
    assert frame["title"].tolist() == ["lamp", "desk"], frame
    assert [float(p) for p in frame["price"]] == [19.5, 120.0], frame
    table = pd.read_sql_table("reflected", e)
    assert len(table) == 2 and list(table.columns) == ["id", "title", "price", "created", "embedding"], table
    out = pd.DataFrame({"id": [1, 2, 3], "name": ["a", "b", None], "amount": [1.5, None, 3.25]})
    # to_sql's return is the driver's rowcount, -1 through psycopg 3 (as on PostgreSQL).
    out.to_sql("from_pandas", e, index=False)
    back = pd.read_sql("SELECT * FROM from_pandas ORDER BY id", e)
    assert back["id"].tolist() == [1, 2, 3], back
    assert back["name"].tolist()[:2] == ["a", "b"] and back["name"].isna().tolist()[2], back
    out.to_sql("from_pandas", e, index=False, if_exists="append")
    assert pd.read_sql("SELECT count(*) AS n FROM from_pandas", e)["n"][0] == 6
    out.to_sql("from_pandas", e, index=False, if_exists="replace")
    assert pd.read_sql("SELECT count(*) AS n FROM from_pandas", e)["n"][0] == 3


@check
def server_side_cursors_read_in_portions():
    import psycopg2

    conn = psycopg2.connect(tarn_checks.DSN)
    try:
        # psycopg2's named cursor: DECLARE ... CURSOR WITHOUT HOLD, FETCH FORWARD 3, CLOSE.
        with conn.cursor(name="portions") as cur:
            cur.itersize = 3
            cur.execute("SELECT n FROM generate_series(1, 10) AS g(n) ORDER BY n")
            assert [r[0] for r in cur] == list(range(1, 11))
        conn.commit()
    finally:
        conn.close()
    # pandas in chunks over SQLAlchemy's stream_results (a named cursor underneath).
    with engine("psycopg2").connect().execution_options(stream_results=True) as conn:
        chunks = list(pd.read_sql(text("SELECT id FROM reflected ORDER BY id"), conn, chunksize=1))
    assert [c["id"].tolist() for c in chunks] == [[1], [2]], chunks


if __name__ == "__main__":
    setup()
    tarn_checks.run()
