"""Server-side parameters wherever PostgreSQL takes them, sent by psycopg 3 as users send them.

psycopg 3 binds parameters on the server (the extended protocol): a Python str goes as
text of unknown type (OID 0), a Python int as int2/int4/int8 by its size, a list as an
array, a timedelta as an interval. The server must infer each unknown's type from where
it stands, as PostgreSQL does. Each check compares with the answer PostgreSQL gives.
Run by tests/python.rs.
"""

import datetime

import psycopg

import tarn_checks
from tarn_checks import DSN, check


def conn():
    return psycopg.connect(DSN, autocommit=True)


def table(c, name):
    c.execute(f"DROP TABLE IF EXISTS {name}")
    c.execute(f"CREATE TABLE {name} (id BIGINT PRIMARY KEY, name TEXT, score DOUBLE PRECISION, at TIMESTAMP)")
    c.execute(
        f"INSERT INTO {name} VALUES (1, 'a', 1.5, '2026-01-01 00:00:00'), (2, 'b', 2.5, '2026-01-02 00:00:00'),"
        " (3, 'c', NULL, '2026-01-03 00:00:00'), (4, 'd', 4.5, NULL)"
    )


@check
def insert_select_from_generate_series_with_parameters():
    # The first symptom: `Argument #2 must be an INTEGER or NULL, got Placeholder`.
    with conn() as c:
        c.execute("DROP TABLE IF EXISTS gs")
        c.execute("CREATE TABLE gs (i BIGINT PRIMARY KEY, label TEXT)")
        c.execute("INSERT INTO gs SELECT i, %s FROM generate_series(0, %s) AS t(i)", ("x", 9))
        assert c.execute("SELECT count(*), min(label), max(i) FROM gs").fetchone() == (10, "x", 9)
        rows = c.execute("SELECT * FROM generate_series(%s, %s) AS t(i)", (3, 5)).fetchall()
        assert rows == [(3,), (4,), (5,)], rows
        # As text of unknown type (what a str parameter is), too.
        rows = c.execute("SELECT count(*) FROM generate_series(1, %s::text::bigint)", ("4",)).fetchone()
        assert rows == (4,), rows


@check
def limit_and_offset_parameters():
    with conn() as c:
        table(c, "lim")
        rows = c.execute("SELECT id FROM lim ORDER BY id LIMIT %s OFFSET %s", (2, 1)).fetchall()
        assert rows == [(2,), (3,)], rows
        # knex-style: a limit sent as text of unknown type.
        cur = c.cursor()
        rows = cur.execute("SELECT id FROM lim WHERE id > %s ORDER BY id LIMIT %s", (0, "3")).fetchall()
        assert rows == [(1,), (2,), (3,)], rows


@check
def in_any_and_arrays():
    with conn() as c:
        table(c, "arr")
        rows = c.execute("SELECT id FROM arr WHERE id IN (%s, %s) ORDER BY id", (2, 4)).fetchall()
        assert rows == [(2,), (4,)], rows
        rows = c.execute("SELECT id FROM arr WHERE id = ANY(%s) ORDER BY id", ([1, 3],)).fetchall()
        assert rows == [(1,), (3,)], rows
        rows = c.execute("SELECT id FROM arr WHERE name = ANY(%s) ORDER BY id", (["b", "d", "zz"],)).fetchall()
        assert rows == [(2,), (4,)], rows
        rows = c.execute("SELECT id FROM arr WHERE name = ANY(%s)", ([],)).fetchall()
        assert rows == [], rows


