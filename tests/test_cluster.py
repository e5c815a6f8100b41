"""A real Spark standalone cluster on 127.0.0.1, started from the pyspark installation itself
(``bin/spark-class``: one master, one worker): MinHash dedup and tokenize run on it with
``--spark-master spark://…`` and give the same rows and the same shard checksums as ``local[*]``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pyarrow.dataset as ds
import pytest

from bench.standalone import StandaloneCluster
from flows.recipe import default_recipe
from flows.runner import execute_stage

# slow: about 80 s (a master, a worker and a Prefect run), more than the default suite can spare.
pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with StandaloneCluster(tmp_path_factory.mktemp("spark-cluster"), workers=1, cores_per_worker=2) as running:
        yield running.master_url


def _rows(path: Path) -> list[dict]:
    table = ds.dataset(str(path), format="parquet", exclude_invalid_files=True).to_table()
    return sorted(table.to_pylist(), key=lambda row: row["id"])


def _shards(tokenized: Path) -> list[tuple[int, int, str]]:
    manifest = json.loads((tokenized / "manifest.json").read_text())
    return [(s["docs"], s["tokens"], s["sha256"]) for s in manifest["shards"]]


def test_a_build_on_a_standalone_cluster_equals_the_local_build(spark, cluster: str, corpus: Path, tmp_path: Path) -> None:
    # An exact copy and a near copy, so that dedup has clusters to find.
    text = (corpus / "notes.md").read_text()
    (corpus / "copy.md").write_text(text)
    (corpus / "near.md").write_text(text.replace("Thursday", "Friday"))
    stages = ["ingest", "dedup-minhash", "tokenize"]
    recipe_file = tmp_path / "cluster.yaml"
    recipe_file.write_text(f"name: cluster\nstages: [{', '.join(stages)}]\ningest:\n  paths: [{corpus}]\n")

    recipe = default_recipe([f"ingest.paths=[{corpus}]"])
    local = tmp_path / "local"
    source: list[Path] = [corpus]
    for name in stages:
        source = [execute_stage(recipe, name, source, local / name).output]

    remote = tmp_path / "on-cluster"
    command = [sys.executable, "-c", "from flows.cli import main; main()", "run", str(recipe_file), "--out", str(remote),
               "--spark-master", cluster, "--set", "spark.driver_memory=1g"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    for name in stages:
        stats = json.loads((remote / name / "_stats.json").read_text())
        local_stats = json.loads((local / name / "_stats.json").read_text())
        assert stats["spark_master"] == cluster
        assert (stats["docs_in"], stats["docs_out"], stats["dropped"]) == (
            local_stats["docs_in"], local_stats["docs_out"], local_stats["dropped"]
        ), name
    minhash = json.loads((remote / "dedup-minhash" / "_stats.json").read_text())
    assert minhash["docs_in"] > minhash["docs_out"]  # the copy was found on the cluster too
    assert _rows(remote / "dedup-minhash") == _rows(local / "dedup-minhash")
    assert _shards(remote / "tokenize") == _shards(local / "tokenize")
