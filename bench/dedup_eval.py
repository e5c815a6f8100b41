"""Measure a near-duplicate stage against exact ground truth (Jaccard of word 5-gram sets).

Usage::

    # build a corpus + its exact ground truth (and score the datasketch baseline on it)
    python -m bench.dedup_eval --n-docs 5000 --out /tmp/dedup-bench [--seed 0] [--baseline]
    # score a stage's output directory (it holds _duplicates/: id, cluster_id, representative)
    python -m bench.dedup_eval --out /tmp/dedup-bench --score STAGE_OUTPUT_DIR

``--out`` then holds ``corpus/part-00000.parquet`` (corpusforge document schema; run the stage
on it), ``truth.parquet`` (``id_a < id_b``, ``jaccard``, ``intersection``, ``union``: every
pair with J >= threshold), ``meta.json`` (parameters, composition, timings) and one
``score-*.json`` per scored run. The corpus and the exact ground truth come from
:mod:`tests.dedup_data` (real text from this machine plus controlled edits).

What a stage returns, and how it is scored
------------------------------------------

A stage returns **clusters** (id -> cluster id; documents of one cluster are judged
near-duplicates; ids it does not list are singletons) and the **kept** ids (one per cluster;
singletons are always kept). The truth is the set ``T`` of pairs with J >= threshold. ``T`` is
not transitive (A~B and B~C with J(A,C) < t happens, and the corpus has such chains on
purpose) while clusters are, so no single number is fair on its own. :func:`evaluate`
reports four families, all with the same conventions (a ratio over an empty set is 1.0):

``pair_*`` -- pair level, strict.
    Predicted pairs ``P`` = all pairs inside a cluster. ``pair_precision = |P n T| / |P|``,
    ``pair_recall = |P n T| / |T|``. A transitive clustering pays for every chain in
    precision: even the connected components of ``T`` itself only reach
    ``pair_precision_ceiling = |T| / |closure(T)|``. Dominated by the largest clusters.

``cluster_pair_*`` -- pair level against the transitive closure of the truth.
    The truth clustering is the connected components of the graph ``T``.
    ``cluster_pair_precision`` / ``_recall`` are the pair-counting precision / recall of the
    predicted clustering against it (B-cubed's pair cousin), plus the adjusted Rand index
    ``ari`` (NEWS-COPY's metric in text-dedup). A perfect LSH + union-find scores 1.0; false
    merges of two true groups show here and nowhere else.

``doc_*`` -- duplicate-document classification (the primary gate, see below).
    A document *is* a duplicate when it has at least one partner in ``T``; the stage *flags*
    it when it puts it in a cluster of two or more. A flag is correct (true positive) when the
    cluster holds at least one of the document's true partners. ``doc_precision =
    TP / flagged``, ``doc_recall = TP / documents that are duplicates``. A document put in a
    cluster without any of its partners is both a false positive and a false negative. This is
    text-dedup's framing (precision / recall of the "duplicate" class over documents) but
    not fooled by, and not punishing, transitivity: every member of a true chain has a
    partner in its cluster.

``textdedup_*`` -- text-dedup's own per-document rule, for comparison with published numbers.
    (benchmarks/utils.py ``classify_prediction``): predicted duplicates of d = the other
    members of its cluster, true duplicates = its partners in ``T``; TN if both are empty, FN
    if only the predicted set is empty, TP if both are non-empty and the true set is a subset
    of the predicted one, FP otherwise. ``textdedup_accuracy`` is the share of documents whose
    two sets are equal. Strict: one missed partner turns a correctly flagged document into FP.

``removal_*`` -- what the output corpus looks like (uses ``kept``).
    Removed = clustered but not kept. ``removal_precision`` = share of removed documents that
    still have a partner in the output (nothing is lost: a J >= t copy survives);
    ``removal_recall`` = 1 - ``residual_pairs / |T|``, where ``residual_pairs`` are true pairs
    whose two documents both survive. ``removed_unique`` counts removed documents with no
    partner at all in ``T`` (content the stage threw away for nothing).

Which number is the gate: ``doc_precision >= 0.98`` and ``doc_recall >= 0.95`` (the stage's
promise, per document, as text-dedup reports it), read together with
``cluster_pair_precision`` (no false merges of distinct groups) and ``removal_precision``
(what is dropped has a surviving near-duplicate). ``pair_precision`` is reported with its
ceiling; it is not a fair gate for any transitive clustering.

The datasketch baseline
-----------------------

:func:`datasketch_baseline`: one process, the same shingles, ``datasketch.MinHash`` with
``num_perm=128``, ``MinHashLSH(threshold=0.8, num_perm=128)`` (its own optimal bands / rows),
every document inserted then queried, query results joined with union-find; the smallest id
of a cluster is kept. It checks the evaluation (LSH at 0.8 must score high) and is the number
the Spark stage is benchmarked against (docs/s, shingling included).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from tests.dedup_data import (
    DEFAULT_THRESHOLD,
    ShingleFn,
    canonical_pair,
    composition,
    iter_dedup_corpus,
    shingle_matrix,
    shingles,
    similar_pairs,
)

# --------------------------------------------------------------------------------------------
# Union-find
# --------------------------------------------------------------------------------------------


class UnionFind:
    """Union-find over hashable keys (path halving, union by size)."""

    def __init__(self) -> None:
        self.parent: dict = {}
        self.size: dict = {}

    def find(self, x):
        parent = self.parent
        if x not in parent:
            parent[x] = x
            self.size[x] = 1
            return x
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]

    def groups(self) -> dict:
        """root -> members, for every key seen."""
        out: dict = defaultdict(list)
        for x in self.parent:
            out[self.find(x)].append(x)
        return out


def _comb2(n: int) -> int:
    return n * (n - 1) // 2


def _ratio(num: int, den: int) -> float:
    return num / den if den else 1.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def evaluate(
    clusters: Mapping[str, str],
    kept: Iterable[str] | None,
    truth_pairs: Iterable[tuple[str, str]],
    all_ids: Iterable[str],
) -> dict:
    """Score a clustering against the ground truth (see the module docstring for each metric).

    ``clusters``: id -> cluster id (ids not listed, or alone in their cluster, are singletons).
    ``kept``: the ids kept (one per cluster; singletons are kept whether listed or not); None
    keeps the smallest id of each cluster. ``truth_pairs``: pairs with J >= threshold, in any
    order. ``all_ids``: every document id of the corpus.
    """
    universe = set(all_ids)
    n = len(universe)
    unknown = [d for d in clusters if d not in universe]
    if unknown:
        raise ValueError(f"{len(unknown)} clustered ids are not in the corpus, e.g. {unknown[:3]}")

    members: dict[str, list[str]] = defaultdict(list)
    for doc, cid in clusters.items():
        members[str(cid)].append(doc)
    members = {c: m for c, m in members.items() if len(m) > 1}
    cluster_of = {doc: c for c, m in members.items() for doc in m}

    truth: set[tuple[str, str]] = set()
    for a, b in truth_pairs:
        if a == b:
            continue
        if a not in universe or b not in universe:
            raise ValueError(f"truth pair ({a}, {b}) names an id that is not in the corpus")
        truth.add(canonical_pair(a, b))

    # the truth graph: degrees, components, partners inside the predicted cluster
    degree: Counter[str] = Counter()
    same_cluster: Counter[str] = Counter()
    uf = UnionFind()
    tp_pairs = 0
    for a, b in truth:
        degree[a] += 1
        degree[b] += 1
        uf.union(a, b)
        ca = cluster_of.get(a)
        if ca is not None and ca == cluster_of.get(b):
            tp_pairs += 1
            same_cluster[a] += 1
            same_cluster[b] += 1
    component_of = {doc: uf.find(doc) for doc in degree}
    component_sizes = Counter(component_of.values())

    # --- pair level
    predicted_pairs = sum(_comb2(len(m)) for m in members.values())
    closure_pairs = sum(_comb2(s) for s in component_sizes.values())
    agree = sum(_comb2(c) for c in Counter((cluster_of[d], component_of[d]) for d in cluster_of if d in component_of).values())
    pair_precision = _ratio(tp_pairs, predicted_pairs)
    pair_recall = _ratio(tp_pairs, len(truth))
    cluster_pair_precision = _ratio(agree, predicted_pairs)
    cluster_pair_recall = _ratio(agree, closure_pairs)
    expected = predicted_pairs * closure_pairs / _comb2(n) if n > 1 else 0.0
    maximum = (predicted_pairs + closure_pairs) / 2
    ari = (agree - expected) / (maximum - expected) if maximum != expected else 1.0

    # --- duplicate-document classification
    flagged = len(cluster_of)
    duplicates = len(degree)
    doc_tp = sum(1 for d in cluster_of if same_cluster[d] > 0)
    doc_fp = flagged - doc_tp
    doc_fn = duplicates - doc_tp
    doc_precision = _ratio(doc_tp, flagged)
    doc_recall = _ratio(doc_tp, duplicates)

    # --- text-dedup's classify_prediction
    td = Counter()
    exact = 0
    for d in universe:
        predicted = len(members[cluster_of[d]]) - 1 if d in cluster_of else 0
        true = degree.get(d, 0)
        inside = same_cluster.get(d, 0)
        if predicted == 0:
            td["TN" if true == 0 else "FN"] += 1
        elif true > 0 and inside == true:
            td["TP"] += 1
        else:
            td["FP"] += 1
        exact += predicted == true == inside
    td_precision = _ratio(td["TP"], td["TP"] + td["FP"])
    td_recall = _ratio(td["TP"], td["TP"] + td["FN"])

    # --- the output corpus
    kept_set = set(kept) if kept is not None else {min(m) for m in members.values()}
    unknown_kept = [d for d in kept_set if d not in universe]
    if unknown_kept:
        raise ValueError(f"{len(unknown_kept)} kept ids are not in the corpus, e.g. {unknown_kept[:3]}")
    kept_per_cluster = Counter(cluster_of[d] for d in kept_set if d in cluster_of)
    removed = {d for d in cluster_of if d not in kept_set}
    survivors = universe - removed
    represented: set[str] = set()
    residual = 0
    for a, b in truth:
        a_in, b_in = a in survivors, b in survivors
        if a_in and b_in:
            residual += 1
        elif a_in:
            represented.add(b)
        elif b_in:
            represented.add(a)
    removal_precision = _ratio(len(represented), len(removed))
    removal_recall = 1.0 - _ratio(residual, len(truth)) if truth else 1.0

    return {
        # sizes
        "docs": n,
        "true_pairs": len(truth),
        "docs_with_duplicates": duplicates,
        "truth_components": len(component_sizes),
        "truth_largest_component": max(component_sizes.values(), default=0),
        "predicted_clusters": len(members),
        "predicted_largest_cluster": max((len(m) for m in members.values()), default=0),
        "predicted_pairs": predicted_pairs,
        # pair level
        "pair_tp": tp_pairs,
        "pair_precision": pair_precision,
        "pair_recall": pair_recall,
        "pair_f1": _f1(pair_precision, pair_recall),
        "pair_precision_ceiling": _ratio(len(truth), closure_pairs),
        "closure_pairs": closure_pairs,
        "cluster_pair_precision": cluster_pair_precision,
        "cluster_pair_recall": cluster_pair_recall,
        "cluster_pair_f1": _f1(cluster_pair_precision, cluster_pair_recall),
        "ari": ari,
        # duplicate-document classification
        "doc_tp": doc_tp,
        "doc_fp": doc_fp,
        "doc_fn": doc_fn,
        "doc_precision": doc_precision,
        "doc_recall": doc_recall,
        "doc_f1": _f1(doc_precision, doc_recall),
        # text-dedup's rule
        "textdedup_counts": {k: td[k] for k in ("TP", "FP", "FN", "TN")},
        "textdedup_precision": td_precision,
        "textdedup_recall": td_recall,
        "textdedup_f1": _f1(td_precision, td_recall),
        "textdedup_accuracy": _ratio(exact, n),
        # output corpus
        "removed": len(removed),
        "output_docs": len(survivors),
        "removal_precision": removal_precision,
        "removal_recall": removal_recall,
        "residual_pairs": residual,
        "removed_unique": sum(1 for d in removed if d not in degree),
        "clusters_without_kept": len(members) - len(kept_per_cluster),
        "clusters_with_several_kept": sum(1 for c in kept_per_cluster.values() if c > 1),
    }


GATE = {"doc_precision": 0.98, "doc_recall": 0.95}


def gate(metrics: Mapping[str, float]) -> dict[str, bool]:
    return {name: metrics[name] >= bound for name, bound in GATE.items()}


# --------------------------------------------------------------------------------------------
# Diagnostics: what the errors look like
# --------------------------------------------------------------------------------------------


def error_profile(
    clusters: Mapping[str, str],
    truth: Mapping[tuple[str, str], float],
    texts: Mapping[str, str],
    shingle_fn: ShingleFn = shingles,
    *,
    sample: int = 2000,
    seed: int = 0,
) -> dict:
    """Jaccard histograms of missed true pairs (all) and of wrongly clustered pairs (a sample).

    Missed pairs near the threshold are LSH's expected misses; missed pairs at J ~ 1 or false
    pairs at J ~ 0 point at a bug (different shingles, a lost document, a join on the wrong key).
    """
    members: dict[str, list[str]] = defaultdict(list)
    for doc, cid in clusters.items():
        members[str(cid)].append(doc)
    cluster_of = {d: c for c, m in members.items() if len(m) > 1 for d in m}
    missed = [j for (a, b), j in truth.items() if cluster_of.get(a) is None or cluster_of.get(a) != cluster_of.get(b)]
    edges = [0.8, 0.85, 0.9, 0.95, 0.99, 1.0 + 1e-9]
    missed_hist = {f"[{lo:g},{hi:.2f})": int(sum(lo <= j < hi for j in missed)) for lo, hi in zip(edges, edges[1:])}

    rng = random.Random(seed)
    groups = [sorted(m) for m in members.values() if len(m) > 1]
    weights = list(np.cumsum([_comb2(len(g)) for g in groups])) if groups else []
    false_pairs: set[tuple[str, str]] = set()
    for _ in range(sample if weights else 0):
        g = groups[int(np.searchsorted(weights, rng.randrange(int(weights[-1])), side="right"))]
        a, b = rng.sample(g, 2)
        pair = canonical_pair(a, b)
        if pair not in truth:
            false_pairs.add(pair)
    cache: dict[str, set] = {}

    def sh(doc: str) -> set:
        if doc not in cache:
            cache[doc] = set(shingle_fn(texts[doc]))
        return cache[doc]

    false_j = []
    for a, b in sorted(false_pairs):
        sa, sb = sh(a), sh(b)
        union = len(sa | sb)
        false_j.append(len(sa & sb) / union if union else 0.0)
    bins = [0.0, 0.3, 0.5, 0.6, 0.7, 0.75, 0.8]
    false_hist = {f"[{lo:g},{hi:g})": int(sum(lo <= j < hi for j in false_j)) for lo, hi in zip(bins, bins[1:])}
    return {
        "missed_pairs": len(missed),
        "missed_pair_jaccard": missed_hist,
        "sampled_cluster_pairs": sample if weights else 0,
        "sampled_false_pairs": len(false_j),
        "false_pair_jaccard": false_hist,
        "false_pair_jaccard_min": min(false_j, default=None),
    }


# --------------------------------------------------------------------------------------------
# The datasketch baseline
# --------------------------------------------------------------------------------------------


def datasketch_baseline(
    docs: Sequence[Mapping[str, str]],
    shingle_fn: ShingleFn = shingles,
    threshold: float = DEFAULT_THRESHOLD,
    num_perm: int = 128,
    seed: int = 1,
    *,
    params: tuple[int, int] | None = None,
    verify: str = "none",
) -> dict:
    """MinHash + MinHashLSH in one process; returns clusters, kept ids, timings and parameters.

    ``params``: (bands, rows) for the LSH index; None lets datasketch choose them for
    ``threshold`` (it minimizes the summed false-positive and false-negative areas under its
    S-curve, which at 0.8 / 128 gives 9 x 13, whose candidate probability at J = 0.8 is only
    ~0.40). ``verify``: "none" unions every LSH candidate (the plain baseline); "minhash"
    unions a candidate only if the signatures' estimated Jaccard is >= threshold; "exact" only
    if the true Jaccard of the shingle sets is.
    """
    if verify not in ("none", "minhash", "exact"):
        raise ValueError(f"verify must be none, minhash or exact, not {verify!r}")
    from datasketch import MinHash, MinHashLSH  # noqa: PLC0415

    timings: dict[str, float] = {}
    start = time.perf_counter()
    encoded = [[s.encode("utf-8", "surrogatepass") for s in shingle_fn(d["text"])] for d in docs]
    timings["shingles"] = time.perf_counter() - start

    t = time.perf_counter()
    minhashes = MinHash.bulk(encoded, num_perm=num_perm, seed=seed)
    timings["minhash"] = time.perf_counter() - t

    t = time.perf_counter()
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, params=params)
    ids = [d["id"] for d in docs]
    with lsh.insertion_session() as session:
        for doc_id, mh in zip(ids, minhashes):
            session.insert(doc_id, mh)
    timings["lsh_insert"] = time.perf_counter() - t

    t = time.perf_counter()
    uf = UnionFind()
    candidates = 0
    accepted = 0
    index = {doc_id: k for k, doc_id in enumerate(ids)}
    sets = [set(e) for e in encoded] if verify == "exact" else None
    for k, (doc_id, mh) in enumerate(zip(ids, minhashes)):
        uf.find(doc_id)
        for other in lsh.query(mh):
            o = index[other]
            if o <= k:  # each unordered candidate pair once (query results are symmetric)
                continue
            candidates += 1
            if verify == "minhash" and mh.jaccard(minhashes[o]) < threshold:
                continue
            if verify == "exact":
                a, b = sets[k], sets[o]
                inter = len(a & b)
                if not a or not b or inter < threshold * (len(a) + len(b) - inter):
                    continue
            accepted += 1
            uf.union(doc_id, other)
    timings["lsh_query_union"] = time.perf_counter() - t
    total = time.perf_counter() - start

    clusters: dict[str, str] = {}
    kept: set[str] = set()
    for group in uf.groups().values():
        if len(group) > 1:
            rep = min(group)
            kept.add(rep)
            for doc_id in group:
                clusters[doc_id] = rep
    return {
        "clusters": clusters,
        "kept": kept,
        "seconds": total,
        "docs_per_s": len(docs) / total if total else float("inf"),
        "timings": timings,
        "params": {"num_perm": num_perm, "threshold": threshold, "bands": lsh.b, "rows": lsh.r, "seed": seed, "verify": verify},
        "candidate_pairs": candidates,
        "accepted_pairs": accepted,
    }


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def exact_truth_arrays(texts: Sequence[str], ids: Sequence[str], shingle_fn: ShingleFn, threshold: float) -> tuple[dict, dict]:
    """(pairs -> (jaccard, intersection, union), timings)."""
    t = time.perf_counter()
    matrix, sizes = shingle_matrix(texts, shingle_fn)
    t_matrix = time.perf_counter() - t
    t = time.perf_counter()
    i, j, inter, union = similar_pairs(matrix, sizes, threshold)
    t_pairs = time.perf_counter() - t
    pairs = {canonical_pair(ids[a], ids[b]): (x / u, x, u) for a, b, x, u in zip(i.tolist(), j.tolist(), inter.tolist(), union.tolist())}
    return pairs, {"shingle_matrix_s": t_matrix, "pairs_s": t_pairs, "matrix_nnz": int(matrix.nnz), "distinct_shingles": int(matrix.shape[1])}


def save_truth(path: Path, pairs: Mapping[tuple[str, str], tuple[float, int, int]]) -> None:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    keys = sorted(pairs)
    table = pa.table(
        {
            "id_a": pa.array([k[0] for k in keys], pa.string()),
            "id_b": pa.array([k[1] for k in keys], pa.string()),
            "jaccard": pa.array([pairs[k][0] for k in keys], pa.float64()),
            "intersection": pa.array([pairs[k][1] for k in keys], pa.int64()),
            "union": pa.array([pairs[k][2] for k in keys], pa.int64()),
        }
    )
    pq.write_table(table, path)


def load_truth(path: Path) -> dict[tuple[str, str], float]:
    import pyarrow.parquet as pq  # noqa: PLC0415

    table = pq.read_table(path, columns=["id_a", "id_b", "jaccard"]).to_pydict()
    return {canonical_pair(a, b): j for a, b, j in zip(table["id_a"], table["id_b"], table["jaccard"])}


def load_corpus(out: Path, columns: Sequence[str] = ("id", "text")) -> dict[str, list]:
    import pyarrow.parquet as pq  # noqa: PLC0415

    return pq.read_table(out / "corpus", columns=list(columns)).to_pydict()


def read_stage_output(stage_dir: Path) -> tuple[dict[str, str], set[str], dict]:
    """(clusters, kept, notes) from a stage output directory's ``_duplicates/`` Parquet.

    Rows are ``id, cluster_id, representative``. The representative is counted as a member of
    its cluster even if it has no row of its own; ids without a row are singletons.
    """
    import pyarrow.parquet as pq  # noqa: PLC0415

    dup_dir = stage_dir / "_duplicates"
    if not dup_dir.exists():
        raise FileNotFoundError(f"{dup_dir}: no _duplicates/ in the stage output")
    table = pq.read_table(dup_dir, columns=["id", "cluster_id", "representative"]).to_pydict()
    clusters: dict[str, str] = {}
    reps_of: dict[str, set[str]] = defaultdict(set)
    conflicts = 0
    for doc, cid, rep in zip(table["id"], table["cluster_id"], table["representative"]):
        cid = str(cid)
        if doc in clusters and clusters[doc] != cid:
            conflicts += 1
        clusters[doc] = cid
        if rep is not None:
            reps_of[cid].add(rep)
    for cid, reps in reps_of.items():
        for rep in reps:
            if clusters.setdefault(rep, cid) != cid:
                conflicts += 1
    kept = {rep for reps in reps_of.values() for rep in reps}
    notes = {
        "duplicates_rows": len(table["id"]),
        "ids_in_several_clusters": conflicts,
        "clusters_with_several_representatives": sum(1 for r in reps_of.values() if len(r) > 1),
    }
    return clusters, kept, notes


def read_stage_kept_ids(stage_dir: Path) -> set[str] | None:
    """Ids of the documents the stage wrote as its kept output (files not under ``_``/``.``)."""
    import pyarrow.dataset as ds  # noqa: PLC0415

    files = [p for p in stage_dir.rglob("*.parquet") if not any(part.startswith(("_", ".")) for part in p.relative_to(stage_dir).parts)]
    if not files:
        return None
    dataset = ds.dataset([str(p) for p in files], format="parquet")
    return set(dataset.to_table(columns=["id"]).column("id").to_pylist())


def write_stage_like_output(path: Path, clusters: Mapping[str, str], kept: Iterable[str]) -> None:
    """Write clusters in the stage's ``_duplicates/`` format (used for the baseline)."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    kept = set(kept)
    rep_of = {clusters[k]: k for k in kept if k in clusters}
    ids = sorted(clusters)
    (path / "_duplicates").mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table({"id": ids, "cluster_id": [clusters[i] for i in ids], "representative": [rep_of.get(clusters[i]) for i in ids]}),
        path / "_duplicates" / "part-00000.parquet",
    )


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def build(out: Path, n_docs: int, seed: int, threshold: float, shingle_fn: ShingleFn, max_words: int) -> dict:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    from pipelines.schema import DOCUMENT_SCHEMA  # noqa: PLC0415

    (out / "corpus").mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    docs = list(iter_dedup_corpus(seed, n_docs, max_words=max_words))
    t_build = time.perf_counter() - t
    with pq.ParquetWriter(out / "corpus" / "part-00000.parquet", DOCUMENT_SCHEMA, compression="zstd") as writer:
        for lo in range(0, len(docs), 2000):
            writer.write_table(pa.Table.from_pylist(docs[lo : lo + 2000], schema=DOCUMENT_SCHEMA))
    t = time.perf_counter()
    pairs, timings = exact_truth_arrays([d["text"] for d in docs], [d["id"] for d in docs], shingle_fn, threshold)
    t_truth = time.perf_counter() - t
    save_truth(out / "truth.parquet", pairs)
    jac = np.array([v[0] for v in pairs.values()]) if pairs else np.zeros(0)
    meta = {
        "n_docs": n_docs,
        "seed": seed,
        "threshold": threshold,
        "max_words": max_words,
        "shingles": "word 5-grams of NFKC/lowercased/punctuation-stripped text (tests.dedup_data.shingles)",
        "composition": composition(docs),
        "true_pairs": len(pairs),
        "true_pairs_by_jaccard": {
            f"[{lo:g},{hi:.2f})": int(((jac >= lo) & (jac < hi)).sum()) for lo, hi in zip([0.8, 0.85, 0.9, 0.95, 0.99], [0.85, 0.9, 0.95, 0.99, 1.0 + 1e-9])
        },
        "build_s": t_build,
        "truth_s": t_truth,
        **timings,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def score(out: Path, clusters: Mapping[str, str], kept: Iterable[str], name: str, shingle_fn: ShingleFn, extra: dict | None = None) -> dict:
    corpus = load_corpus(out)
    truth = load_truth(out / "truth.parquet")
    metrics = evaluate(clusters, kept, truth.keys(), corpus["id"])
    texts = dict(zip(corpus["id"], corpus["text"]))
    result = {"name": name, **(extra or {}), "metrics": metrics, "gate": gate(metrics), "errors": error_profile(clusters, truth, texts, shingle_fn)}
    (out / f"score-{name}.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def _print_metrics(result: dict) -> None:
    m = result["metrics"]
    print(f"== {result['name']}: {m['docs']} docs, {m['true_pairs']} true pairs, {m['docs_with_duplicates']} docs with a duplicate")
    rows = [
        ("doc (gate)", m["doc_precision"], m["doc_recall"], m["doc_f1"]),
        ("pair", m["pair_precision"], m["pair_recall"], m["pair_f1"]),
        ("cluster_pair", m["cluster_pair_precision"], m["cluster_pair_recall"], m["cluster_pair_f1"]),
        ("textdedup", m["textdedup_precision"], m["textdedup_recall"], m["textdedup_f1"]),
        ("removal", m["removal_precision"], m["removal_recall"], _f1(m["removal_precision"], m["removal_recall"])),
    ]
    print(f"{'family':<14}{'precision':>10}{'recall':>10}{'f1':>10}")
    for name, p, r, f in rows:
        print(f"{name:<14}{p:>10.4f}{r:>10.4f}{f:>10.4f}")
    print(f"pair_precision_ceiling={m['pair_precision_ceiling']:.4f} ari={m['ari']:.4f} removed={m['removed']} residual_pairs={m['residual_pairs']} removed_unique={m['removed_unique']}")
    print(f"gate {GATE}: {result['gate']}")
    errors = result.get("errors")
    if errors:
        print(f"missed pairs by J: {errors['missed_pair_jaccard']}; sampled false pairs by J: {errors['false_pair_jaccard']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dedup_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="benchmark directory (corpus/, truth.parquet, meta.json, score-*.json)")
    parser.add_argument("--n-docs", type=int, help="build a corpus of this many documents and its ground truth into --out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--max-words", type=int, default=2000, help="base documents longer than this are cut into parts")
    parser.add_argument("--baseline", action="store_true", help="run and score the datasketch MinHashLSH baseline on --out")
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--lsh-params", help="baseline LSH bands,rows (default: datasketch's choice for the threshold, 9,13 at 0.8/128)")
    parser.add_argument("--verify", choices=["none", "minhash", "exact"], default="none", help="baseline: check each LSH candidate before joining it (default none)")
    parser.add_argument("--score", type=Path, help="a stage output directory with _duplicates/ to score against --out")
    parser.add_argument("--name", help="name of the scored run (default: the stage directory's name)")
    parser.add_argument(
        "--shingles",
        choices=["local", "filters.minhash"],
        default="filters.minhash",
        help="shingle function: the stage's own (default) or tests.dedup_data.shingles",
    )
    args = parser.parse_args(argv)
    if args.n_docs is None and not args.baseline and args.score is None:
        parser.error("nothing to do: give --n-docs, --baseline and/or --score")

    if args.shingles == "local":
        shingle_fn: Callable = shingles
    else:
        from tests.dedup_data import from_filters_minhash  # noqa: PLC0415

        shingle_fn = from_filters_minhash()

    if args.n_docs is not None:
        meta = build(args.out, args.n_docs, args.seed, args.threshold, shingle_fn, args.max_words)
        comp = meta["composition"]
        print(f"corpus: {comp['docs']} docs ({comp['origin_kinds']}), mean {comp['words_mean']:.0f} words; edits {comp['edits']}")
        print(f"ground truth: {meta['true_pairs']} pairs with J >= {args.threshold} {meta['true_pairs_by_jaccard']}")
        print(f"times: build {meta['build_s']:.1f}s, truth {meta['truth_s']:.1f}s (shingle matrix {meta['shingle_matrix_s']:.1f}s, pairs {meta['pairs_s']:.1f}s)")
    elif not (args.out / "truth.parquet").exists():
        parser.error(f"{args.out} holds no benchmark; build one with --n-docs")

    if args.baseline:
        corpus = load_corpus(args.out)
        docs = [{"id": i, "text": t} for i, t in zip(corpus["id"], corpus["text"])]
        params = tuple(int(x) for x in args.lsh_params.split(",")) if args.lsh_params else None
        base = datasketch_baseline(docs, shingle_fn, args.threshold, args.num_perm, params=params, verify=args.verify)
        name = "datasketch" + (f"-{base['params']['bands']}x{base['params']['rows']}" if params else "") + ("" if args.verify == "none" else f"-{args.verify}")
        write_stage_like_output(args.out / name, base["clusters"], base["kept"])
        clusters, kept, notes = read_stage_output(args.out / name)  # the --score path, end to end
        extra = {k: base[k] for k in ("seconds", "docs_per_s", "timings", "params", "candidate_pairs", "accepted_pairs")}
        result = score(args.out, clusters, kept, name, shingle_fn, {**extra, "read_notes": notes})
        _print_metrics(result)
        print(f"datasketch: {base['docs_per_s']:.0f} docs/s ({base['seconds']:.1f}s: " + ", ".join(f"{k} {v:.1f}s" for k, v in base["timings"].items()) + f"), bands x rows = {base['params']['bands']} x {base['params']['rows']}")

    if args.score is not None:
        clusters, kept, notes = read_stage_output(args.score)
        result = score(args.out, clusters, kept, args.name or args.score.name, shingle_fn, {"stage_dir": str(args.score), "read_notes": notes})
        written = read_stage_kept_ids(args.score)
        if written is not None:
            m = result["metrics"]
            corpus_ids = set(load_corpus(args.out, ["id"])["id"])
            sizes = Counter(clusters.values())
            expected_out = corpus_ids - {d for d, c in clusters.items() if sizes[c] > 1 and d not in kept}
            result["kept_output"] = {"rows": len(written), "expected": len(expected_out), "missing": len(expected_out - written), "unexpected": len(written - expected_out), "consistent": written == expected_out and m["output_docs"] == len(written)}
            (args.out / f"score-{result['name']}.json").write_text(json.dumps(result, indent=2, default=str))
            print(f"kept output: {result['kept_output']}")
        _print_metrics(result)
        if notes["ids_in_several_clusters"] or notes["clusters_with_several_representatives"]:
            print(f"warning: inconsistent _duplicates: {notes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
