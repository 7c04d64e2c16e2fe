"""pgvector's Python clients against Tarn, as pgvector users write them.

Each of psycopg 3, psycopg2, asyncpg and SQLAlchemy 2 goes through pgvector-python's
adapters: numpy vectors as parameters, vectors read back as equal arrays, the four
distance operators and functions checked against numpy, COPY in text and binary form,
and HNSW / IVFFlat indexes. Every check builds its own table, so one missing feature
fails its checks only. Run by tests/python.rs.
"""

import numpy as np

import tarn_checks
from tarn_checks import DSN, URL, HOST, PORT, USER, DBNAME, check

# No two rows tie in any metric for QUERY (checked below), so every ordering is exact.
VECTORS = np.array(
    [
        [1, 1, 1],
        [2, 2, 2.5],
        [1, 1, 2],
        [-1, 0.5, 3],
        [0.25, -2, 1.5],
        [3, 0, -1],
        [0.5, 0.75, -0.125],
    ],
    dtype=np.float32,
)
IDS = list(range(1, len(VECTORS) + 1))
QUERY = np.array([1, 1.5, 1.25], dtype=np.float32)
OPERATORS = ["<->", "<=>", "<#>", "<+>"]
LIMIT = 5


def numpy_distances(op, vectors=VECTORS, q=QUERY):
    """pgvector's distance for `op`, in float64."""
    v, q = vectors.astype(np.float64), q.astype(np.float64)
    if op == "<->":
        return np.linalg.norm(v - q, axis=1)
    if op == "<=>":
        return 1 - v @ q / (np.linalg.norm(v, axis=1) * np.linalg.norm(q))
    if op == "<#>":
        return -(v @ q)
    if op == "<+>":
        return np.abs(v - q).sum(axis=1)
    raise ValueError(op)


for _op in OPERATORS:
    assert len(set(np.round(numpy_distances(_op), 6))) == len(VECTORS), f"ties for {_op}"


def expected_nearest(op, limit=LIMIT):
    """[(id, distance)] of the `limit` nearest rows by numpy."""
    d = numpy_distances(op)
    order = np.argsort(d)[:limit]
    return [(IDS[i], float(d[i])) for i in order]


def assert_nearest(op, rows, what=""):
    """`rows` are (id, distance) pairs from the server, nearest first."""
    want = expected_nearest(op)
    got_ids = [int(r[0]) for r in rows]
    want_ids = [i for i, _ in want]
    assert got_ids == want_ids, f"{what} ORDER BY embedding {op} q: ids {got_ids}, numpy says {want_ids}"
    for (i, got), (_, expected) in zip(rows, want):
        if got is None:
            continue
        assert np.isclose(float(got), expected, rtol=1e-5, atol=1e-6), (
            f"{what} {op} distance of row {i}: server {got}, numpy {expected}"
        )


def assert_vectors_equal(rows, what=""):
    """`rows` are (id, numpy vector) pairs ordered by id, for every id in IDS."""
    assert [int(r[0]) for r in rows] == IDS, f"{what}: ids {[r[0] for r in rows]}"
    for i, v in rows:
        assert isinstance(v, np.ndarray), f"{what}: row {i} came back as {type(v).__name__}, not numpy"
        assert v.dtype == np.float32, f"{what}: row {i} has dtype {v.dtype}"
        assert np.array_equal(v, VECTORS[i - 1]), f"{what}: row {i} read back as {v}, wrote {VECTORS[i - 1]}"


def literal(v):
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


def literal_rows():
    """The rows as SQL literals: tables built this way do not depend on client adapters."""
    return ", ".join(f"({i}, '{literal(v)}')" for i, v in zip(IDS, VECTORS))


# --- psycopg 3 -------------------------------------------------------------------------

import psycopg
from psycopg.types import TypeInfo
from pgvector import Vector
from pgvector.psycopg import register_vector


def pg3(register=True):
    conn = psycopg.connect(DSN, autocommit=True, connect_timeout=10)
    if register:
        register_vector(conn)
    return conn


def pg3_table(conn, name, rows=True):
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, embedding vector(3))")
    if rows:
        conn.execute(f"INSERT INTO {name} (id, embedding) VALUES {literal_rows()}")


