"""The I/O layer (pipelines.storage): stages given ``file://`` URIs run through the same code a
``s3a://``/``gs://``/``hdfs://`` location takes (fsspec on the driver and the executors, Hadoop in
Spark) and give the same output as local paths; executors need no file only the driver sees."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.recipe import default_recipe
from flows.runner import execute_stage
from pipelines import storage
from pipelines.errors import StageInputError
from pipelines.spark import AUTO_SHUFFLE_KEY, SHUFFLE_INPUT_BYTES_PER_PARTITION, size_shuffles
from pipelines.stage import SUCCESS_FILE, publish
from pipelines.tokenize import TokenizeStage
from pipelines.tokenizer import resolve_tokenizer

runner = CliRunner()


def _rows(path: Path) -> list[dict]:
    table = ds.dataset(str(path), format="parquet", exclude_invalid_files=True).to_table()
    return sorted(table.to_pylist(), key=lambda row: row["id"])


def _shards(tokenized: Path) -> list[tuple[int, int, str]]:
    manifest = json.loads((tokenized / "manifest.json").read_text())
    return [(s["path"], s["docs"], s["tokens"], s["sha256"]) for s in manifest["shards"]]


def test_location_kinds() -> None:
    assert storage.location("/data/x") == Path("/data/x")
    assert not storage.is_uri(storage.location("/data/x"))
    uri = storage.location("file:///data/x")
    assert storage.is_uri(uri) and str(uri) == "file:///data/x" and uri.name == "x"
    assert str(uri.parent / "y" / "_SUCCESS") == "file:///data/y/_SUCCESS"


def test_stages_on_file_uris_equal_the_local_run(spark, corpus: Path, tmp_path: Path) -> None:
    text = (corpus / "notes.md").read_text()
    (corpus / "copy.md").write_text(text)
    stages = ["ingest", "dedup-minhash", "tokenize"]
    recipe = default_recipe()

    local = tmp_path / "local"
    source: list[Path] = [corpus]
    for name in stages:
        source = [execute_stage(recipe, name, source, local / name).output]

    remote = tmp_path / "by-uri"
    previous = corpus.as_uri()
    for name in stages:
        target = f"{remote.as_uri()}/{name}"
        result = runner.invoke(app, ["stage", name, "--in", previous, "--out", target])
        assert result.exit_code == 0, result.output
        previous = target
    for name in stages:
        stats = json.loads((remote / name / "_stats.json").read_text())
        local_stats = json.loads((local / name / "_stats.json").read_text())
        assert stats["output"] == f"{remote.as_uri()}/{name}"
        assert (remote / name / SUCCESS_FILE).is_file()
        assert (stats["docs_in"], stats["docs_out"], stats["dropped"]) == (
            local_stats["docs_in"], local_stats["docs_out"], local_stats["dropped"]
        ), name
    assert json.loads((remote / "dedup-minhash" / "_stats.json").read_text())["docs_out"] < len(_rows(local / "ingest"))
    assert _rows(remote / "dedup-minhash") == _rows(local / "dedup-minhash")
    assert _shards(remote / "tokenize") == _shards(local / "tokenize")

    # A rerun on the URIs finds the finished output current and leaves it as it is.
    finished = json.loads((remote / "tokenize" / SUCCESS_FILE).read_text())["finished_at"]
    again = runner.invoke(app, ["stage", "tokenize", "--in", f"{remote.as_uri()}/dedup-minhash",
                                "--out", f"{remote.as_uri()}/tokenize"])
    assert again.exit_code == 0, again.output
    assert json.loads((remote / "tokenize" / SUCCESS_FILE).read_text())["finished_at"] == finished


def test_publish_on_a_uri_never_leaves_an_output_that_looks_finished(tmp_path: Path, monkeypatch) -> None:
    output = storage.location((tmp_path / "out").as_uri())
    old = tmp_path / "out"
    old.mkdir()
    (old / "part-0.parquet").write_bytes(b"old")
    (old / SUCCESS_FILE).write_text('{"fingerprint": "old"}')
    tmp = tmp_path / ".out.tmp-1"
    tmp.mkdir()
    (tmp / "part-0.parquet").write_bytes(b"new")

    def crash(source: Path, target: Path) -> None:
        raise OSError("killed while moving")

    monkeypatch.setattr("pipelines.stage.move_tree", crash)
    stats = {"stage": "x", "fingerprint": "new", "finished_at": "now"}
    with pytest.raises(OSError):
        publish(storage.location(tmp.as_uri()), output, stats)
    assert not (old / SUCCESS_FILE).exists()

    monkeypatch.undo()
    publish(storage.location(tmp.as_uri()), output, stats)
    assert json.loads((old / SUCCESS_FILE).read_text())["fingerprint"] == "new"
    assert (old / "part-0.parquet").read_bytes() == b"new" and (old / "_stats.json").is_file()


def test_tokenize_executors_do_not_read_the_drivers_tokenizer_directory(spark, corpus: Path, tmp_path: Path) -> None:
    recipe = default_recipe()
    documents = execute_stage(recipe, "ingest", [corpus], tmp_path / "ingest").output
    expected = execute_stage(recipe, "tokenize", [documents], tmp_path / "tokenize").output

    # A copy of the tokenizer that only "the driver" has: removed once transform has run on the
    # driver, before any task starts; the tasks must work from what was shipped to them.
    driver_only = tmp_path / "driver-only-tokenizer"
    shutil.copytree(resolve_tokenizer(None).directory, driver_only)

    class DriverOnlyTokenize(TokenizeStage):
        def transform(self, spark, inputs, config):  # type: ignore[no-untyped-def]
            working = super().transform(spark, inputs, config)
            shutil.rmtree(driver_only)
            return working

    from pipelines.stage import run_stage
    from pipelines.spark import get_spark

    config = recipe.section("tokenize").model_copy(update={"tokenizer": str(driver_only)})
    result = run_stage(DriverOnlyTokenize(), [documents], tmp_path / "shipped", config, get_spark)
    assert not driver_only.exists()
    assert [s[1:] for s in _shards(result.output)] == [s[1:] for s in _shards(expected)]


def test_shuffles_are_sized_from_the_input(spark) -> None:
    fixed = spark.conf.get("spark.sql.shuffle.partitions")
    assert size_shuffles(spark, 10**12) == int(fixed)  # the session fixes the number: left alone
    spark.conf.set(AUTO_SHUFFLE_KEY, "true")
    try:
        floor = 4 * spark.sparkContext.defaultParallelism
        assert size_shuffles(spark, 1000) == floor
        assert size_shuffles(spark, 100 * SHUFFLE_INPUT_BYTES_PER_PARTITION) == 100
        assert spark.conf.get("spark.sql.shuffle.partitions") == "100"
    finally:
        spark.conf.set(AUTO_SHUFFLE_KEY, "false")
        spark.conf.set("spark.sql.shuffle.partitions", fixed)


def test_uri_outputs_are_refused_where_they_cannot_work(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(StageInputError, match="local or mounted paths only"):
        execute_stage(default_recipe(), "crawl", [], storage.location("s3a://bucket/crawl"))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: r\nstages: [ingest]\ningest:\n  paths: [{corpus}]\n")
    refused = runner.invoke(app, ["run", str(recipe), "--out", "s3a://bucket/build", "--dry-run"])
    assert refused.exit_code != 0 and "corpusforge stage" in str(refused.exception or refused.output)


def test_a_shipped_tokenizer_is_unpacked_once_per_content() -> None:
    from pipelines.tokenizer import tokenizer_files, unpacked_tokenizer

    files = tokenizer_files(resolve_tokenizer(None).directory)
    first = unpacked_tokenizer(files)
    assert unpacked_tokenizer(files) == first
    assert {p.name: p.read_bytes() for p in Path(first).iterdir()} == files
    changed = {**files, "tokenizer_config.json": files["tokenizer_config.json"] + b" "}
    assert unpacked_tokenizer(changed) != first  # a new chat template is not served from the old copy
