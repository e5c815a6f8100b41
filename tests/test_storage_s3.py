"""The I/O layer on a real S3 API: a moto S3 server on 127.0.0.1, reached through ``s3a://`` URIs
with s3fs, as on a cluster. Spark's side of ``s3a://`` needs the hadoop-aws jars (not shipped with
pyspark, not on this machine), so this covers what corpusforge's own Python code does with a URI:
listing raw files, reading them as the executors do, fingerprints, shard writing, the stage
contract's completion marker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet
import pytest

s3fs = pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

from pipelines import storage  # noqa: E402
from pipelines.ingest import IngestConfig, list_input_files, read_file  # noqa: E402
from pipelines.shard_format import ShardWriter  # noqa: E402
from pipelines.stage import SUCCESS_FILE, input_fingerprint, publish, read_success  # noqa: E402


@pytest.fixture(scope="module")
def bucket() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    port = server._server.server_port  # the port the OS gave
    patch = pytest.MonkeyPatch()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }.items():
        patch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir("corpus-bucket")
    try:
        yield "s3a://corpus-bucket"
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        patch.undo()
        server.stop()


def test_raw_files_are_listed_and_read_from_s3(bucket: str) -> None:
    root = storage.location(f"{bucket}/raw")
    (root / "a.jsonl").write_text('{"id": "1", "text": "first document"}\nnot json\n{"id": "2", "text": "second"}\n')
    (root / "sub" / "b.txt").write_text("a text file")
    (root / "skip.bin").write_bytes(b"\x00\x01")
    files, skipped = list_input_files([str(root)], ["jsonl", "text"])
    assert [(f["rel"], f["format"]) for f in files] == [("a.jsonl", "jsonl"), ("sub/b.txt", "text")]
    assert files[0]["path"] == f"{bucket}/raw/a.jsonl" and files[0]["size"] > 0
    assert skipped == {".bin": 1}
    rows = list(read_file(files[0], IngestConfig()))
    kept = [r for r in rows if r["_drop_reason"] is None]
    bad = [r for r in rows if r["_drop_reason"] is not None]
    assert [r["text"] for r in kept] == ["first document", "second"]
    assert len(bad) == 1 and f"{bucket}/raw/a.jsonl" in bad[0]["_drop_detail"]

    before = input_fingerprint(root)
    assert input_fingerprint(root) == before
    (root / "sub" / "b.txt").write_text("changed, longer text")
    assert input_fingerprint(root) != before


def test_shards_are_written_to_s3_with_their_checksum(bucket: str) -> None:
    path = storage.location(f"{bucket}/tokens/shard-00000-0000.arrow")
    writer = ShardWriter(path, pa.uint16(), with_loss_mask=False)
    writer.add("doc-1", [1, 2, 3])
    writer.add("doc-2", [4, 5])
    info = writer.close()
    data = path.read_bytes()
    import hashlib

    assert (info.docs, info.tokens, info.bytes, info.sha256) == (2, 5, len(data), hashlib.sha256(data).hexdigest())
    table = pyarrow.ipc.open_stream(data).read_all()
    assert table.column("id").to_pylist() == ["doc-1", "doc-2"]


def test_the_completion_marker_comes_last_on_s3(bucket: str) -> None:
    output = storage.location(f"{bucket}/stage-out")
    tmp = storage.location(f"{bucket}/.stage-out.tmp-1")
    (tmp / "part-0.parquet").write_bytes(b"first")
    publish(tmp, output, {"stage": "x", "fingerprint": "one", "finished_at": "t1"})
    assert read_success(output)["fingerprint"] == "one"
    assert json.loads((output / "_stats.json").read_text())["fingerprint"] == "one"
    assert not tmp.exists()

    tmp2 = storage.location(f"{bucket}/.stage-out.tmp-2")
    (tmp2 / "part-0.parquet").write_bytes(b"second")
    publish(tmp2, output, {"stage": "x", "fingerprint": "two", "finished_at": "t2"})
    assert read_success(output)["fingerprint"] == "two"
    assert (output / "part-0.parquet").read_bytes() == b"second"
    storage.remove_tree(output)
    assert not (output / SUCCESS_FILE).exists()


def test_a_publish_cut_short_on_s3_is_refused_as_input(bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.errors import SchemaError
    from pipelines.schema import DOCUMENT_SCHEMA, dataset_files

    output = storage.location(f"{bucket}/cut-short")
    tmp = storage.location(f"{bucket}/.cut-short.tmp-1")
    buffer = pa.BufferOutputStream()
    pyarrow.parquet.write_table(DOCUMENT_SCHEMA.empty_table(), buffer)
    for name in ("0-part.parquet", "1-part.parquet", "_rejects/part-0.parquet"):  # names sorting before "_"
        (tmp / name).write_bytes(buffer.getvalue().to_pybytes())
    fs = tmp.fs
    real_mv, moved = fs.mv, []

    def mv_then_die(source: str, target: str, **kwargs) -> None:
        if len(moved) == 2:
            raise OSError("killed in the middle of the move")
        real_mv(source, target, **kwargs)
        moved.append(target)

    monkeypatch.setattr(fs, "mv", mv_then_die)
    with pytest.raises(OSError, match="killed"):
        publish(tmp, output, {"stage": "x", "fingerprint": "one", "finished_at": "t1"})
    assert moved[0].endswith("/_rejects/part-0.parquet")  # the mark of a stage output moves first
    assert not (output / SUCCESS_FILE).exists()
    with pytest.raises(SchemaError, match=f"cut-short: a stage output without {SUCCESS_FILE}"):
        dataset_files(output)


def test_local_and_uri_locations_are_told_apart(tmp_path: Path) -> None:
    assert storage.is_uri(storage.location("s3a://b/k"))
    assert str(storage.location("s3a://b/k")) == "s3a://b/k"  # what Spark's s3a connector is given
    assert not storage.is_uri(storage.location(tmp_path))
