"""pipelines.shards: the trainer-facing loader, on real shard files and real DataLoaders.

Every expectation is computed from the documents the test wrote, never from the loader.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch.utils.data import DataLoader

from pipelines.shard_format import (
    Manifest,
    ShardFormatError,
    ShardInfo,
    ShardWriter,
    file_sha256,
    open_shard,
    read_manifest,
    shard_schema,
    write_manifest,
)
from pipelines.shards import MixedDataset, ShardDataset

# The test process also holds a JVM (Spark) and a Prefect server thread; forking it makes
# DataLoader workers die at start in a full test run. Real training processes hold neither,
# so the default (fork) is fine there; the tests start workers from a clean forkserver.
WORKER_START = "forkserver"

REPO_ROOT = Path(__file__).resolve().parents[1]

Documents = dict[str, tuple[np.ndarray, np.ndarray]]  # id -> (tokens, loss mask)


def write_shards(
    root: Path,
    shard_docs: list[int],
    *,
    seed: int = 0,
    max_len: int = 40,
    vocab_size: int = 50_000,
    with_loss_mask: bool = True,
    prefix: str = "d",
) -> Documents:
    """A manifest with ``len(shard_docs)`` shards of random documents (some empty, some longer
    than the sequence lengths used below); returns what was written, by id.

    Token ids start at 1 so that padding (0) is distinguishable. The loss mask follows a
    pattern unrelated to the tokens: tokens at positions 2, 3 (mod 4) of a document are masked
    out, as a prompt/answer alternation would.
    """
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dtype = pa.uint16() if vocab_size <= 1 << 16 else pa.uint32()
    written: Documents = {}
    infos = []
    for shard_number, docs in enumerate(shard_docs):
        writer = ShardWriter(root / f"shard-{shard_number:03d}.arrow", dtype, with_loss_mask)
        for row in range(docs):
            doc_id = f"{prefix}{shard_number}-{row}"
            tokens = rng.integers(1, vocab_size, size=int(rng.integers(0, max_len + 1)), dtype=np.int64)
            mask = ((np.arange(len(tokens)) % 4) < 2).astype(np.uint8)
            writer.add(doc_id, tokens.tolist(), mask.tolist() if with_loss_mask else None)
            written[doc_id] = (tokens, mask if with_loss_mask else np.ones(len(tokens), dtype=np.uint8))
        infos.append(writer.close())
    manifest = Manifest(tokenizer={"name": "test"}, token_dtype=str(dtype), has_loss_mask=with_loss_mask, shards=infos)
    write_manifest(root, manifest)
    return written


@pytest.fixture
def token_corpus(tmp_path: Path) -> tuple[Path, Documents]:
    root = tmp_path / "tokens"
    return root, write_shards(root, [37, 11, 58])


def as_lists(items: list[dict]) -> list[dict]:
    """Items made comparable with ==: tensors become lists."""
    return [{k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in item.items()} for item in items]


def read_ids_with_loader(root: Path, *, rank: int, world_size: int, epoch: int, seed: int = 3) -> list[str]:
    dataset = ShardDataset(root, seed=seed, chunk_docs=5, rank=rank, world_size=world_size)
    dataset.set_epoch(epoch)
    return [item["id"] for item in DataLoader(dataset, batch_size=None, num_workers=2, multiprocessing_context=WORKER_START)]


# ---------------------------------------------------------------------------- work split


def test_every_document_is_read_exactly_once_across_ranks_and_workers(token_corpus) -> None:
    root, written = token_corpus
    for epoch in (0, 1):
        per_rank = [read_ids_with_loader(root, rank=rank, world_size=2, epoch=epoch) for rank in (0, 1)]
        assert all(per_rank), "each rank gets some documents"
        everything = per_rank[0] + per_rank[1]
        assert Counter(everything) == Counter(written.keys()), f"epoch {epoch}: duplicates or missing documents"


def test_shuffle_depends_on_seed_and_epoch_only(token_corpus) -> None:
    root, _ = token_corpus
    epoch0 = read_ids_with_loader(root, rank=1, world_size=2, epoch=0)
    assert read_ids_with_loader(root, rank=1, world_size=2, epoch=0) == epoch0, "same (seed, epoch), same order"
    epoch1 = read_ids_with_loader(root, rank=1, world_size=2, epoch=1)
    assert epoch1 != epoch0, "a new epoch reshuffles"
    assert read_ids_with_loader(root, rank=1, world_size=2, epoch=0, seed=4) != epoch0, "another seed reshuffles"


def test_chunks_are_read_whole_and_their_rows_reshuffled_each_epoch(token_corpus) -> None:
    """Chunks are runs of chunk_docs rows of one shard: a reader reads each chunk's documents
    one after another, in an order drawn per (seed, epoch, chunk)."""
    root, _ = token_corpus
    chunk_docs = 5

    def chunk_of(doc_id: str) -> tuple[int, int]:
        shard, row = doc_id[1:].split("-")
        return int(shard), int(row) // chunk_docs

    orders = []
    for epoch in (0, 1):
        dataset = ShardDataset(root, seed=9, chunk_docs=chunk_docs)
        dataset.set_epoch(epoch)
        ids = [item["id"] for item in dataset]
        chunk_sequence = [chunk_of(i) for i in ids]
        runs = [c for n, c in enumerate(chunk_sequence) if n == 0 or chunk_sequence[n - 1] != c]
        assert len(runs) == len(set(runs)), "each chunk is read as one run"
        by_chunk: dict[tuple[int, int], list[str]] = {}
        for doc_id in ids:
            by_chunk.setdefault(chunk_of(doc_id), []).append(doc_id)
        orders.append(by_chunk)
    reshuffled = [chunk for chunk in orders[0] if orders[0][chunk] != orders[1][chunk]]
    assert len(reshuffled) > len(orders[0]) // 2, "rows inside chunks are reshuffled per epoch"


def test_unshuffled_single_reader_reads_the_manifest_in_order(token_corpus) -> None:
    root, written = token_corpus
    items = list(ShardDataset(root, shuffle=False, chunk_docs=5))
    assert [item["id"] for item in items] == list(written)
    for item in items:
        tokens, mask = written[item["id"]]
        assert item["input_ids"].dtype == torch.int64 and item["input_ids"].tolist() == tokens.tolist()
        assert item["loss_mask"].tolist() == mask.astype(bool).tolist()


# ---------------------------------------------------------------------------- packing


@pytest.mark.parametrize("drop_last", [True, False])
def test_packing_concatenates_the_readers_documents(token_corpus, drop_last: bool) -> None:
    root, written = token_corpus
    seq_len = 16
    settings = dict(seed=5, chunk_docs=5, rank=1, world_size=2, drop_last=drop_last)
    documents = list(ShardDataset(root, **settings))  # this reader's documents, in its order
    packed = list(ShardDataset(root, seq_len=seq_len, **settings))

    expected_tokens = np.concatenate([written[d["id"]][0] for d in documents])
    expected_mask = np.concatenate([written[d["id"]][1] for d in documents]).astype(bool)
    expected_positions = np.concatenate([np.arange(len(written[d["id"]][0])) for d in documents])
    full, remainder = divmod(len(expected_tokens), seq_len)
    assert remainder, "the fixture should leave a partial sequence"
    assert len(packed) == full + (0 if drop_last else 1)
    for item in packed:
        assert set(item) == {"input_ids", "position_ids", "loss_mask"}
        assert all(tensor.shape == (seq_len,) for tensor in item.values())
        assert item["input_ids"].dtype == torch.int64 and item["position_ids"].dtype == torch.int64

    tokens = torch.cat([item["input_ids"] for item in packed]).numpy()
    positions = torch.cat([item["position_ids"] for item in packed]).numpy()
    mask = torch.cat([item["loss_mask"] for item in packed]).numpy().astype(bool)
    kept = full * seq_len
    assert tokens[:kept].tolist() == expected_tokens[:kept].tolist()
    # Positions restart exactly at document starts and continue across sequence boundaries.
    assert positions[:kept].tolist() == expected_positions[:kept].tolist()
    assert mask[:kept].tolist() == expected_mask[:kept].tolist()
    if not drop_last:
        assert tokens[kept:].tolist() == expected_tokens[kept:].tolist() + [0] * (seq_len - remainder)
        assert positions[kept:].tolist() == expected_positions[kept:].tolist() + [0] * (seq_len - remainder)
        assert mask[kept:].tolist() == expected_mask[kept:].tolist() + [False] * (seq_len - remainder)


def test_packed_items_collate_and_cover_all_tokens_across_workers(token_corpus) -> None:
    root, written = token_corpus
    seq_len = 8
    dataset = ShardDataset(root, seq_len=seq_len, seed=1, chunk_docs=5, drop_last=False)
    batches = list(DataLoader(dataset, batch_size=4, num_workers=2, multiprocessing_context=WORKER_START))
    assert all(batch["input_ids"].shape[1] == seq_len for batch in batches)
    tokens = torch.cat([batch["input_ids"].flatten() for batch in batches])
    mask = torch.cat([batch["loss_mask"].flatten() for batch in batches])
    real = tokens[tokens != 0]  # padding is the only 0: the fixture's tokens start at 1
    assert len(real) == sum(len(t) for t, _ in written.values())
    assert Counter(real.tolist()) == Counter(np.concatenate([t for t, _ in written.values()]).tolist())
    assert not mask[tokens == 0].any(), "padding is never trained on"


def test_shards_without_loss_mask_train_on_every_token(tmp_path: Path) -> None:
    written = write_shards(tmp_path / "plain", [9, 4], with_loss_mask=False)
    items = list(ShardDataset(tmp_path / "plain", chunk_docs=3))
    assert Counter(item["id"] for item in items) == Counter(written.keys())
    assert all(item["loss_mask"].all() for item in items)
    packed = list(ShardDataset(tmp_path / "plain", seq_len=8, chunk_docs=3))
    assert all(item["loss_mask"].all() for item in packed)


def write_foreign_shard(root: Path, batches: int, rows_per_batch: int, seed: int = 8) -> Documents:
    """One shard written with pyarrow directly, in small record batches (ShardWriter's are 1024
    rows), plus its manifest."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    schema = shard_schema(pa.uint16(), with_loss_mask=True)
    written: Documents = {}
    path = root / "only.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as stream:
        for batch_number in range(batches):
            ids = [f"b{batch_number}-{i}" for i in range(rows_per_batch)]
            docs = [rng.integers(1, 1000, size=int(rng.integers(1, 12))) for _ in ids]
            masks = [rng.integers(0, 2, size=len(d)).astype(np.uint8) for d in docs]
            columns = [pa.array(ids), pa.array([d.tolist() for d in docs], type=pa.list_(pa.uint16())),
                       pa.array([m.tolist() for m in masks], type=pa.list_(pa.uint8()))]
            stream.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
            written.update({i: (d, m) for i, d, m in zip(ids, docs, masks)})
    tokens = sum(len(d) for d, _ in written.values())
    info = ShardInfo(path.name, len(written), tokens, path.stat().st_size, file_sha256(path))
    write_manifest(root, Manifest(tokenizer={}, token_dtype="uint16", has_loss_mask=True, shards=[info]))
    return written


