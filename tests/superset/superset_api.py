"""Apache Superset against Tarn, driven as a BI user drives it but through Superset's
REST API in-process (Flask's test client: no browser, no web server): test the
connection, add the database, list its schemas and tables, read a table's metadata
and `SELECT *`, make a dataset and refresh its columns, run a query in SQL Lab, and
draw two charts (a sum per name; a daily count over a time range, whose filter is
`TO_TIMESTAMP('...', 'YYYY-MM-DD HH24:MI:SS.US')` and whose buckets are
`DATE_TRUNC('DAY', ...)`). Superset reflects tables with SQLAlchemy 1.4 over psycopg2.

Run by tests/superset.rs with SUPERSET_HOME (where Superset's config and its SQLite
store live, made on first use: `superset db upgrade`, an admin, `superset init`) and
TARN_URI (the SQLAlchemy URI of the server under test) in the environment. Exits 1 on
the first failed step, with Superset's answer.
"""

import os
import subprocess
import sys

HOME = os.environ["SUPERSET_HOME"]
URI = os.environ["TARN_URI"]
CONFIG = os.path.join(HOME, "superset_config.py")
os.environ["SUPERSET_CONFIG_PATH"] = CONFIG
os.environ["FLASK_APP"] = "superset"


def prepare():
    """Superset's own store and admin user, once per SUPERSET_HOME."""
    marker = os.path.join(HOME, "initialized")
    if os.path.exists(marker):
        return
    os.makedirs(HOME, exist_ok=True)
    with open(CONFIG, "w") as f:
        f.write(
            "SECRET_KEY = 'tarn-tests-only-not-a-secret-0123456789abcdef'\n"
            f"SQLALCHEMY_DATABASE_URI = 'sqlite:///{HOME}/superset.db'\n"
            "WTF_CSRF_ENABLED = False\n"
            "TALISMAN_ENABLED = False\n"
            "CACHE_CONFIG = {'CACHE_TYPE': 'NullCache'}\n"
            "DATA_CACHE_CONFIG = {'CACHE_TYPE': 'NullCache'}\n"
        )
    superset = os.path.join(os.path.dirname(sys.executable), "superset")
    for args in (
        ["db", "upgrade"],
        ["fab", "create-admin", "--username", "admin", "--firstname", "a", "--lastname", "b",
         "--email", "admin@example.com", "--password", "admin"],
        ["init"],
    ):
        subprocess.run([superset, *args], check=True, stdout=subprocess.DEVNULL)
    open(marker, "w").close()