@check
def catalog_knows_vector():
    """The catalog rows pgvector's adapters look up: pg_type, to_regtype, regtype text."""
    with pg3(register=False) as conn:
        row = conn.execute(
            "SELECT t.typname, n.nspname, a.typname FROM pg_type t"
            " JOIN pg_namespace n ON n.oid = t.typnamespace"
            " JOIN pg_type a ON a.oid = t.typarray"
            " WHERE t.oid = to_regtype('vector')"
        ).fetchall()
        assert row == [("vector", "public", "_vector")], row
        # psycopg's TypeInfo query, which pgvector.psycopg runs for vector and bit.
        regtype = conn.execute("SELECT oid::regtype::text FROM pg_type WHERE oid = to_regtype('vector')").fetchall()
        assert regtype == [("vector",)], regtype
        assert conn.execute("SELECT to_regtype('no_such_type')").fetchone() == (None,)
        info = TypeInfo.fetch(conn, "vector")
        assert info is not None and info.name == "vector" and info.array_oid, info


@check
def psycopg3_register_vector():
    with pg3(register=False) as conn:
        # register_vector looks up `vector` and Postgres' own `bit` (and halfvec and
        # sparsevec, which may be missing); it asserts that `bit` is there.
        assert TypeInfo.fetch(conn, "bit") is not None, (
            "pg_type has no row for to_regtype('bit'): pgvector.psycopg.register_vector needs it"
        )
        register_vector(conn)


@check
def psycopg3_numpy_round_trip():
    """numpy parameters in every format psycopg offers; read back in text and binary."""
    with pg3() as conn:
        pg3_table(conn, "pg3_items", rows=False)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO pg3_items (id, embedding) VALUES (%s, %s)",
                [(i, VECTORS[i - 1]) for i in IDS[:3]],
            )
            cur.execute("INSERT INTO pg3_items (id, embedding) VALUES (%s, %b)", (4, VECTORS[3]))
            cur.execute("INSERT INTO pg3_items (id, embedding) VALUES (%s, %t)", (5, VECTORS[4]))
            cur.execute("INSERT INTO pg3_items (id, embedding) VALUES (%s, %s)", (6, Vector(VECTORS[5])))
            cur.execute("INSERT INTO pg3_items (id, embedding) VALUES (%s, %s)", (7, VECTORS[6]))
        rows = conn.execute("SELECT id, embedding FROM pg3_items ORDER BY id").fetchall()
        assert all(isinstance(v, Vector) for _, v in rows), [type(v) for _, v in rows]
        assert_vectors_equal([(i, v.to_numpy()) for i, v in rows], "text results")
        with conn.cursor(binary=True) as cur:
            rows = cur.execute("SELECT id, embedding FROM pg3_items ORDER BY id").fetchall()
        assert_vectors_equal([(i, v.to_numpy()) for i, v in rows], "binary results")
        # A parameter read straight back, and the text form of a vector. (A bare
        # `%b::vector`, with no dimension and no vector column beside it, is not
        # supported yet: Tarn types a plan before the parameter's value arrives.)
        (back,) = conn.execute(f"SELECT %b::vector({len(QUERY)})", (QUERY,)).fetchone()
        assert np.array_equal(back.to_numpy(), QUERY), back
        (text,) = conn.execute("SELECT embedding::text FROM pg3_items WHERE id = 2").fetchone()
        assert text == "[2,2,2.5]", text


@check
def psycopg3_list_parameter():
    """psycopg 3 sends a Python list as float8[]; pgvector casts arrays to vector on
    assignment, so this works on Postgres."""
    with pg3() as conn:
        pg3_table(conn, "pg3_list", rows=False)
        conn.execute("INSERT INTO pg3_list (id, embedding) VALUES (%s, %s)", (1, VECTORS[0].tolist()))
        (back,) = conn.execute("SELECT embedding FROM pg3_list").fetchone()
        assert np.array_equal(back.to_numpy(), VECTORS[0]), back