def assert_reads_back(root: Path, written: Documents, chunk_docs: int) -> None:
    documents = list(ShardDataset(root, chunk_docs=chunk_docs, seed=4, verify="size"))
    assert Counter(d["id"] for d in documents) == Counter(written.keys())
    for document in documents:
        tokens, mask = written[document["id"]]
        assert document["input_ids"].tolist() == tokens.tolist()
        assert document["loss_mask"].tolist() == mask.astype(bool).tolist()
    packed = list(ShardDataset(root, chunk_docs=chunk_docs, seed=4, seq_len=6, drop_last=False, verify="size"))
    expected_tokens = np.concatenate([written[d["id"]][0] for d in documents]).tolist()
    expected_mask = np.concatenate([written[d["id"]][1] for d in documents]).astype(bool).tolist()
    assert torch.cat([p["input_ids"] for p in packed]).tolist()[: len(expected_tokens)] == expected_tokens
    assert torch.cat([p["loss_mask"] for p in packed]).tolist()[: len(expected_mask)] == expected_mask


def test_chunks_spanning_record_batches(tmp_path: Path) -> None:
    written = write_foreign_shard(tmp_path / "foreign", batches=7, rows_per_batch=3)
    for chunk_docs in (2, 5):  # chunks inside one batch and across two or three
        assert_reads_back(tmp_path / "foreign", written, chunk_docs)


