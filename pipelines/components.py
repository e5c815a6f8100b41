"""Connected components of a graph held in a Spark DataFrame, without collecting it.

Alternating large-star and small-star steps (Kiveris et al., "Connected Components in
MapReduce and Beyond", SoCC 2014): every step is a join and a group-by, converging in
O(log² n) rounds; at the end every node points at the smallest node id of its component.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger("corpusforge.components")
MAX_ROUNDS = 64


def _large_star(edges: "DataFrame") -> "DataFrame":
    from pyspark.sql import functions as F

    both = edges.unionByName(edges.select(F.col("dst").alias("src"), F.col("src").alias("dst"))).distinct()
    mins = both.groupBy("src").agg(F.least(F.min("dst"), F.col("src")).alias("m"))
    return (
        both.join(mins, "src")
        .where(F.col("dst") > F.col("src"))
        .select(F.col("dst").alias("src"), F.col("m").alias("dst"))
        .where(F.col("src") != F.col("dst"))
        .distinct()
    )


def _small_star(edges: "DataFrame") -> "DataFrame":
    from pyspark.sql import functions as F

    oriented = edges.select(
        F.greatest("src", "dst").alias("src"), F.least("src", "dst").alias("dst")
    ).distinct()  # dst < src
    mins = oriented.groupBy("src").agg(F.min("dst").alias("m"))
    linked = oriented.join(mins, "src").select(F.col("dst").alias("src"), F.col("m").alias("dst"))
    return (
        linked.unionByName(mins.select("src", F.col("m").alias("dst")))
        .where(F.col("src") != F.col("dst"))
        .distinct()
    )


def _checksum(edges: "DataFrame") -> tuple[int, int, int]:
    """Count and two order-free 64-bit sums over the (distinct) edges: equal means unchanged.

    One aggregation over an already materialised frame, instead of two set differences.
    """
    from pyspark.sql import functions as F

    row = edges.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.xxhash64("src", "dst").cast("decimal(38,0)")).alias("a"),
        F.sum(F.hash("dst", "src").cast("decimal(38,0)")).alias("b"),
    ).first()
    return int(row["n"]), int(row["a"] or 0), int(row["b"] or 0)


def connected_components(edges: "DataFrame") -> "DataFrame":
    """``edges(src, dst)`` of string ids -> ``(id, component)``, component = smallest id in it.

    Only nodes with at least one edge appear in the result (each root maps to itself).
    """
    from pyspark.sql import functions as F

    current = (
        edges.select(F.col("src").cast("string"), F.col("dst").cast("string"))
        .where(F.col("src") != F.col("dst"))
        .distinct()
        .localCheckpoint()
    )
    previous = _checksum(current)
    for round_number in range(1, MAX_ROUNDS + 1):
        current = _small_star(_large_star(current)).localCheckpoint()
        checksum = _checksum(current)
        log.debug("connected components: round %d, edges and checksum %s", round_number, checksum)
        if checksum == previous:
            break
        previous = checksum
    else:
        raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")
    # Converged: every edge is (node, root) with root the component's minimum.
    roots = current.select(F.col("dst").alias("id"), F.col("dst").alias("component")).distinct()
    members = current.select(F.col("src").alias("id"), F.col("dst").alias("component"))
    return members.unionByName(roots).distinct()