@check
def psycopg3_distance_operators():
    with pg3() as conn:
        pg3_table(conn, "pg3_ops")
        for op in OPERATORS:
            rows = conn.execute(
                f"SELECT id, embedding {op} %s AS distance FROM pg3_ops ORDER BY embedding {op} %s LIMIT {LIMIT}",
                (QUERY, QUERY),
            ).fetchall()
            assert_nearest(op, rows, "psycopg 3")
        # The same with the query vector bound in binary form, and ordered by the alias.
        for op in OPERATORS:
            rows = conn.execute(
                f"SELECT id, embedding {op} %b AS distance FROM pg3_ops ORDER BY distance LIMIT {LIMIT}",
                (QUERY,),
            ).fetchall()
            assert_nearest(op, rows, "psycopg 3 binary parameter")
        # The text form as a parameter, cast as the pgvector docs write it.
        for op in OPERATORS:
            rows = conn.execute(
                f"SELECT id, embedding {op} %s::vector FROM pg3_ops ORDER BY embedding {op} %s::vector LIMIT {LIMIT}",
                (literal(QUERY), literal(QUERY)),
            ).fetchall()
            assert_nearest(op, rows, "psycopg 3 text parameter cast to vector")


@check
def psycopg3_distance_functions():
    with pg3() as conn:
        pg3_table(conn, "pg3_funcs")
        rows = conn.execute(
            "SELECT id, l2_distance(embedding, %s), cosine_distance(embedding, %s),"
            " inner_product(embedding, %s), l1_distance(embedding, %s),"
            " vector_dims(embedding), vector_norm(embedding) FROM pg3_funcs ORDER BY id",
            (QUERY,) * 4,
        ).fetchall()
        assert [r[0] for r in rows] == IDS, rows
        got = np.array([r[1:] for r in rows], dtype=np.float64)
        v = VECTORS.astype(np.float64)
        want = np.column_stack(
            [
                numpy_distances("<->"),
                numpy_distances("<=>"),
                v @ QUERY.astype(np.float64),
                numpy_distances("<+>"),
                np.full(len(IDS), 3),
                np.linalg.norm(v, axis=1),
            ]
        )
        names = ["l2_distance", "cosine_distance", "inner_product", "l1_distance", "vector_dims", "vector_norm"]
        for j, name in enumerate(names):
            assert np.allclose(got[:, j], want[:, j], rtol=1e-5, atol=1e-6), (
                f"{name}: server {got[:, j]}, numpy {want[:, j]}"
            )
        assert all(isinstance(r[5], int) for r in rows), "vector_dims returns an integer"


