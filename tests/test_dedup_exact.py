"""Exact dedup and connected components on real Spark."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.components import connected_components
from pipelines.dedup_exact import DedupExactConfig, DedupExactStage
from pipelines.stage import REJECTS_DIR, run_stage
from tests.test_stages_filters import read_output, write_documents

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
RIVER = "Rivers carry sediment from the mountains to the sea, shaping valleys over thousands of years."


def test_exact_duplicates_keep_the_earliest_then_smallest_id(spark, tmp_path: Path) -> None:
    docs = [
        {"id": "b-later", "text": RIVER, "fetched_at": T0 + timedelta(days=2)},
        {"id": "c-earliest", "text": "RIVERS carry sediment from the mountains to the sea -- shaping valleys over thousands of years!", "fetched_at": T0},
        {"id": "a-same-time", "text": "  rivers carry sediment from the mountains   to the sea, shaping valleys\nover thousands of years. ", "fetched_at": T0},
        {"id": "d-no-time", "text": RIVER, "fetched_at": None},
        {"id": "unique", "text": "Tides are caused mainly by the gravitational pull of the moon.", "fetched_at": T0},
    ]
    inputs = write_documents(tmp_path / "in", docs)
    result = run_stage(DedupExactStage(), [inputs], tmp_path / "out", DedupExactConfig(), lambda: spark)
    assert set(read_output(tmp_path / "out")) == {"a-same-time", "unique"}
    assert result.stats["duplicates_removed"] == 3
    rejects = {r["id"]: r["detail"] for r in pq.read_table(tmp_path / "out" / REJECTS_DIR).to_pylist()}
    assert rejects == {d: f"id={d} duplicates id=a-same-time" for d in ("b-later", "c-earliest", "d-no-time")}

    strict = run_stage(
        DedupExactStage(), [inputs], tmp_path / "strict", DedupExactConfig(lowercase=False, strip_punctuation=False), lambda: spark
    )
    assert set(read_output(tmp_path / "strict")) == {"b-later", "c-earliest", "a-same-time", "unique"}
    assert strict.stats["duplicates_removed"] == 1


def union_find(edges: list[tuple[str, str]]) -> dict[str, str]:
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in parent}


@pytest.mark.parametrize("seed", [0, 1])
def test_connected_components_match_union_find(spark, seed: int) -> None:
    rng = random.Random(seed)
    edges = [(f"p{i:03d}", f"p{i + 1:03d}") for i in range(60)]  # a long path: many rounds
    edges += [("hub", f"s{i:02d}") for i in range(30)]  # a star
    nodes = [f"r{i:03d}" for i in range(200)]
    edges += [(rng.choice(nodes), rng.choice(nodes)) for _ in range(150)]  # random sparse graph
    edges += [("x", "x")]  # a self loop is no edge
    frame = spark.createDataFrame(edges, "src string, dst string")
    got = {row["id"]: row["component"] for row in connected_components(frame).collect()}
    expected = union_find([(a, b) for a, b in edges if a != b])
    assert got == expected
