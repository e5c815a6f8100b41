"""kill -9 in the middle of every Spark stage, then a rerun: the same output as a run never killed.

Each case runs one stage of a small real chain (ingest -> langid -> quality -> pii ->
dedup-exact -> dedup-minhash; tokenize of ingest's output; ingest-warc) as ``corpusforge stage`` in a
subprocess that ``tests.kill_driver`` SIGKILLs, with its Spark JVM and Python workers, at a
chosen point; then checks that nothing looks finished, that the leftovers are refused as input,
and that a rerun removes them and writes exactly the rows (and, for tokenize, the shard bytes)
of an uninterrupted run.

Three kill points: ``write`` (while the Spark job writes), ``publish`` (all written and marked,
not yet renamed) and ``replace`` (an earlier output moved aside, the new one not yet in place).
The default run kills ``ingest`` and ``tokenize`` while writing and ``ingest`` while replacing
an earlier output; ``-m slow`` runs every stage at every point. The crawl and synth
stages, which resume inside a stage, have their own kill tests (tests/test_crawl.py,
tests/test_synth_stages.py, tests/test_synth_cli.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from flows.recipe import default_recipe
from pipelines.errors import SchemaError
from pipelines.registry import stage_class
from pipelines.stage import STATS_FILE, SUCCESS_FILE, leftovers, read_success, run_stage
from tests.dedup_data import build_dedup_corpus
from tests.test_warc_reader import response, write_warc

REPO = Path(__file__).resolve().parent.parent

# stage -> the stage whose output it reads (None: the raw files). tokenize reads any document
# dataset; it takes ingest's, the cheapest to make.
CHAIN = {
    "ingest": None,
    "ingest-warc": None,
    "langid": "ingest",
    "quality": "langid",
    "pii": "quality",
    "dedup-exact": "pii",
    "dedup-minhash": "dedup-exact",
    "tokenize": "ingest",
}


def _write_raw(root: Path) -> dict[str, Path]:
    jsonl = root / "raw-jsonl"
    jsonl.mkdir(parents=True)
    docs = build_dedup_corpus(seed=3, n_docs=240)  # real text with exact and near duplicates
    for part in range(3):
        with open(jsonl / f"part-{part}.jsonl", "w", encoding="utf-8") as handle:
            for doc in docs[part::3]:
                handle.write(json.dumps({"id": doc["id"], "text": doc["text"], "url": doc["url"]}) + "\n")
    warcs = root / "raw-warc"
    warcs.mkdir()
    for part in range(2):
        write_warc(warcs / f"crawl-{part}.warc.gz", [response(part * 50 + n) for n in range(50)], gz=True)
    return {"ingest": jsonl, "ingest-warc": warcs}


def _run_in_process(spark, name: str, inputs: list[Path], output: Path, force: bool = False):
    config = default_recipe().section(name)
    return run_stage(stage_class(name)(), inputs, output, config, lambda: spark, force=force)


class ReferenceRuns:
    """Uninterrupted runs of the stages, made when first asked for (with their upstream)."""

    def __init__(self, spark, root: Path) -> None:
        self.spark, self.root = spark, root
        self.raw = _write_raw(root)
        self.outputs: dict[str, Path] = {}

    def inputs(self, name: str) -> list[Path]:
        upstream = CHAIN[name]
        return [self.raw[name]] if upstream is None else [self.output(upstream)]

    def output(self, name: str) -> Path:
        if name not in self.outputs:
            out = self.root / f"ref-{name}"
            result = _run_in_process(self.spark, name, self.inputs(name), out)
            assert result.stats["docs_out"] > 0, name
            self.outputs[name] = out
        return self.outputs[name]


@pytest.fixture(scope="module")
def chain(spark, tmp_path_factory) -> ReferenceRuns:
    return ReferenceRuns(spark, tmp_path_factory.mktemp("kill-chain"))


def _killed_run(point: str, name: str, inputs: list[Path], output: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "tests.kill_driver", point, "stage", name, "--out", str(output)]
    for path in inputs:
        command += ["--in", str(path)]
    command += ["--set", "spark.master=local[2]", *extra]
    done = subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=240,
        start_new_session=True,  # its own process group: the kill takes the JVM and workers too
    )
    assert done.returncode == -signal.SIGKILL, f"not killed (exit {done.returncode}):\n{done.stderr[-3000:]}"
    return done


def _dataset_rows(path: Path) -> list[dict]:
    files = sorted(
        str(p) for p in path.rglob("*.parquet") if not any(s.startswith(("_", ".")) for s in p.relative_to(path).parts)
    )
    rows = ds.dataset(files, format="parquet", partitioning="hive").to_table().to_pylist() if files else []
    return sorted(rows, key=lambda row: json.dumps(row, sort_keys=True, default=str))


def _fingerprint_free_stats(path: Path) -> dict:
    stats = json.loads((path / STATS_FILE).read_text())
    return {k: v for k, v in stats.items() if k.startswith("docs_") or k in ("drops", "bytes_in", "bytes_out")}


def _assert_same_output(output: Path, reference: Path) -> None:
    assert read_success(output)["fingerprint"] == read_success(reference)["fingerprint"]
    assert _dataset_rows(output) == _dataset_rows(reference)
    assert _dataset_rows(output / "_rejects") == _dataset_rows(reference / "_rejects")
    assert _fingerprint_free_stats(output) == _fingerprint_free_stats(reference)
    manifest = reference / "manifest.json"
    if manifest.exists():  # tokenize: the same shard files, byte for byte
        assert json.loads((output / "manifest.json").read_text())["shards"] == json.loads(manifest.read_text())["shards"]
        for shard in sorted(p.name for p in reference.glob("*.arrow")):
            assert (output / shard).read_bytes() == (reference / shard).read_bytes(), shard


def _assert_unfinished_is_refused(spark, unfinished: Path, name: str) -> None:
    """A downstream stage pointed at the leftover (or the absent output) refuses it."""
    with pytest.raises(Exception) as refused:
        _run_in_process(spark, "langid", [unfinished], unfinished.parent / "downstream")
    assert str(unfinished) in str(refused.value)
    assert isinstance(refused.value, (SchemaError, FileNotFoundError)) or "does not exist" in str(refused.value)
    assert not (unfinished.parent / "downstream").exists(), name


def _kill_and_rerun(spark, chain: ReferenceRuns, name: str, point: str, tmp_path: Path) -> None:
    inputs = chain.inputs(name)
    reference = chain.output(name)
    output = tmp_path / name
    if point == "replace":
        shutil.copytree(reference, output)  # an earlier finished output; --force rewrites it
        _killed_run(point, name, inputs, output, "--force")
    else:
        _killed_run(point, name, inputs, output)

    assert not (output / SUCCESS_FILE).exists()  # nothing that looks finished
    left = leftovers(output)
    assert left, "the kill left no staging directory: it did not happen mid-stage"
    if point == "publish":
        assert all((p / SUCCESS_FILE).exists() for p in left)  # fully written and marked, under its staging name
    for leftover in left:
        _assert_unfinished_is_refused(spark, leftover, name)
    if not output.exists():
        _assert_unfinished_is_refused(spark, output, name)

    rerun = _run_in_process(spark, name, inputs, output)
    assert not rerun.skipped
    assert not leftovers(output)
    _assert_same_output(output, reference)


# In the default run: a raw-file reader and the stage with its own writer and manifest. The
# others (same contract, same code path) with -m slow: each case costs a cold JVM and Python
# workers (about 20 s), and the default suite has a time budget.
DEFAULT_RUN = ("ingest", "tokenize")


@pytest.mark.parametrize("name", [n if n in DEFAULT_RUN else pytest.param(n, marks=pytest.mark.slow) for n in CHAIN])
def test_kill_during_write_then_rerun_gives_the_uninterrupted_output(spark, chain, name: str, tmp_path: Path) -> None:
    _kill_and_rerun(spark, chain, name, "write", tmp_path)


# "replace" in the default run: its window also has the new output complete and marked under
# its staging name, which is the "publish" window's state, plus the earlier output moved aside.
@pytest.mark.parametrize("point", [pytest.param("publish", marks=pytest.mark.slow), "replace"])
def test_kill_while_publishing(spark, chain, point: str, tmp_path: Path) -> None:
    _kill_and_rerun(spark, chain, "ingest", point, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["publish", "replace"])
@pytest.mark.parametrize("name", [n for n in CHAIN if n != "ingest"])
def test_kill_while_publishing_every_stage(spark, chain, name: str, point: str, tmp_path: Path) -> None:
    _kill_and_rerun(spark, chain, name, point, tmp_path)


@pytest.mark.slow
def test_a_build_killed_in_its_second_stage_resumes_there(spark, prefect_server, chain, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    runner = CliRunner()
    recipe = tmp_path / "build.yaml"
    recipe.write_text(
        f"name: killed\nstages: [ingest, langid, quality]\n"
        f"ingest:\n  paths: [{chain.raw['ingest']}]\n  source: tests\nspark:\n  master: local[2]\n"
    )
    reference = tmp_path / "reference"
    done = runner.invoke(app, ["run", str(recipe), "--out", str(reference)])
    assert done.exit_code == 0, done.output

    out = tmp_path / "build"
    command = [sys.executable, "-m", "tests.kill_driver", "write:2", "run", str(recipe), "--out", str(out)]
    killed = subprocess.run(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                            text=True, timeout=300, start_new_session=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    finished_ingest = read_success(out / "ingest")
    assert finished_ingest is not None  # the first stage had finished
    assert not (out / "langid").exists() and leftovers(out / "langid")
    assert not (out / "quality").exists()

    again = runner.invoke(app, ["run", str(recipe), "--out", str(out)])
    assert again.exit_code == 0, again.output
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert [(s["stage"], s["skipped"]) for s in summary["stages"]] == [
        ("ingest", True), ("langid", False), ("quality", False)
    ]
    assert read_success(out / "ingest") == finished_ingest  # not run again
    assert not leftovers(out / "langid")
    for name in ("ingest", "langid", "quality"):
        assert _dataset_rows(out / name) == _dataset_rows(reference / name), name
