"""BM25 in Tarn agrees with tantivy itself, on a real corpus.

The corpus is WordNet 3.0's glosses (Debian's `wordnet-base`, installed by `.ci/run`):
about 117,000 short definitions. The same documents go into a `tantivy` index built by
the PyPI package (the same tantivy release Tarn links) and into a Tarn table with a
bm25 index, with the same tokenizer; then 200 queries (one, two and three words, and
phrases, drawn from the glosses with a fixed seed) run on both.

  default    tokenizer 'default': per query the top-10 ids overlap by at least 0.9
             (order-insensitive; a row whose score ties tantivy's 10th counts as
             agreeing, since ties rank by document order), and the scores agree to
             float tolerance
  en_stem    the same with the English stemmer
  explain    the Tarn query is a top-k search of the index

TARN_BM25_DOCS limits the corpus for a quick run by hand.
"""

import glob
import os
import random
import re
import time

import psycopg
import tantivy

import tarn_checks
from tarn_checks import DSN, check

K = 10
QUERIES = 200
LIMIT = int(os.environ.get("TARN_BM25_DOCS", "0")) or None


def glosses():
    """(id, gloss) for every synset of WordNet's four data files, in file order."""
    files = sorted(glob.glob("/usr/share/wordnet/data.*"))
    files = [f for f in files if f.rsplit(".", 1)[1] in ("noun", "verb", "adj", "adv")]
    assert len(files) == 4, "WordNet's data files are not in /usr/share/wordnet (apt-get install wordnet-base)"
    out = []
    for path in files:
        with open(path, encoding="latin-1") as f:
            for line in f:
                if line.startswith("  ") or " | " not in line:
                    continue
                out.append(line.split(" | ", 1)[1].strip())
    if LIMIT:
        out = out[:LIMIT]
    return list(enumerate(out))


def queries(docs):
    """200 queries drawn from the glosses with a fixed seed."""
    rng = random.Random(20261205)
    words_of = [re.findall(r"[a-z]{4,}", text.lower()) for _, text in docs]
    vocabulary = sorted({w for words in words_of for w in words})
    out = []
    while len(out) < QUERIES:
        kind = len(out) % 10
        if kind < 5:
            out.append(rng.choice(vocabulary))
        elif kind < 8:
            out.append(" ".join(rng.choice(vocabulary) for _ in range(2 if kind < 7 else 3)))
        else:
            words = rng.choice(words_of)
            if len(words) >= 2:
                i = rng.randrange(len(words) - 1)
                out.append(f'"{words[i]} {words[i + 1]}"')
    return out


def tantivy_index(docs, tokenizer):
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("id", stored=True, indexed=True)
    builder.add_text_field("body", stored=False, tokenizer_name=tokenizer, index_option="position")
    index = tantivy.Index(builder.build())
    # One thread: one segment, documents in id order (ties rank alike on both sides).
    writer = index.writer(heap_size=512_000_000, num_threads=1)
    for i, text in docs:
        writer.add_document(tantivy.Document(id=i, body=text))
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    return index


def tantivy_top(index, query):
    searcher = index.searcher()
    hits = searcher.search(index.parse_query(query, ["body"]), K).hits
    return [(searcher.doc(address)["id"][0], score) for score, address in hits]


def compare(conn, table, index, qs):
    overlaps = []
    worst = (1.0, None)
    max_error = 0.0
    tarn_ms = []
    for q in qs:
        expected = tantivy_top(index, q)
        started = time.perf_counter()
        got = conn.execute(
            f"SELECT id, bm25_score(body, %s) AS s FROM {table} WHERE body @@@ %s ORDER BY s DESC LIMIT {K}",
            (q, q),
        ).fetchall()
        tarn_ms.append((time.perf_counter() - started) * 1000)
        expected_ids = {i for i, _ in expected}
        # A row tied with tantivy's last one is as right an answer as tantivy's pick
        # (ties rank by document order, and Tarn's rows need not be in id order).
        last = expected[-1][1] if expected else None
        agreeing = [i for i, s in got if i in expected_ids or abs(s - last) <= 1e-6 * max(abs(last), 1.0)]
        overlap = len(agreeing) / len(expected) if expected else float(not got)
        overlaps.append(overlap)
        if overlap < worst[0]:
            worst = (overlap, q)
        assert len(got) == len(expected), f"{table} {q!r}: {len(got)} rows, tantivy {len(expected)}"
        for (_, a), (_, b) in zip(sorted(got, key=lambda r: -r[1]), expected):
            max_error = max(max_error, abs(a - b) / max(abs(b), 1e-6))
    assert min(overlaps) >= 0.9, f"{table}: worst top-{K} overlap {worst[0]:.2f} for {worst[1]!r}"
    assert max_error < 1e-4, f"{table}: scores differ from tantivy's by up to {max_error:.2e}"
    tarn_ms.sort()
    print(
        f"  {table}: {len(qs)} queries, mean overlap {sum(overlaps) / len(overlaps):.4f}, "
        f"min {min(overlaps):.2f}, max relative score error {max_error:.1e}, "
        f"Tarn p50 {tarn_ms[len(tarn_ms) // 2]:.2f} ms (debug build)"
    )


DOCS = glosses()
QS = queries(DOCS)


def parity(tokenizer):
    table = f"glosses_{tokenizer}"
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint, body text)")
        started = time.perf_counter()
        with conn.cursor().copy(f"COPY {table} (id, body) FROM STDIN") as copy:
            for row in DOCS:
                copy.write_row(row)
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute(f"CREATE INDEX {table}_idx ON {table} USING bm25 (body) WITH (tokenizer = '{tokenizer}')")
        built = time.perf_counter() - started
        started = time.perf_counter()
        index = tantivy_index(DOCS, tokenizer)
        print(
            f"{tokenizer}: Tarn COPY {loaded:.1f} s, CREATE INDEX {built:.1f} s; "
            f"tantivy (PyPI) index {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        compare(conn, table, index, QS)


@check
def default_tokenizer():
    parity("default")


@check
def en_stem_tokenizer():
    parity("en_stem")


@check
def explain():
    with psycopg.connect(DSN, autocommit=True) as conn:
        plan = "\n".join(
            " | ".join(map(str, r))
            for r in conn.execute(
                "EXPLAIN SELECT id FROM glosses_default WHERE body @@@ 'tree' "
                "ORDER BY bm25_score(body, 'tree') DESC LIMIT 10"
            )
        )
    assert "TarnBm25Exec: mode=topk" in plan, f"the search is not a top-k search of the index:\n{plan}"


if __name__ == "__main__":
    print(f"corpus: {len(DOCS)} WordNet glosses, {len(QS)} queries", flush=True)
    tarn_checks.run()