def test_a_loss_mask_array_with_its_own_offsets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """IPC streams store list offsets from 0, but an Arrow table may hold a loss_mask whose
    offsets are shifted from input_ids' (its values a slice of a larger buffer); the loader
    must follow each column's own offsets."""
    root = tmp_path / "shifted"
    written = write_foreign_shard(root, batches=1, rows_per_batch=12)
    on_disk = open_shard(root / "only.arrow")
    masks = on_disk.column("loss_mask").combine_chunks()
    values_after_padding = np.concatenate([[9, 9, 9], masks.values.to_numpy()]).astype(np.uint8)
    shifted = pa.ListArray.from_arrays(pa.array(masks.offsets.to_numpy() + 3), pa.array(values_after_padding))
    table = on_disk.set_column(2, "loss_mask", shifted)
    monkeypatch.setattr("pipelines.shards.open_shard", lambda path, info=None: table)
    assert_reads_back(root, written, chunk_docs=5)


# ---------------------------------------------------------------------------- resume


@pytest.mark.parametrize("seq_len", [None, 16])
def test_resume_continues_exactly_where_the_state_was_taken(token_corpus, seq_len: int | None) -> None:
    root, _ = token_corpus
    settings = dict(seq_len=seq_len, seed=11, chunk_docs=5, rank=0, world_size=2)

    def fresh() -> ShardDataset:
        dataset = ShardDataset(root, verify="size", **settings)
        dataset.set_epoch(2)
        return dataset

    uninterrupted = as_lists(list(fresh()))
    assert len(uninterrupted) > 20
    for cut in (0, 1, 7, len(uninterrupted) // 2, len(uninterrupted) - 1, len(uninterrupted)):
        dataset = fresh()
        iterator = iter(dataset)
        before = as_lists([next(iterator) for _ in range(cut)])
        state = json.loads(json.dumps(dataset.state_dict()))  # a checkpoint survives JSON
        assert len(json.dumps(state)) < 1000, "the state stays small"
        restored = ShardDataset(root, verify="size", **settings)
        restored.load_state_dict(state)
        after = as_lists(list(restored))
        assert before + after == uninterrupted, f"resume after {cut} items"


@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")  # torchdata's own call
@pytest.mark.parametrize("seq_len", [None, 16])
def test_resume_through_stateful_dataloader_with_workers(token_corpus, seq_len: int | None) -> None:
    stateful = pytest.importorskip("torchdata.stateful_dataloader")
    root, _ = token_corpus
    batch_size = None if seq_len is None else 3

    def loader() -> "stateful.StatefulDataLoader":
        dataset = ShardDataset(root, seq_len=seq_len, seed=2, chunk_docs=5, verify="size")
        return stateful.StatefulDataLoader(
            dataset, batch_size=batch_size, num_workers=2, multiprocessing_context=WORKER_START
        )

    uninterrupted = as_lists(list(loader()))
    cut = len(uninterrupted) // 3
    first = loader()
    iterator = iter(first)
    before = as_lists([next(iterator) for _ in range(cut)])
    state = first.state_dict()
    del iterator, first
    second = loader()
    second.load_state_dict(state)
    after = as_lists(list(second))
    assert before + after == uninterrupted


def test_a_state_from_other_data_or_settings_is_refused(token_corpus, tmp_path: Path) -> None:
    root, _ = token_corpus
    dataset = ShardDataset(root, seq_len=16, seed=1, verify="size")
    next(iter(dataset))
    state = dataset.state_dict()
    other_root = tmp_path / "other"
    write_shards(other_root, [5], seed=99)
    with pytest.raises(ValueError, match="another manifest"):
        ShardDataset(other_root, seq_len=16, seed=1, verify="size").load_state_dict(state)
    with pytest.raises(ValueError, match="seq_len"):
        ShardDataset(root, seq_len=32, seed=1, verify="size").load_state_dict(state)
    with pytest.raises(ValueError, match="seed"):
        ShardDataset(root, seq_len=16, seed=2, verify="size").load_state_dict(state)
    with pytest.raises(ValueError, match="world_size"):
        ShardDataset(root, seq_len=16, seed=1, verify="size", rank=0, world_size=2).load_state_dict(state)


# ---------------------------------------------------------------------------- mixing


def test_mixed_dataset_draws_by_weight_cycles_sources_and_resumes(tmp_path: Path) -> None:
    big = write_shards(tmp_path / "big", [6, 4], seed=1, prefix="big")
    small = write_shards(tmp_path / "small", [7], seed=2, prefix="small")

    def mix() -> MixedDataset:
        sources = [
            (ShardDataset(tmp_path / "big", chunk_docs=3, seed=1, verify="size"), 3.0),
            (ShardDataset(tmp_path / "small", chunk_docs=3, seed=1, verify="size"), 1.0),
        ]
        return MixedDataset(sources, seed=7)

    steps = 120
    iterator = iter(mix())
    uninterrupted = as_lists([next(iterator) for _ in range(steps)])
    ids = [item["id"] for item in uninterrupted]
    from_big = [i for i in ids if i.startswith("big")]
    assert 0.6 < len(from_big) / steps < 0.9, "about 3 in 4 items come from the weight-3 source"
    # Each source cycles whole epochs: every block of its size holds each document once.
    for source_ids, written in ((from_big, big), (([i for i in ids if i.startswith("small")]), small)):
        full_epochs = len(source_ids) // len(written)
        assert full_epochs >= 2
        for epoch in range(full_epochs):
            block = source_ids[epoch * len(written) : (epoch + 1) * len(written)]
            assert sorted(block) == sorted(written), f"epoch {epoch} of a source"
        assert source_ids[: len(written)] != source_ids[len(written) : 2 * len(written)], "epochs reshuffle"

    for cut in (0, 37, 101):
        mixed = mix()
        iterator = iter(mixed)
        before = as_lists([next(iterator) for _ in range(cut)])
        state = json.loads(json.dumps(mixed.state_dict()))
        restored = mix()
        restored.load_state_dict(state)
        iterator = iter(restored)
        after = as_lists([next(iterator) for _ in range(steps - cut)])
        assert before + after == uninterrupted, f"mixed resume after {cut} items"


@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")  # torchdata's own call
def test_mixed_dataset_resumes_through_stateful_dataloader_with_workers(tmp_path: Path) -> None:
    stateful = pytest.importorskip("torchdata.stateful_dataloader")
    write_shards(tmp_path / "a", [9, 8], seed=1, prefix="a")
    write_shards(tmp_path / "b", [6], seed=2, prefix="b")

    def loader() -> "stateful.StatefulDataLoader":
        sources = [
            (ShardDataset(tmp_path / "a", seq_len=8, chunk_docs=3, verify="size"), 1.0),
            (ShardDataset(tmp_path / "b", seq_len=8, chunk_docs=3, verify="size"), 1.0),
        ]
        return stateful.StatefulDataLoader(
            MixedDataset(sources, seed=3), batch_size=2, num_workers=2, multiprocessing_context=WORKER_START
        )

    def take(iterator, count: int) -> list[dict]:
        return as_lists([next(iterator) for _ in range(count)])

    uninterrupted = take(iter(loader()), 40)
    first = loader()
    before = take(iter(first), 17)
    state = first.state_dict()
    second = loader()
    second.load_state_dict(state)
    assert before + take(iter(second), 23) == uninterrupted


def test_mixed_dataset_refuses_sources_of_different_lengths(token_corpus) -> None:
    root, _ = token_corpus
    with pytest.raises(ValueError, match="seq_len"):
        MixedDataset([(ShardDataset(root, seq_len=16, verify="none"), 1), (ShardDataset(root, verify="none"), 1)])


# ---------------------------------------------------------------------------- bad input


def test_a_corrupted_shard_is_refused_at_construction(token_corpus) -> None:
    root, _ = token_corpus
    shard = root / "shard-001.arrow"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardFormatError, match="shard-001.arrow.*SHA-256"):
        ShardDataset(root)


