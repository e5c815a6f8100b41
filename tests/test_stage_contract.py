"""The stage contract on real Spark: output layout, stats, skip/rerun, locking, bad input schemas
(kill -9 and resume: tests/test_faults_kill.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipelines.errors import SchemaError, StageLockedError
from pipelines.ingest import IngestConfig, IngestStage
from pipelines.schema import DOCUMENT_SCHEMA, validate_dataset
from pipelines.stage import REJECTS_DIR, STATS_FILE, SUCCESS_FILE, output_lock, run_stage
from tests.conftest import EXPECTED_DROPS, EXPECTED_KEPT


def ingest(spark, inputs: list[Path], out: Path, config: IngestConfig | None = None, force: bool = False):
    return run_stage(IngestStage(), inputs, out, config or IngestConfig(), lambda: spark, force=force)


def test_output_layout_stats_and_rejects(spark, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "docs"
    result = ingest(spark, [corpus], out)

    assert not result.skipped
    assert (out / SUCCESS_FILE).is_file() and (out / STATS_FILE).is_file()
    files = validate_dataset(out)  # the output is a valid document dataset
    table = ds.dataset([str(f) for f in files], format="parquet").to_table()
    assert table.schema.names == DOCUMENT_SCHEMA.names
    assert table.num_rows == EXPECTED_KEPT
    assert len(set(table.column("id").to_pylist())) == EXPECTED_KEPT
    texts = " ".join(table.column("text").to_pylist())
    assert "Москва является столицей" in texts and "東京は日本の首都" in texts

    stats = json.loads((out / STATS_FILE).read_text())
    assert stats["docs_out"] == EXPECTED_KEPT
    assert {reason: v["docs"] for reason, v in stats["dropped"].items()} == EXPECTED_DROPS
    assert stats["docs_in"] == EXPECTED_KEPT + sum(EXPECTED_DROPS.values())
    assert stats["bytes_in"] > stats["bytes_out"] > 0
    assert stats["files"]["skipped_by_extension"] == {".png": 1}
    assert stats["wall_seconds"] > 0
    assert any(":2: " in d for d in stats["examples"]["malformed_jsonl"])  # file:line of the bad JSONL line

    rejects = pq.read_table(out / REJECTS_DIR).to_pylist()
    assert sorted(r["reason"] for r in rejects) == sorted(r for r, n in EXPECTED_DROPS.items() for _ in range(n))
    assert all(r["detail"] and r["id"] for r in rejects)


def test_rerun_skips_current_output_and_reruns_on_change(spark, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "docs"
    first = ingest(spark, [corpus], out)
    marker = (out / SUCCESS_FILE).read_text()
    parts = sorted(p.name for p in out.glob("part-*"))

    again = ingest(spark, [corpus], out)
    assert again.skipped and again.stats == first.stats
    assert (out / SUCCESS_FILE).read_text() == marker
    assert sorted(p.name for p in out.glob("part-*")) == parts

    changed_config = ingest(spark, [corpus], out, IngestConfig(formats=["html"]))
    assert not changed_config.skipped and changed_config.stats["docs_out"] == 2

    (corpus / "extra.txt").write_text("A new file appears in the input directory of the stage.\n")
    changed_input = ingest(spark, [corpus], out)
    assert not changed_input.skipped and changed_input.stats["docs_out"] == EXPECTED_KEPT + 1

    forced = ingest(spark, [corpus], out, force=True)
    assert not forced.skipped
    ids = lambda: sorted(ds.dataset(str(out), format="parquet").to_table().column("id").to_pylist())  # noqa: E731
    assert ids() == sorted(
        ds.dataset([str(f) for f in validate_dataset(out)], format="parquet").to_table().column("id").to_pylist()
    )
    first_ids = ids()
    ingest(spark, [corpus], out, force=True)
    assert ids() == first_ids  # ids are stable across runs


def test_leftovers_of_a_crashed_run_are_removed(spark, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "docs"
    leftover = tmp_path / ".docs.tmp-99999"
    leftover.mkdir()
    (leftover / "part-00000.parquet").write_bytes(b"half written")
    ingest(spark, [corpus], out)
    assert not leftover.exists()
    assert (out / SUCCESS_FILE).exists()


def test_a_failed_run_removes_its_staging_directory_and_reports_the_first_error(spark, corpus: Path, tmp_path: Path, monkeypatch) -> None:
    import errno

    from pipelines.stage import leftovers

    real_write = IngestStage.write_kept

    def write_then_fail(self, kept, tmp, config):
        real_write(self, kept, tmp, config)
        assert any(Path(tmp).iterdir())
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    def unpersist_fails(self, blocking: bool = False):
        raise RuntimeError("the JVM is gone")  # as after an executor OOM

    monkeypatch.setattr(IngestStage, "write_kept", write_then_fail)
    monkeypatch.setattr(type(spark.range(1)), "unpersist", unpersist_fails)
    out = tmp_path / "docs"
    with pytest.raises(OSError, match="No space left on device"):  # not hidden by the failed clean-up
        ingest(spark, [corpus], out)
    assert not out.exists() and not leftovers(out)  # the space is given back at once


def test_a_second_writer_is_refused(spark, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "docs"
    with output_lock(out):
        with pytest.raises(StageLockedError, match=str(out)):
            ingest(spark, [corpus], out)


def test_wrong_input_schema_names_file_and_column(spark, tmp_path: Path) -> None:
    import pyarrow as pa

    bad = tmp_path / "bad"
    bad.mkdir()
    good_table = DOCUMENT_SCHEMA.empty_table()
    pq.write_table(good_table, bad / "part-0.parquet")
    pq.write_table(good_table.drop_columns(["lang"]).append_column("lang", pa.array([], pa.int32())), bad / "part-1.parquet")
    with pytest.raises(SchemaError, match=r"part-1\.parquet: column 'lang' has type int32, expected string"):
        IngestStage().read_documents(spark, [bad])


def test_unfinished_outputs_are_refused_as_input(tmp_path: Path) -> None:
    from pipelines.errors import StageInputError
    from pipelines.ingest import list_input_files
    from pipelines.schema import dataset_files

    staging = tmp_path / ".docs.tmp-4242"
    staging.mkdir()
    pq.write_table(DOCUMENT_SCHEMA.empty_table(), staging / "part-0.parquet")
    with pytest.raises(SchemaError, match=r"\.docs\.tmp-4242: the staging directory of a stage run that did not finish"):
        dataset_files(staging)
    with pytest.raises(StageInputError, match="staging directory"):
        list_input_files([staging], ["parquet"])

    cut_short = tmp_path / "docs"  # what an object-store publish cut short leaves: files, no _SUCCESS
    (cut_short / REJECTS_DIR).mkdir(parents=True)
    pq.write_table(DOCUMENT_SCHEMA.empty_table(), cut_short / "part-0.parquet")
    with pytest.raises(SchemaError, match=f"docs: a stage output without {SUCCESS_FILE}"):
        dataset_files(cut_short)
    (cut_short / SUCCESS_FILE).write_text("{}")
    assert dataset_files(cut_short) == [cut_short / "part-0.parquet"]

    raw = tmp_path / "raw"  # a tree holding an interrupted crawl's staging directory
    (raw / ".crawl.tmp-7").mkdir(parents=True)
    (raw / ".crawl.tmp-7" / "half.jsonl").write_text('{"text": "half written"}\n')
    (raw / "done.jsonl").write_text('{"text": "finished"}\n')
    files, _ = list_input_files([raw], ["jsonl"])
    assert [f["rel"] for f in files] == ["done.jsonl"]
