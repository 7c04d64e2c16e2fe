"""pgAdmin 4 against Tarn, driven as a user clicks through it but through pgAdmin's web
API in-process (Flask's test client: no browser, no web server): register the server
and connect, open the dashboard (its charts, sessions, settings), browse the database,
its schema, tables, views and sequences, a table's columns, indexes and constraints,
read the table's properties, statistics and reverse-engineered `CREATE TABLE`, and run
a query in the Query Tool. pgAdmin talks to the server with psycopg 3.

Run by tests/pgadmin.rs with PGADMIN_HOME (pgAdmin's config and SQLite store, made on
first use), TARN_HOST and TARN_PORT in the environment. Exits 1 on the first failed
step, with pgAdmin's answer.
"""

import json
import os
import sys
import time
import uuid

HOME = os.environ["PGADMIN_HOME"]
HOST = os.environ["TARN_HOST"]
PORT = int(os.environ["TARN_PORT"])


def configure():
    """Desktop mode (no login), no master password, no CSRF tokens, all under HOME."""
    os.makedirs(HOME, exist_ok=True)
    config = os.path.join(HOME, "config_distro.py")
    with open(config, "w") as f:
        f.write(
            "SERVER_MODE = False\n"
            f"DATA_DIR = {HOME!r}\n"
            f"LOG_FILE = {os.path.join(HOME, 'pgadmin4.log')!r}\n"
            f"SQLITE_PATH = {os.path.join(HOME, 'pgadmin4.db')!r}\n"
            f"SESSION_DB_PATH = {os.path.join(HOME, 'sessions')!r}\n"
            f"STORAGE_DIR = {os.path.join(HOME, 'storage')!r}\n"
            "MASTER_PASSWORD_REQUIRED = False\n"
            "WTF_CSRF_ENABLED = False\n"
            "UPGRADE_CHECK_ENABLED = False\n"
            "CONSOLE_LOG_LEVEL = 40\n"
        )
    os.environ["CONFIG_DISTRO_FILE_PATH"] = config
    # pgAdmin's modules live in the `pgadmin4` folder of site-packages (no package).
    import sysconfig

    sys.path.insert(0, os.path.join(sysconfig.get_paths()["purelib"], "pgadmin4"))


def fail(step, response):
    body = response.get_data(as_text=True)
    print(f"FAILED: {step}: HTTP {response.status_code}\n{body[:4000]}")
    sys.exit(1)


def call(client, step, method, url, body=None):
    """One API call; its JSON answer (`data` when pgAdmin wraps it)."""
    if body is None:
        response = getattr(client, method)(url)
    else:
        response = getattr(client, method)(url, data=json.dumps(body), content_type="application/json")
    if response.status_code != 200:
        fail(step, response)
    answer = response.get_json(silent=True)
    if isinstance(answer, dict) and answer.get("success") == 0:
        fail(step, response)
    print(f"ok: {step}")
    return answer.get("data", answer) if isinstance(answer, dict) else answer


def node(nodes, label, step):
    """The `_id` of the browser node labelled `label`."""
    for n in nodes:
        if n.get("label") == label:
            return n["_id"]
    print(f"FAILED: {step}: no node {label!r} among {[n.get('label') for n in nodes]}")
    sys.exit(1)


