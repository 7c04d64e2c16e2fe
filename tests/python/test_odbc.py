"""psqlODBC (Debian's `odbc-postgresql`, the driver Excel, Power BI, Tableau and SAS
use on PostgreSQL) through pyodbc and unixODBC: the catalog functions those tools call
(SQLTables, SQLColumns, SQLPrimaryKeys, SQLStatistics, SQLForeignKeys, SQLGetTypeInfo,
SQLProcedures), parameters, types of results, and manual-commit transactions (which
the driver runs with a savepoint before each statement). Run by tests/python.rs;
`.ci/run` installs `odbc-postgresql` and `unixodbc` when missing.
"""

import datetime
import decimal

import pyodbc

import tarn_checks
from tarn_checks import HOST, PORT, USER, DBNAME, check


def connect(**options):
    return pyodbc.connect(
        f"DRIVER={{PostgreSQL Unicode}};SERVER={HOST};PORT={PORT};DATABASE={DBNAME};UID={USER};PWD=unused",
        **options,
    )


def setup():
    with connect(autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE odbc_items (id BIGINT PRIMARY KEY, title TEXT NOT NULL, price NUMERIC(10,2), "
            "made TIMESTAMP, embedding VECTOR(3))"
        )
        conn.execute(
            "INSERT INTO odbc_items VALUES (1, 'lamp', 19.5, '2024-01-01 10:00:00', '[1,2,3]'), "
            "(2, 'desk', 120, NULL, '[0,1,0]')"
        )
        conn.execute("CREATE TABLE odbc_pairs (a INT NOT NULL, b TEXT NOT NULL, PRIMARY KEY (a, b))")
        conn.execute("CREATE VIEW odbc_cheap AS SELECT id, title FROM odbc_items WHERE price < 50")


@check
def the_server_names_itself_postgresql():
    with connect() as conn:
        assert conn.getinfo(pyodbc.SQL_DBMS_NAME) == "PostgreSQL"
        assert conn.getinfo(pyodbc.SQL_DBMS_VER).startswith("16.")


@check
def tables_and_views_are_listed():
    with connect() as conn:
        rows = [(r.table_schem, r.table_name, r.table_type) for r in conn.cursor().tables(schema="public")]
        for expected in [("public", "odbc_items", "TABLE"), ("public", "odbc_pairs", "TABLE"),
                         ("public", "odbc_cheap", "VIEW")]:
            assert expected in rows, rows
        schemas = [r.table_schem for r in conn.cursor().tables(catalog="", schema="%", table="", tableType="")]
        assert "public" in schemas, schemas


@check
def columns_have_their_types_sizes_and_nullability():
    with connect() as conn:
        columns = [(r.column_name, r.type_name, r.data_type, r.column_size, r.nullable, r.ordinal_position)
                   for r in conn.cursor().columns(table="odbc_items")]
        assert columns == [
            ("id", "int8", pyodbc.SQL_BIGINT, 19, 0, 1),
            ("title", "text", pyodbc.SQL_WLONGVARCHAR, 8190, 0, 2),
            ("price", "numeric", pyodbc.SQL_NUMERIC, 10, 1, 3),
            ("made", "timestamp", pyodbc.SQL_TYPE_TIMESTAMP, 26, 1, 4),
            ("embedding", "vector", pyodbc.SQL_WVARCHAR, 3, 1, 5),
        ], columns
        view = [(r.column_name, r.type_name) for r in conn.cursor().columns(table="odbc_cheap")]
        assert view == [("id", "int8"), ("title", "text")], view


@check
def primary_keys_statistics_and_foreign_keys():
    with connect() as conn:
        keys = [(r.column_name, r.key_seq, r.pk_name) for r in conn.cursor().primaryKeys("odbc_items")]
        assert keys == [("id", 1, "odbc_items_pkey")], keys
        # A key of two columns: psqlODBC reads them by `indkey[attnum - 1]` (int2vector
        # subscripts count from 0).
        keys = [(r.column_name, r.key_seq) for r in conn.cursor().primaryKeys("odbc_pairs")]
        assert keys == [("a", 1), ("b", 2)], keys
        stats = [(r.index_name, r.non_unique, r.ordinal_position, r.column_name)
                 for r in conn.cursor().statistics("odbc_pairs") if r.index_name]
        assert stats == [("odbc_pairs_pkey", 0, 1, "a"), ("odbc_pairs_pkey", 0, 2, "b")], stats
        assert list(conn.cursor().foreignKeys(table="odbc_items")) == []
        assert list(conn.cursor().foreignKeys(foreignTable="odbc_items")) == []
        assert len(conn.cursor().getTypeInfo().fetchall()) > 10
        assert len(conn.cursor().procedures().fetchall()) > 0


@check
def parameters_and_result_types():
    with connect() as conn:
        cur = conn.cursor()
        rows = cur.execute("SELECT id, title, price, made, embedding FROM odbc_items WHERE price > ? ORDER BY id",
                           10).fetchall()
        assert [tuple(r) for r in rows] == [
            (1, "lamp", decimal.Decimal("19.50"), datetime.datetime(2024, 1, 1, 10, 0), "[1,2,3]"),
            (2, "desk", decimal.Decimal("120.00"), None, "[0,1,0]"),
        ], rows
        assert [d[1] for d in cur.description] == [int, str, decimal.Decimal, datetime.datetime, str]
        n = cur.execute("SELECT count(*) FROM odbc_items WHERE title = ?", "desk").fetchone()[0]
        assert n == 1


@check
def manual_commit_transactions_and_errors():
    with connect() as conn:  # autocommit off: BEGIN, and a savepoint before each statement
        cur = conn.cursor()
        assert cur.execute("INSERT INTO odbc_items (id, title, price) VALUES (?, ?, ?)", 3, "chair", 45.5).rowcount == 1
        conn.commit()
        cur.execute("INSERT INTO odbc_items (id, title) VALUES (?, ?)", 4, "gone")
        conn.rollback()
        assert cur.execute("SELECT count(*) FROM odbc_items").fetchone()[0] == 3
        try:
            cur.execute("INSERT INTO odbc_items (id, title) VALUES (?, ?)", 1, "duplicate")
            raise AssertionError("a duplicate key was taken")
        except pyodbc.IntegrityError as error:
            assert "23505" in str(error), error
        conn.rollback()
        try:
            cur.execute("SELECT * FROM odbc_nothing")
            raise AssertionError("a missing table was read")
        except pyodbc.ProgrammingError as error:
            assert "42P01" in str(error), error
        conn.rollback()
        assert cur.execute("SELECT title FROM odbc_items WHERE id = ?", 3).fetchone()[0] == "chair"


if __name__ == "__main__":
    setup()
    tarn_checks.run()