def test_an_unlisted_shard_is_refused(token_corpus) -> None:
    root, _ = token_corpus
    (root / "stray.arrow").write_bytes((root / "shard-000.arrow").read_bytes())
    with pytest.raises(ShardFormatError, match="stray.arrow"):
        ShardDataset(root, verify="size")


def test_a_missing_shard_is_refused(token_corpus) -> None:
    root, _ = token_corpus
    (root / "shard-002.arrow").unlink()
    with pytest.raises(ShardFormatError, match="shard-002.arrow.*missing"):
        ShardDataset(root, verify="size")


def test_a_truncated_shard_is_refused_by_size(token_corpus) -> None:
    root, _ = token_corpus
    shard = root / "shard-000.arrow"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(ShardFormatError, match="shard-000.arrow.*bytes"):
        ShardDataset(root, verify="size")


def test_a_foreign_file_under_a_shard_name_fails_when_read(token_corpus) -> None:
    root, _ = token_corpus
    (root / "shard-001.arrow").write_bytes(b"PK\x03\x04 this is a zip archive, not Arrow" * 40)
    dataset = ShardDataset(root, verify="none", shuffle=False, chunk_docs=100)
    with pytest.raises(ShardFormatError, match="shard-001.arrow"):
        list(dataset)


def test_a_garbage_manifest_is_refused(token_corpus) -> None:
    root, _ = token_corpus
    (root / "manifest.json").write_text('{"format": "corpusforge-token-shards", "shards": [')
    with pytest.raises(ShardFormatError, match="manifest.json"):
        ShardDataset(root)