def main():
    configure()
    import pgAdmin4

    app = pgAdmin4.app
    client = app.test_client()
    # The server group every desktop install has.
    groups = call(client, "server groups", "get", "/browser/server_group/nodes/")
    gid = groups[0]["_id"]
    server = call(
        client,
        "register the server",
        "post",
        f"/browser/server/obj/{gid}/",
        {
            "name": f"tarn-{uuid.uuid4().hex[:8]}",
            "host": HOST,
            "port": PORT,
            "db": "tarn",
            "username": "tarn",
            "connection_params": [{"name": "sslmode", "value": "prefer"}],
        },
    )
    sid = server["node"]["_id"] if "node" in server else server["_id"]
    connected = call(client, "connect", "post", f"/browser/server/connect/{gid}/{sid}", {"password": ""})
    print(f"   server version {connected.get('version')}")

    # The dashboard.
    charts = "session_stats,tps_stats,ti_stats,to_stats,bio_stats"
    call(client, "dashboard charts", "get", f"/dashboard/dashboard_stats/{sid}?chart_names={charts}")
    activity = call(client, "dashboard sessions", "get", f"/dashboard/activity/{sid}")
    sessions = activity[0]["activity"] if activity and "activity" in activity[0] else activity
    assert any(a.get("application_name", "").startswith("pgAdmin") for a in sessions), activity
    call(client, "dashboard settings", "get", f"/dashboard/config/{sid}")

    # The tree: database, schema, the schema's objects.
    databases = call(client, "databases", "get", f"/browser/database/nodes/{gid}/{sid}/")
    did = node(databases, "tarn", "databases")
    call(client, "connect the database", "post", f"/browser/database/connect/{gid}/{sid}/{did}", {})
    schemas = call(client, "schemas", "get", f"/browser/schema/nodes/{gid}/{sid}/{did}/")
    scid = node(schemas, "public", "schemas")
    base = f"{gid}/{sid}/{did}/{scid}"
    tables = call(client, "tables", "get", f"/browser/table/nodes/{base}/")
    tid = node(tables, "acc_pgadmin", "tables")
    views = call(client, "views", "get", f"/browser/view/nodes/{base}/")
    node(views, "acc_pgadmin_view", "views")
    sequences = call(client, "sequences", "get", f"/browser/sequence/nodes/{base}/")
    node(sequences, "acc_pgadmin_seq", "sequences")
    for kind in ("mview", "function", "foreign_table", "type", "domain"):
        call(client, f"{kind} list", "get", f"/browser/{kind}/nodes/{base}/")

    # One table: its children, properties, statistics, SQL and dependencies.
    columns = call(client, "columns", "get", f"/browser/column/nodes/{base}/{tid}/")
    names = [c["label"] for c in columns]
    assert names == ["id", "name", "amount", "embedding"], names
    indexes = call(client, "indexes", "get", f"/browser/index/nodes/{base}/{tid}/")
    print(f"   indexes {[i['label'] for i in indexes]}")
    for kind in ("constraints", "trigger", "rule", "row_security_policy"):
        call(client, f"{kind} of the table", "get", f"/browser/{kind}/nodes/{base}/{tid}/")
    properties = call(client, "table properties", "get", f"/browser/table/obj/{base}/{tid}")
    assert properties["name"] == "acc_pgadmin", properties
    assert properties.get("description") == "accounts", properties.get("description")
    call(client, "table statistics", "get", f"/browser/table/stats/{base}/{tid}")
    sql = call(client, "table SQL", "get", f"/browser/table/sql/{base}/{tid}")
    assert "CREATE TABLE" in sql and "embedding vector(3)" in sql, sql
    print("   " + "\n   ".join(sql.strip().splitlines()[:12]))
    call(client, "table dependencies", "get", f"/browser/table/dependency/{base}/{tid}")
    call(client, "table dependents", "get", f"/browser/table/dependent/{base}/{tid}")

    # The Query Tool.
    trans = str(int(time.time() * 1000) % 10_000_000)
    call(
        client,
        "open the Query Tool",
        "post",
        f"/sqleditor/initialize/sqleditor/{trans}/{gid}/{sid}/{did}",
        {"dbname": "tarn", "user": "tarn"},
    )
    call(
        client,
        "run a query",
        "post",
        f"/sqleditor/query_tool/start/{trans}",
        {"sql": "SELECT name, amount FROM acc_pgadmin WHERE amount > 1 ORDER BY id", "explain_plan": None},
    )
    for _ in range(100):
        polled = call(client, "poll the query", "get", f"/sqleditor/poll/{trans}")
        if polled.get("status") != "Busy":
            break
        time.sleep(0.1)
    assert polled.get("status") == "Success", polled
    rows = polled["result"]
    # The Query Tool shows values as the server prints them (a float8 2 as `2`).
    assert rows == [["a", "1.5"], ["b", "2"], ["c", "4"]], rows
    print(f"   rows {rows}")
    call(client, "close the Query Tool", "delete", f"/sqleditor/close/{trans}")
    call(client, "disconnect", "delete", f"/browser/server/connect/{gid}/{sid}")
    print("pgAdmin: connected, browsed and queried")


if __name__ == "__main__":
    main()