@check
def case_casts_and_functions():
    with conn() as c:
        table(c, "cs")
        rows = c.execute(
            "SELECT id, CASE WHEN score > %s THEN %s ELSE 'low' END FROM cs WHERE score IS NOT NULL ORDER BY id",
            (2, "high"),
        ).fetchall()
        assert rows == [(1, "low"), (2, "high"), (4, "high")], rows
        rows = c.execute("SELECT CASE WHEN %s THEN 1 ELSE 2 END", (True,)).fetchall()
        assert rows == [(1,)], rows
        rows = c.execute("SELECT CASE %s WHEN 'a' THEN 'first' ELSE 'other' END", ("a",)).fetchall()
        assert rows == [("first",)], rows
        assert c.execute("SELECT %s::int + 1", ("41",)).fetchone() == (42,)
        assert c.execute("SELECT upper(%s), length(%s)", ("abc", "hello")).fetchone() == ("ABC", 5)
        assert c.execute("SELECT coalesce(NULL, %s)", ("z",)).fetchone() == ("z",)


@check
def interval_arithmetic():
    with conn() as c:
        table(c, "iv")
        rows = c.execute(
            "SELECT id FROM iv WHERE at > %s::timestamp - %s::interval ORDER BY id",
            (datetime.datetime(2026, 1, 3), "1 day 1 hour"),
        ).fetchall()
        assert rows == [(2,), (3,)], rows
        rows = c.execute(
            "SELECT id FROM iv WHERE at >= %s - %s ORDER BY id",
            (datetime.datetime(2026, 1, 3), datetime.timedelta(days=1)),
        ).fetchall()
        assert rows == [(2,), (3,)], rows


@check
def upsert_set_from_parameters():
    with conn() as c:
        table(c, "up")
        c.execute(
            "INSERT INTO up (id, name, score) VALUES (%s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET name = %s, score = up.score + %s",
            (1, "ignored", 0.0, "renamed", 10),
        )
        assert c.execute("SELECT name, score FROM up WHERE id = 1").fetchone() == ("renamed", 11.5)
        c.execute("UPDATE up SET score = %s WHERE name = %s", (7, "b"))
        assert c.execute("SELECT score FROM up WHERE id = 2").fetchone() == (7.0,)


@check
def prepared_statements_reused():
    # psycopg prepares a statement after it has run it a few times (prepare_threshold).
    with psycopg.connect(DSN, autocommit=True, prepare_threshold=1) as c:
        table(c, "prep")
        for n in range(1, 5):
            rows = c.execute("SELECT id FROM prep ORDER BY id LIMIT %s", (n,)).fetchall()
            assert len(rows) == n, (n, rows)


@check
def set_of_a_reported_setting_sends_parameter_status():
    # libpq keeps what the server reports (ParameterStatus); PostgreSQL reports a change
    # of application_name, DateStyle, ... when it happens, and after RESET ALL.
    with conn() as c:
        assert c.info.parameter_status("application_name") == ""
        c.execute("SET application_name = 'reporting'")
        assert c.info.parameter_status("application_name") == "reporting"
        c.execute("SET DateStyle = 'ISO, DMY'")
        assert c.info.parameter_status("DateStyle") == "ISO, DMY"
        c.execute("RESET ALL")
        assert c.info.parameter_status("application_name") == ""
        assert c.info.parameter_status("DateStyle") == "ISO, MDY"
        # The session's pid is the one BackendKeyData gave libpq (its cancel key).
        assert c.execute("SELECT pg_backend_pid()").fetchone() == (c.info.backend_pid,)


@check
def char_arrays_and_regproc_in_catalog_queries():
    # ADBC's type and object queries: `relkind = ANY($1)` with a text array of letters,
    # and a regproc compared with the OID 0.
    with conn() as c:
        table(c, "kinds")
        c.execute("CREATE VIEW kinds_view AS SELECT id FROM kinds")
        rows = c.execute(
            "SELECT relname FROM pg_class WHERE relkind = ANY(%s) AND relname LIKE 'kinds%%' ORDER BY relname",
            (["r", "v"],),
        ).fetchall()
        assert rows == [("kinds",), ("kinds_view",)], rows
        n = c.execute(
            "SELECT count(*) FROM pg_type WHERE (typreceive != 0 OR typsend != 0) AND typreceive::TEXT != 'array_recv'"
        ).fetchone()[0]
        assert n > 20, n
        c.execute("DROP VIEW kinds_view")


if __name__ == "__main__":
    tarn_checks.run()
