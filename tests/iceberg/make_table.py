"""Writes an Iceberg table with pyiceberg's SQL catalog (SQLite) in a folder, for
tests/external_tables.rs. Each call appends `rows` rows (ids from `first`) to
`db.events`, making the table first if needed, and prints the table's folder, its
metadata file and its snapshot ids (oldest first) as JSON.

    python make_table.py <warehouse folder> <first id> <rows>
"""
import datetime
import json
import sys

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog

warehouse, first, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
catalog = SqlCatalog("lake", uri=f"sqlite:///{warehouse}/catalog.db", warehouse=f"file://{warehouse}")
catalog.create_namespace_if_not_exists("db")
schema = pa.schema([
    ("id", pa.int64()),
    ("grp", pa.int64()),
    ("name", pa.string()),
    ("price", pa.float64()),
    ("ts", pa.timestamp("us")),
])
table = catalog.create_table_if_not_exists("db.events", schema=schema)
ids = list(range(first, first + rows))
start = datetime.datetime(2026, 1, 1)
table.append(pa.table({
    "id": pa.array(ids, pa.int64()),
    "grp": pa.array([None if i % 10 == 7 else i // 10 for i in ids], pa.int64()),
    "name": pa.array([f"n{i}" for i in ids], pa.string()),
    "price": pa.array([i * 0.5 for i in ids], pa.float64()),
    "ts": pa.array([start + datetime.timedelta(seconds=i) for i in ids], pa.timestamp("us")),
}, schema=schema))
table = catalog.load_table("db.events")
print(json.dumps({
    "location": table.location(),
    "metadata": table.metadata_location,
    "snapshots": [s.snapshot_id for s in table.metadata.snapshots],
}))