def main():
    prepare()
    from superset.app import create_app

    app = create_app()
    client = app.test_client()

    def call(method, path, expect=(200, 201), **kwargs):
        response = getattr(client, method)(path, headers=headers, **kwargs)
        if response.status_code not in expect:
            sys.exit(f"{method.upper()} {path}: {response.status_code}\n{response.get_data(as_text=True)[:3000]}")
        print(f"ok   {method.upper()} {path.split('?')[0]}")
        return response.get_json()

    headers = {}
    token = call("post", "/api/v1/security/login",
                 json={"username": "admin", "password": "admin", "provider": "db", "refresh": True})
    headers = {"Authorization": f"Bearer {token['access_token']}"}

    # What an earlier run that stopped half-way left goes first.
    for old in call("get", "/api/v1/dataset/?q=(filters:!((col:table_name,opr:eq,value:acc_superset)))")["result"]:
        call("delete", f"/api/v1/dataset/{old['id']}")
    for old in call("get", "/api/v1/database/?q=(filters:!((col:database_name,opr:eq,value:tarn)))")["result"]:
        call("delete", f"/api/v1/database/{old['id']}")

    call("post", "/api/v1/database/test_connection/", json={"database_name": "tarn", "sqlalchemy_uri": URI})
    database = call("post", "/api/v1/database/",
                    json={"database_name": "tarn", "sqlalchemy_uri": URI, "expose_in_sqllab": True})["id"]
    schemas = call("get", f"/api/v1/database/{database}/schemas/?q=(force:!t)")["result"]
    assert "public" in schemas, schemas
    tables = call("get", f"/api/v1/database/{database}/tables/?q=(force:!t,schema_name:public)")["result"]
    names = {t["value"]: t["type"] for t in tables}
    assert names.get("acc_superset") == "table" and names.get("acc_superset_view") == "view", names
    metadata = call("get", f"/api/v1/database/{database}/table_metadata/?name=acc_superset&schema=public")
    columns = {c["name"]: c["type"] for c in metadata["columns"]}
    assert columns == {"id": "BIGINT", "name": "TEXT", "amount": "DOUBLE_PRECISION", "created_at": "TIMESTAMP"}, columns
    # SQLAlchemy 1.4 reflects indexes with `ix.indkey::varchar`, an int2vector's text.
    indexes = [(i["name"], i["column_names"]) for i in metadata["indexes"]]
    assert indexes == [("acc_superset_name", ["name"])], metadata["indexes"]
    # (Its `primaryKey` is empty for PostgreSQL as well: Superset 6.1 turns the
    # constraint's values into JSON with a function that refuses lists and strings.)
    call("get", f"/api/v1/database/{database}/table_metadata/extra/?name=acc_superset&schema=public")
    star = call("get", f"/api/v1/database/{database}/select_star/acc_superset/public/")["result"]
    assert "FROM public.acc_superset" in star, star

    dataset = call("post", "/api/v1/dataset/",
                   json={"database": database, "schema": "public", "table_name": "acc_superset"})["id"]
    call("put", f"/api/v1/dataset/{dataset}/refresh")
    described = call("get", f"/api/v1/dataset/{dataset}")["result"]
    temporal = [c["column_name"] for c in described["columns"] if c["is_dttm"]]
    assert temporal == ["created_at"], temporal

    lab = call("post", "/api/v1/sqllab/execute/",
               json={"database_id": database, "sql": "SELECT name, amount FROM acc_superset ORDER BY id",
                     "runAsync": False, "schema": "public", "client_id": "tarn1"})
    assert lab["status"] == "success", lab
    assert [[r["name"], r["amount"]] for r in lab["data"]] == [["a", 1.5], ["b", 2.0], ["a", 4.0]], lab["data"]

    datasource = {"id": dataset, "type": "table"}
    total = {"expressionType": "SIMPLE", "column": {"column_name": "amount"}, "aggregate": "SUM",
             "label": "SUM(amount)"}
    by_name = call("post", "/api/v1/chart/data", json={
        "datasource": datasource,
        "queries": [{"columns": ["name"], "metrics": [total], "orderby": [[total, False]], "row_limit": 100}],
        "result_format": "json", "result_type": "full"})
    rows = by_name["result"][0]["data"]
    assert rows == [{"name": "a", "SUM(amount)": 5.5}, {"name": "b", "SUM(amount)": 2.0}], rows

    daily = call("post", "/api/v1/chart/data", json={
        "datasource": datasource,
        "queries": [{
            "columns": [{"timeGrain": "P1D", "columnType": "BASE_AXIS", "sqlExpression": "created_at",
                         "label": "created_at", "expressionType": "SQL"}],
            "metrics": ["count"],
            "filters": [{"col": "created_at", "op": "TEMPORAL_RANGE", "val": "2023-12-01 : 2023-12-31"}],
            "orderby": [[{"expressionType": "SQL", "sqlExpression": "created_at", "label": "created_at"}, True]],
            "row_limit": 100}],
        "result_format": "json", "result_type": "full"})
    query = daily["result"][0]["query"]
    assert "TO_TIMESTAMP(" in query and "DATE_TRUNC('DAY'" in query.upper().replace('"', "'"), query
    rows = [(r["created_at"], r["count"]) for r in daily["result"][0]["data"]]
    # Superset's JSON gives times as epoch milliseconds.
    assert rows == [(1701388800000, 1), (1701475200000, 1)], rows

    call("delete", f"/api/v1/dataset/{dataset}")
    call("delete", f"/api/v1/database/{database}")
    print("superset: every step passed")


if __name__ == "__main__":
    main()