def test_a_manifest_listing_a_shard_twice_is_refused(token_corpus) -> None:
    root, _ = token_corpus
    data = json.loads((root / "manifest.json").read_text())
    data["shards"].append(data["shards"][0])
    (root / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ShardFormatError, match="more than once"):
        read_manifest(root)


# ---------------------------------------------------------------------------- format


def test_uint32_tokens_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "wide"
    written = write_shards(root, [8, 5], vocab_size=200_000)
    assert read_manifest(root).token_dtype == "uint32"
    assert max(int(t.max()) for t, _ in written.values() if len(t)) > 65_535
    items = list(ShardDataset(root, chunk_docs=4))
    read_back = {item["id"]: item["input_ids"].tolist() for item in items}
    assert read_back == {doc_id: tokens.tolist() for doc_id, (tokens, _) in written.items()}
    packed = torch.cat([item["input_ids"] for item in ShardDataset(root, seq_len=4, shuffle=False, chunk_docs=4)])
    everything = np.concatenate([t for t, _ in written.values()])
    assert packed.tolist() == everything[: len(packed)].tolist()


def test_shards_are_readable_by_pyarrow_and_datasets(token_corpus) -> None:
    root, written = token_corpus
    shard = root / "shard-000.arrow"
    expected = {k: t.tolist() for k, (t, _) in written.items() if k.startswith("d0-")}
    with pa.memory_map(str(shard)) as source:
        table = pa.ipc.open_stream(source).read_all()
    assert dict(zip(table.column("id").to_pylist(), table.column("input_ids").to_pylist())) == expected
    datasets = pytest.importorskip("datasets")
    hf = datasets.Dataset.from_file(str(shard))
    assert dict(zip(hf["id"], hf["input_ids"])) == expected
    assert hf[0]["loss_mask"] == written[hf[0]["id"]][1].tolist()


def test_the_loader_imports_neither_spark_nor_prefect() -> None:
    code = (
        "import sys, pipelines.shards; "
        "heavy = sorted(m for m in sys.modules if m.startswith(('pyspark', 'prefect'))); "
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr
