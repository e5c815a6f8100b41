"""A real Spark standalone cluster on 127.0.0.1, started from the pyspark installation itself
(``bin/spark-class``: one master, one worker): MinHash dedup and tokenize run on it with
``--spark-master spark://…`` and give the same rows and the same shard checksums as ``local[*]``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pyarrow.dataset as ds
import pytest

from flows.recipe import default_recipe
from flows.runner import execute_stage

pytestmark = pytest.mark.cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spark_class(*args: str, log: Path) -> subprocess.Popen:
    import pyspark

    home = Path(pyspark.__file__).parent
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        # No REST submission server (it would take a fixed port) and no JVM chatter on stdout.
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
    }
    handle = open(log, "w")
    return subprocess.Popen(
        [str(home / "bin" / "spark-class"), *args], env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )


def _alive_workers(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as reply:
            return sum(w.get("state") == "ALIVE" for w in json.load(reply).get("workers", []))
    except OSError:
        return 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("spark-cluster")
    port, ui = _free_port(), _free_port()
    master = _spark_class(
        "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui),
        log=root / "master.log",
    )
    worker = _spark_class(
        "org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}", "--host", "127.0.0.1",
        "--cores", "2", "--memory", "2g", "--webui-port", str(_free_port()), "--work-dir", str(root / "work"),
        log=root / "worker.log",
    )
    try:
        deadline = time.time() + 120
        while _alive_workers(ui) < 1:
            assert master.poll() is None, (root / "master.log").read_text()[-2000:]
            assert worker.poll() is None, (root / "worker.log").read_text()[-2000:]
            assert time.time() < deadline, "the Spark worker did not register with the master"
            time.sleep(0.5)
        yield f"spark://127.0.0.1:{port}"
    finally:
        for process in (worker, master):
            os.killpg(process.pid, signal.SIGTERM)
        for process in (worker, master):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


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
