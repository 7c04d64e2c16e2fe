"""Arrow readers, as dataframe users reach Tarn: ADBC's PostgreSQL driver (its catalog
calls, parameterised queries, `COPY ... TO STDOUT (FORMAT binary)` for every result,
`adbc_ingest` with binary COPY, inside its default transaction and in autocommit),
pandas over ADBC, and polars through connectorx and ADBC (connectorx reads with
`COPY (query) TO STDOUT WITH BINARY` and partitions on a column). Run by
tests/python.rs.
"""

import datetime

import adbc_driver_postgresql.dbapi as adbc
import connectorx as cx
import pandas as pd
import polars as pl
import pyarrow as pa

import tarn_checks
from tarn_checks import URL, check

ROWS = {
    "id": [1, 2, 3],
    "name": ["a", "b", "c"],
    "amount": [1.5, None, 3.25],
    "created_at": [datetime.datetime(2026, 1, 1), None, datetime.datetime(2026, 1, 3, 12, 30)],
}


def setup():
    with adbc.connect(URL, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE acc_arrow (id BIGINT PRIMARY KEY, name TEXT, amount DOUBLE PRECISION, "
            "created_at TIMESTAMP, embedding VECTOR(3))")
        cur.execute("INSERT INTO acc_arrow VALUES (1, 'a', 1.5, '2026-01-01 00:00:00', '[1,2,3]'), "
                    "(2, 'b', NULL, NULL, NULL), (3, 'c', 3.25, '2026-01-03 12:30:00', '[0,0,1]')")
        cur.execute("CREATE TABLE acc_arrow_keys (a INT, b INT, c TEXT, PRIMARY KEY (a, b))")


@check
def adbc_reads_the_catalog():
    with adbc.connect(URL) as conn:
        assert conn.adbc_get_table_types() is not None
        schema = conn.adbc_get_table_schema("acc_arrow")
        assert schema.names == ["id", "name", "amount", "created_at", "embedding"], schema
        assert schema.field("id").type == pa.int64() and schema.field("amount").type == pa.float64(), schema
        assert schema.field("created_at").type == pa.timestamp("us"), schema
        # depth="all": catalogs, schemas, tables, columns and constraints (the last one
        # is a CTE over `CROSS JOIN UNNEST(conkey)`, an implicitly lateral unnest).
        objects = conn.adbc_get_objects(depth="all", db_schema_filter="public").read_all().to_pylist()
        schemas = {s["db_schema_name"]: s for c in objects for s in c["catalog_db_schemas"]}
        tables = {t["table_name"]: t for t in schemas["public"]["db_schema_tables"]}
        columns = [c["column_name"] for c in tables["acc_arrow"]["table_columns"]]
        assert columns == ["id", "name", "amount", "created_at", "embedding"], columns
        constraints = {c["constraint_name"]: c for c in tables["acc_arrow_keys"]["table_constraints"]}
        key = constraints["acc_arrow_keys_pkey"]
        assert key["constraint_type"] == "PRIMARY KEY", key
        assert sorted(key["constraint_column_names"]) == ["a", "b"], key


@check
def adbc_queries_and_parameters():
    with adbc.connect(URL) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, name, amount, created_at FROM acc_arrow ORDER BY id")
        assert cur.fetch_arrow_table().to_pydict() == ROWS
        cur.execute("SELECT id, name FROM acc_arrow WHERE amount > $1 ORDER BY id", parameters=(2.0,))
        assert cur.fetch_arrow_table().to_pydict() == {"id": [3], "name": ["c"]}
        cur.execute("SELECT count(*) AS n, sum(amount) AS s FROM acc_arrow")
        assert cur.fetch_arrow_table().to_pydict() == {"n": [3], "s": [4.75]}
        frame = pd.read_sql("SELECT id, name FROM acc_arrow ORDER BY id", conn)
        assert frame["name"].tolist() == ["a", "b", "c"], frame


@check
def adbc_ingests_in_a_transaction_and_reads_it_back():
    data = pa.table({"k": pa.array([10, 20], pa.int64()), "v": pa.array(["x", None]),
                     "f": pa.array([0.5, 2.0], pa.float64())})
    # The DB-API default: no autocommit, so the table is made, filled and read back
    # inside one transaction, then committed.
    with adbc.connect(URL) as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("acc_ingested", data, mode="create") == 2
        cur.execute("SELECT k, v, f FROM acc_ingested ORDER BY k")
        assert cur.fetch_arrow_table().to_pydict() == data.to_pydict()
        conn.commit()
        assert cur.adbc_ingest("acc_ingested", data, mode="append") == 2
        conn.rollback()
    with adbc.connect(URL, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM acc_ingested")
        assert cur.fetch_arrow_table().to_pydict() == {"n": [2]}
        assert cur.adbc_ingest("acc_ingested", data, mode="append") == 2
        cur.execute("SELECT count(*) AS n FROM acc_ingested")
        assert cur.fetch_arrow_table().to_pydict() == {"n": [4]}


@check
def polars_and_connectorx():
    query = "SELECT id, name, amount FROM acc_arrow ORDER BY id"
    expected = {k: ROWS[k] for k in ["id", "name", "amount"]}
    for engine in ["connectorx", "adbc"]:
        frame = pl.read_database_uri(query, URL, engine=engine)
        assert frame.to_dict(as_series=False) == expected, (engine, frame)
    # connectorx in two partitions: min/max over the query, then one COPY per range.
    table = cx.read_sql(URL, "SELECT id, amount FROM acc_arrow", partition_on="id", partition_num=2,
                        return_type="arrow")
    rows = sorted(zip(table.column("id").to_pylist(), table.column("amount").to_pylist()))
    assert rows == [(1, 1.5), (2, None), (3, 3.25)], rows
    frame = cx.read_sql(URL, "SELECT id, created_at FROM acc_arrow ORDER BY id", return_type="pandas")
    assert frame["created_at"].tolist()[0] == pd.Timestamp("2026-01-01"), frame


if __name__ == "__main__":
    setup()
    tarn_checks.run()