@check
def psycopg3_copy_binary_in():
    """pgvector-python's bulk-loading recipe: COPY ... FROM STDIN WITH (FORMAT BINARY)."""
    with pg3() as conn:
        pg3_table(conn, "pg3_copy_bin", rows=False)
        with conn.cursor() as cur:
            with cur.copy("COPY pg3_copy_bin (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "vector"])
                for i in IDS:
                    copy.write_row([i, VECTORS[i - 1]])
            assert cur.rowcount == len(IDS), cur.rowcount
        rows = conn.execute("SELECT id, embedding FROM pg3_copy_bin ORDER BY id").fetchall()
        assert_vectors_equal([(i, v.to_numpy()) for i, v in rows], "after COPY binary")


@check
def psycopg3_copy_binary_out():
    with pg3() as conn:
        pg3_table(conn, "pg3_copy_out")
        with conn.cursor() as cur:
            with cur.copy("COPY (SELECT id, embedding FROM pg3_copy_out ORDER BY id) TO STDOUT WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "vector"])
                rows = list(copy.rows())
        assert_vectors_equal([(i, v.to_numpy()) for i, v in rows], "COPY TO binary")


@check
def psycopg3_copy_text_in():
    with pg3() as conn:
        pg3_table(conn, "pg3_copy_text", rows=False)
        with conn.cursor() as cur:
            with cur.copy("COPY pg3_copy_text (id, embedding) FROM STDIN") as copy:
                for i in IDS:
                    copy.write_row([i, VECTORS[i - 1]])
        rows = conn.execute("SELECT id, embedding FROM pg3_copy_text ORDER BY id").fetchall()
        assert_vectors_equal([(i, v.to_numpy()) for i, v in rows], "after COPY text")


@check
def psycopg3_dimension_errors():
    """pgvector's messages for a wrong dimension count."""
    with pg3() as conn:
        pg3_table(conn, "pg3_dims", rows=False)
        try:
            conn.execute("INSERT INTO pg3_dims VALUES (1, %s)", (np.array([1, 2], dtype=np.float32),))
        except psycopg.Error as error:
            assert "expected 3 dimensions, not 2" in str(error), tarn_checks.describe(error)
        else:
            raise AssertionError("a 2-dimensional vector went into a vector(3) column")
        try:
            conn.execute("SELECT '[1,2]'::vector <-> '[1,2,3]'::vector")
        except psycopg.Error as error:
            assert "different vector dimensions 2 and 3" in str(error), tarn_checks.describe(error)
        else:
            raise AssertionError("<-> between vectors of 2 and 3 dimensions gave a result")


@check
def psycopg3_nulls():
    with pg3() as conn:
        pg3_table(conn, "pg3_nulls")
        conn.execute("INSERT INTO pg3_nulls VALUES (%s, %s)", (100, None))
        assert conn.execute("SELECT embedding FROM pg3_nulls WHERE id = 100").fetchone() == (None,)
        rows = conn.execute(
            "SELECT id, embedding <-> %s FROM pg3_nulls ORDER BY embedding <-> %s", (QUERY, QUERY)
        ).fetchall()
        assert rows[-1] == (100, None), f"NULL distance sorts last (ASC NULLS LAST): {rows}"
        assert len(rows) == len(IDS) + 1, rows


def pg3_assert_index_answers(conn, table, ops):
    for op in ops:
        rows = conn.execute(
            f"SELECT id, embedding {op} %s FROM {table} ORDER BY embedding {op} %s LIMIT {LIMIT}", (QUERY, QUERY)
        ).fetchall()
        assert_nearest(op, rows, f"{table} with index")


@check
def psycopg3_hnsw_index():
    with pg3() as conn:
        pg3_table(conn, "pg3_hnsw")
        conn.execute("CREATE INDEX ON pg3_hnsw USING hnsw (embedding vector_l2_ops)")
        pg3_assert_index_answers(conn, "pg3_hnsw", ["<->"])
        conn.execute("SET hnsw.ef_search = 100")
        assert conn.execute("SHOW hnsw.ef_search").fetchone() == ("100",)
        pg3_assert_index_answers(conn, "pg3_hnsw", ["<->"])
        # Rows written after the index is built are found through it.
        conn.execute("INSERT INTO pg3_hnsw VALUES (%s, %s)", (50, QUERY))
        rows = conn.execute("SELECT id, embedding <-> %s FROM pg3_hnsw ORDER BY embedding <-> %s LIMIT 1", (QUERY, QUERY)).fetchall()
        assert rows == [(50, 0.0)], rows
        conn.execute("DELETE FROM pg3_hnsw WHERE id = 50")
        pg3_assert_index_answers(conn, "pg3_hnsw", ["<->"])


@check
def psycopg3_hnsw_index_opclasses():
    with pg3() as conn:
        pg3_table(conn, "pg3_hnsw_cos")
        conn.execute(
            "CREATE INDEX pg3_hnsw_cos_idx ON pg3_hnsw_cos USING hnsw (embedding vector_cosine_ops)"
            " WITH (m = 16, ef_construction = 64)"
        )
        pg3_assert_index_answers(conn, "pg3_hnsw_cos", ["<=>"])
        pg3_table(conn, "pg3_hnsw_ip")
        conn.execute("CREATE INDEX ON pg3_hnsw_ip USING hnsw (embedding vector_ip_ops)")
        pg3_assert_index_answers(conn, "pg3_hnsw_ip", ["<#>"])
        conn.execute("DROP INDEX pg3_hnsw_cos_idx")
        pg3_assert_index_answers(conn, "pg3_hnsw_cos", ["<=>"])


@check
def psycopg3_ivfflat_index():
    with pg3() as conn:
        pg3_table(conn, "pg3_ivf")
        conn.execute("CREATE INDEX ON pg3_ivf USING ivfflat (embedding vector_l2_ops) WITH (lists = 2)")
        # Probing every list is exact.
        conn.execute("SET ivfflat.probes = 2")
        assert conn.execute("SHOW ivfflat.probes").fetchone() == ("2",)
        pg3_assert_index_answers(conn, "pg3_ivf", ["<->"])


# --- psycopg2 --------------------------------------------------------------------------

import psycopg2
import pgvector.psycopg2


def pg2():
    conn = psycopg2.connect(DSN, connect_timeout=10)
    conn.autocommit = True
    return conn


@check
def psycopg2_numpy_round_trip():
    conn = pg2()
    try:
        pgvector.psycopg2.register_vector(conn)
        cur = conn.cursor()
        cur.execute("DROP TABLE IF EXISTS pg2_items")
        cur.execute("CREATE TABLE pg2_items (id bigint PRIMARY KEY, embedding vector(3))")
        cur.executemany("INSERT INTO pg2_items (id, embedding) VALUES (%s, %s)", [(i, VECTORS[i - 1]) for i in IDS])
        cur.execute("SELECT id, embedding FROM pg2_items ORDER BY id")
        rows = cur.fetchall()
        assert_vectors_equal([(i, v.to_numpy()) for i, v in rows], "psycopg2")
        for op in OPERATORS:
            cur.execute(
                f"SELECT id, embedding {op} %s FROM pg2_items ORDER BY embedding {op} %s LIMIT {LIMIT}",
                (QUERY, QUERY),
            )
            assert_nearest(op, cur.fetchall(), "psycopg2")
        cur.execute(
            "SELECT l2_distance(embedding, %s), cosine_distance(embedding, %s) FROM pg2_items WHERE id = 1",
            (QUERY, QUERY),
        )
        l2, cos = cur.fetchone()
        assert np.isclose(l2, numpy_distances("<->")[0], rtol=1e-5), l2
        assert np.isclose(cos, numpy_distances("<=>")[0], rtol=1e-5, atol=1e-6), cos
    finally:
        conn.close()


# --- asyncpg ---------------------------------------------------------------------------

import asyncpg
import pgvector.asyncpg


async def apg():
    conn = await asyncpg.connect(host=HOST, port=PORT, user=USER, database=DBNAME, timeout=10)
    await pgvector.asyncpg.register_vector(conn)
    return conn


@check
async def asyncpg_numpy_round_trip():
    """asyncpg with pgvector's binary codec: parameters and results in binary form."""
    conn = await apg()
    try:
        await conn.execute("DROP TABLE IF EXISTS apg_items")
        await conn.execute("CREATE TABLE apg_items (id bigint PRIMARY KEY, embedding vector(3))")
        await conn.executemany(
            "INSERT INTO apg_items (id, embedding) VALUES ($1, $2)", [(i, VECTORS[i - 1]) for i in IDS]
        )
        rows = await conn.fetch("SELECT id, embedding FROM apg_items ORDER BY id")
        assert_vectors_equal([(r["id"], r["embedding"].to_numpy()) for r in rows], "asyncpg")
        for op in OPERATORS:
            rows = await conn.fetch(
                f"SELECT id, embedding {op} $1 AS distance FROM apg_items ORDER BY embedding {op} $1 LIMIT {LIMIT}",
                QUERY,
            )
            assert_nearest(op, [(r["id"], r["distance"]) for r in rows], "asyncpg")
        dims = await conn.fetchval("SELECT vector_dims(embedding) FROM apg_items WHERE id = $1", 3)
        assert dims == 3, dims
    finally:
        await conn.close()


@check
async def asyncpg_copy_records_to_table():
    """asyncpg's bulk load: COPY ... FROM STDIN (FORMAT binary) through the codec."""
    conn = await apg()
    try:
        await conn.execute("DROP TABLE IF EXISTS apg_copy")
        await conn.execute("CREATE TABLE apg_copy (id bigint PRIMARY KEY, embedding vector(3))")
        result = await conn.copy_records_to_table(
            "apg_copy", records=[(i, VECTORS[i - 1]) for i in IDS], columns=["id", "embedding"]
        )
        assert result == f"COPY {len(IDS)}", result
        rows = await conn.fetch("SELECT id, embedding FROM apg_copy ORDER BY id")
        assert_vectors_equal([(r["id"], r["embedding"].to_numpy()) for r in rows], "asyncpg after COPY")
    finally:
        await conn.close()


# --- SQLAlchemy 2 ----------------------------------------------------------------------

from sqlalchemy import BigInteger, Index, create_engine, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from pgvector.sqlalchemy import Vector as SaVector


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "sa_items"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    embedding = mapped_column(SaVector(3))


class CreatedBase(DeclarativeBase):
    pass


class CreatedItem(CreatedBase):
    """Created by `metadata.create_all`, with the index pgvector's README declares."""

    __tablename__ = "sa_created"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    embedding = mapped_column(SaVector(3))
    __table_args__ = (
        Index(
            "sa_created_embedding_idx",
            "embedding",
            postgresql_using="hnsw",
            postgresql_with={"m": 16, "ef_construction": 64},
            postgresql_ops={"embedding": "vector_l2_ops"},
        ),
    )


def sa_engine(driver="psycopg"):
    return create_engine(URL.replace("postgresql://", f"postgresql+{driver}://"), connect_args={"connect_timeout": 10})


@check
def sqlalchemy_orm_queries():
    engine = sa_engine()
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS sa_items"))
            conn.execute(text("CREATE TABLE sa_items (id bigint PRIMARY KEY, embedding vector(3))"))
        with Session(engine) as session:
            session.add_all([Item(id=i, embedding=VECTORS[i - 1]) for i in IDS])
            session.commit()
        with Session(engine) as session:
            items = session.scalars(select(Item).order_by(Item.id)).all()
            assert_vectors_equal([(it.id, np.array(it.embedding, dtype=np.float32)) for it in items], "SQLAlchemy")
            for op, method in [
                ("<->", "l2_distance"),
                ("<=>", "cosine_distance"),
                ("<#>", "max_inner_product"),
                ("<+>", "l1_distance"),
            ]:
                distance = getattr(Item.embedding, method)(QUERY)
                nearest = session.scalars(select(Item).order_by(distance).limit(LIMIT)).all()
                want = [i for i, _ in expected_nearest(op)]
                assert [it.id for it in nearest] == want, f"{method}: {[it.id for it in nearest]}, numpy {want}"
                rows = session.execute(select(Item.id, distance).order_by(distance).limit(LIMIT)).all()
                assert_nearest(op, rows, f"SQLAlchemy {method}")
            within = session.scalars(select(Item.id).filter(Item.embedding.l2_distance(QUERY) < 1)).all()
            assert sorted(within) == [1, 3], within
    finally:
        engine.dispose()


@check
def sqlalchemy_create_all_with_hnsw_index():
    engine = sa_engine()
    try:
        CreatedBase.metadata.drop_all(engine)
        CreatedBase.metadata.create_all(engine)
        with Session(engine) as session:
            session.add_all([CreatedItem(id=i, embedding=VECTORS[i - 1]) for i in IDS])
            session.commit()
            distance = CreatedItem.embedding.l2_distance(QUERY)
            rows = session.execute(select(CreatedItem.id, distance).order_by(distance).limit(LIMIT)).all()
            assert_nearest("<->", rows, "SQLAlchemy create_all + hnsw")
    finally:
        engine.dispose()


@check
def sqlalchemy_psycopg2_driver():
    engine = sa_engine("psycopg2")
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS sa2_items"))
            conn.execute(text("CREATE TABLE sa2_items (id bigint PRIMARY KEY, embedding vector(3))"))
            conn.execute(text(f"INSERT INTO sa2_items VALUES {literal_rows()}"))
        with Session(engine) as session:
            table = Item.__table__.to_metadata(Base.metadata.__class__(), name="sa2_items")
            distance = table.c.embedding.cosine_distance(QUERY)
            rows = session.execute(select(table.c.id, distance).order_by(distance).limit(LIMIT)).all()
            assert_nearest("<=>", rows, "SQLAlchemy over psycopg2")
    finally:
        engine.dispose()


if __name__ == "__main__":
    tarn_checks.run()
