"""The deterministic rows of the key-value table that the lookup and ingest suites use:
`(id bigint primary key, payload text, amount double precision)`.

Row `i` at version `v` (0 as loaded, 1 after an upsert) is fixed by `i` and `v` alone, so
every answer can be checked. Amounts are multiples of 0.25 below 10,000: every sum is
exact in a double whatever the order of addition.
"""
from __future__ import annotations

import numpy as np

from common import Failure, error_text, execute, expect

COLUMNS = "(id bigint PRIMARY KEY, payload text, amount double precision)"
PAYLOAD_WIDTH = 20  # 'payload-v-0000000042' : fixed width keeps the binary COPY a numpy record


def row(i: int, v: int = 0) -> tuple[int, str, float]:
    return i, f"payload-{v}-{i:010d}", ((i * 37 + v * 10_007) % 40_000) * 0.25


def amounts(ids: np.ndarray, v: int = 0) -> np.ndarray:
    return ((ids.astype(np.int64) * 37 + v * 10_007) % 40_000) * 0.25


def amount_sum(ids, v: int = 0) -> float:
    return float(amounts(np.asarray(ids, dtype=np.int64), v).sum())


def copy_binary(ids: np.ndarray, v: int = 0) -> bytes:
    """The rows of `ids` in PostgreSQL's binary COPY format (header, tuples, trailer),
    built with numpy so that encoding stays out of the timed COPY."""
    ids = np.asarray(ids, dtype=np.int64)
    rec = np.dtype([("n", ">i2"), ("l1", ">i4"), ("id", ">i8"), ("l2", ">i4"),
                    ("payload", f"S{PAYLOAD_WIDTH}"), ("l3", ">i4"), ("amount", ">f8")])
    a = np.empty(len(ids), dtype=rec)
    a["n"], a["l1"], a["l2"], a["l3"] = 3, 8, PAYLOAD_WIDTH, 8
    a["id"] = ids
    digits = np.char.zfill(ids.astype("S10"), 10)
    a["payload"] = np.char.add(f"payload-{v}-".encode(), digits)
    a["amount"] = amounts(ids, v)
    header = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
    return header + a.tobytes() + b"\xff\xff"


def values_sql(table: str, ids, v: int, upsert: bool) -> str:
    """A multi-row INSERT of `ids` at version v, as literal text; with upsert, ON CONFLICT
    (id) DO UPDATE of both columns."""
    vals = ",".join("(%d,'%s',%r)" % row(int(i), v) for i in ids)
    sql = f"INSERT INTO {table} (id, payload, amount) VALUES {vals}"
    if upsert:
        sql += " ON CONFLICT (id) DO UPDATE SET payload = EXCLUDED.payload, amount = EXCLUDED.amount"
    return sql


def copy_in(conn, table: str, blob: bytes, chunk: int = 1 << 20) -> None:
    """One `COPY table FROM STDIN (FORMAT BINARY)` statement sending blob."""
    import psycopg

    sql = f"COPY {table} (id, payload, amount) FROM STDIN (FORMAT BINARY)"
    try:
        with conn.cursor() as cur, cur.copy(sql) as cp:
            view = memoryview(blob)
            for s in range(0, len(blob), chunk):
                cp.write(view[s : s + chunk])
    except psycopg.Error as e:
        raise Failure(sql, error_text(e)) from e


def check_table(conn, table: str, count: int, total: float) -> None:
    """count(*) and sum(amount) must be what was written."""
    sql = f"SELECT count(*), sum(amount) FROM {table}"
    got = execute(conn, sql, fetch=True)[0]
    expect(sql, (int(got[0]), float(got[1] or 0.0)), (count, total))
