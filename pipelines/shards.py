"""Trainer-facing loader for token shards (:mod:`pipelines.shard_format`).

:class:`ShardDataset` streams the documents of a shard manifest as PyTorch tensors, either one
document per item or packed into fixed-length sequences; :class:`MixedDataset` draws from
several of them with given weights. Neither imports Spark nor Prefect: a training job needs
torch, numpy and pyarrow only.

Use with a DataLoader and DDP::

    import torch.distributed as dist
    from torch.utils.data import DataLoader
    from pipelines.shards import ShardDataset

    dist.init_process_group("nccl")                       # rank/world size are read from here
    dataset = ShardDataset("out/tokens", seq_len=2048, seed=1234)   # same seed on every rank
    loader = DataLoader(dataset, batch_size=8, num_workers=4, pin_memory=True)
    for epoch in range(epochs):
        dataset.set_epoch(epoch)                          # a new shuffle, like DistributedSampler
        for batch in loader:                              # batch["input_ids"]: LongTensor[8, 2048]
            ...

Packed items are ``{"input_ids", "position_ids", "loss_mask"}``, all of length ``seq_len``, so
the default collate stacks them. Documents follow each other (each ends with its EOS token);
``position_ids`` restart at 0 on each document's first token, and a document cut across two
sequences continues its count in the next, so document boundaries stay visible (e.g. for
attention limited to each document). ``loss_mask`` (bool) is the shards' loss mask, or all
True when they have none; padding (see ``drop_last``) is token 0, position 0, loss mask False.
Unpacked items (``seq_len=None``) are
``{"id", "input_ids", "loss_mask"}`` of the document's own length: use ``batch_size=None`` or a
padding ``collate_fn``.

**Exactly once.** An epoch's documents are cut into chunks of at most ``chunk_docs`` consecutive
rows of one shard (planned from the manifest's document counts, without opening a file). The
chunk list is shuffled with a generator seeded by ``(seed, epoch)`` and dealt round-robin to the
``world_size * num_workers`` readers (reader ``rank * num_workers + worker_id``); each reader
shuffles the rows inside its chunks with a generator seeded by ``(seed, epoch, chunk)``. As
every rank computes the same chunk list, each document of the manifest is read by exactly one
reader of exactly one rank per epoch: no document is repeated or skipped. In packed mode a
reader's last partial sequence is dropped (``drop_last=True``, the default) or padded, so up to
``seq_len - 1`` tokens per reader and epoch may be left out of training. Readers receive whole
chunks, so ranks see different numbers of items per epoch: train for a fixed number of steps
(or use :class:`MixedDataset`, which never ends) rather than until one rank's loader runs out.

**Resume.** ``state_dict()`` is a small JSON-serializable dict (epoch, position in the reader's
chunk list, row and token position in the current chunk, and the manifest and settings it
belongs to); ``load_state_dict()`` makes the next ``iter()`` continue with exactly the item that
would have come next. A packed sequence never needs tokens saved: when one is handed out, the
next begins inside the current chunk, at a (row, token offset) the state records. With worker
processes, use ``torchdata.stateful_dataloader.StatefulDataLoader``:
it calls these methods inside each worker and keeps the states of all of them::

    loader = StatefulDataLoader(dataset, batch_size=8, num_workers=4)
    ...
    checkpoint["data"] = loader.state_dict()
    # later, with a dataset built with the same manifest and settings:
    loader.load_state_dict(checkpoint["data"])

A state from another manifest, other settings or another reader layout is refused with a
``ValueError`` that names the difference.

**Memory.** A reader keeps its current shard memory-mapped (the page cache holds what was
read) and a few arrays per document of its current chunk; packed sequences are gathered from
the map about 64k tokens at a time, and each item's tensors are its own (views of that group,
never of the map).

**Verification.** At construction the manifest is read and the shards are checked against it
(``verify="checksum"``: sizes and SHA-256, reading every byte once; ``"size"``: sizes and the
list of files only; ``"none"``: nothing). On a large corpus, let one process per node verify
checksums and the others use ``"size"``. DataLoader workers receive the constructed dataset and
do not verify again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import IterableDataset, get_worker_info

from pipelines.shard_format import (
    Manifest,
    ShardFormatError,
    ShardInfo,
    manifest_path,
    open_shard,
    read_manifest,
    verify_shards,
)

__all__ = ["ShardDataset", "MixedDataset", "plan_chunks", "ShardFormatError"]

VERIFY_MODES = ("checksum", "size", "none")
SHARD_STATE_FORMAT = "corpusforge.ShardDataset/1"
MIXED_STATE_FORMAT = "corpusforge.MixedDataset/1"
PAD_TOKEN_ID = 0
_PACK_GROUP_TOKENS = 1 << 16  # packed sequences are gathered into tensors this many tokens at a time

# Seed-sequence tags keep the chunk-order and row-order generators independent even when the
# numbers that follow them coincide (SeedSequence([s, e]) and ([s, e, 0]) may collide otherwise).
_CHUNK_ORDER_TAG = 0
_ROW_ORDER_TAG = 1


def plan_chunks(doc_counts: Sequence[int], chunk_docs: int) -> np.ndarray:
    """The unshuffled chunk list as an ``int64[n_chunks, 3]`` array of (shard, start, stop):
    each shard's rows cut into runs of at most ``chunk_docs``, shards in manifest order."""
    rows = [
        (shard, start, min(start + chunk_docs, docs))
        for shard, docs in enumerate(doc_counts)
        for start in range(0, docs, chunk_docs)
    ]
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def _chunk_order(num_chunks: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    if not shuffle:
        return np.arange(num_chunks)
    return np.random.default_rng([seed, epoch, _CHUNK_ORDER_TAG]).permutation(num_chunks)


def _row_order(num_rows: int, seed: int, epoch: int, chunk: int, shuffle: bool) -> np.ndarray | None:
    """Rows of a chunk in reading order; None for "as stored" (no permutation to build or apply)."""
    if not shuffle:
        return None
    return np.random.default_rng([seed, epoch, _ROW_ORDER_TAG, chunk]).permutation(num_rows)


def _distributed_defaults(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is None or world_size is None:
        import torch.distributed as dist

        initialized = dist.is_available() and dist.is_initialized()
        if rank is None:
            rank = dist.get_rank() if initialized else 0
        if world_size is None:
            world_size = dist.get_world_size() if initialized else 1
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in range for world_size {world_size}")
    return rank, world_size


def _list_column(table: pa.Table, name: str, start: int, stop: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and values of rows [start, stop) of a list column, as numpy arrays.

    Zero copy when the rows lie in one record batch (the usual case: the writer's batches and
    the default chunk size are both 1024 rows); rows spanning batches are concatenated, which
    copies that one chunk. The offsets index into ``values`` directly (a sliced Arrow array
    keeps offsets into its parent's values), so neither needs shifting.
    """
    pieces = [piece for piece in table.column(name).slice(start, stop - start).chunks if len(piece)]
    array = pieces[0] if len(pieces) == 1 else pa.concat_arrays(pieces)
    if array.null_count or array.values.null_count:
        raise ShardFormatError(f"{path}: null values in column {name!r} (rows {start}..{stop})")
    return array.offsets.to_numpy(), array.values.to_numpy(zero_copy_only=True)


@dataclass
class _ChunkRows:
    """One chunk's rows as numpy views of the memory-mapped shard, and their reading order."""

    offsets: np.ndarray  # int32[rows + 1], indexes ``values``
    values: np.ndarray  # the tokens, in the shard's dtype
    mask_offsets: np.ndarray | None  # the same for loss_mask; None when the shard has none
    mask_values: np.ndarray | None
    order: np.ndarray | None  # row permutation; None for stored order
    ids: list[str] | None  # document ids in stored order (unpacked mode only)

    @property
    def num_rows(self) -> int:
        return len(self.offsets) - 1

    def document(self, position: int) -> dict[str, Any]:
        """The ``position``-th document in reading order, as fresh tensors (copies: nothing
        handed out points into the memory map)."""
        row = position if self.order is None else int(self.order[position])
        start, stop = int(self.offsets[row]), int(self.offsets[row + 1])
        tokens = torch.from_numpy(self.values[start:stop].astype(np.int64))
        if self.mask_values is None:
            mask = torch.from_numpy(np.ones(stop - start, dtype=np.bool_))
        else:
            mask_start = int(self.mask_offsets[row])
            mask = torch.from_numpy(self.mask_values[mask_start : mask_start + stop - start].astype(np.bool_))
        return {"id": self.ids[row], "input_ids": tokens, "loss_mask": mask}

    def stream(self) -> _PackedStream:
        """The rows as one token stream in reading order (see :class:`_PackedStream`)."""
        lengths = np.diff(self.offsets).astype(np.int64)
        token_start = self.offsets[:-1].astype(np.int64)
        if self.order is not None:
            lengths, token_start = lengths[self.order], token_start[self.order]
        row_start = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=row_start[1:])
        mask_shift = 0 if self.mask_offsets is None else int(self.mask_offsets[0]) - int(self.offsets[0])
        return _PackedStream(self.values, token_start, self.mask_values, mask_shift, row_start)


@dataclass
class _PackedStream:
    """A chunk's documents concatenated in reading order, described per row; the tokens of a
    range are gathered from the memory-mapped shard only when asked for.

    Ranges are asked for in groups of ~64k tokens: big enough that numpy's per-call overhead
    vanishes, small enough that the int64 temporaries stay in the CPU cache (gathering a whole
    chunk at once measured about a third slower).
    """

    values: np.ndarray  # the shard's token values (memory-mapped)
    token_start: np.ndarray  # int64[rows]: where each row (reading order) starts in ``values``
    mask_values: np.ndarray | None  # the shard's loss_mask values, None when it has none
    mask_shift: int  # loss_mask offsets minus input_ids offsets (equal lengths make it constant)
    row_start: np.ndarray  # int64[rows + 1]: where each row starts in the stream

    @property
    def length(self) -> int:
        return int(self.row_start[-1])

    def columns(self, begin: int, end: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens (int64), positions in their documents (int64) and loss mask (bool) of the
        stream range [begin, end), as new tensors (nothing points into the memory map)."""
        if end <= begin:
            empty = np.empty(0, dtype=np.int64)
            return torch.from_numpy(empty), torch.from_numpy(empty.copy()), torch.zeros(0, dtype=torch.bool)
        row_start = self.row_start
        # rows first..last-1 overlap [begin, end); each contributes count tokens to it
        first = int(np.searchsorted(row_start, begin, side="right")) - 1
        last = int(np.searchsorted(row_start, end, side="left"))
        counts = np.diff(np.clip(row_start[first : last + 1], begin, end))
        positions = np.arange(begin, end, dtype=np.int64)
        positions -= np.repeat(row_start[first:last], counts)  # minus each token's document start
        # int64 (intp) indexes: numpy would first convert narrower ones
        gather = np.repeat(self.token_start[first:last], counts)
        gather += positions
        tokens = self.values.take(gather).astype(np.int64)
        if self.mask_values is None:
            mask = np.ones(end - begin, dtype=np.bool_)
        else:
            if self.mask_shift:  # 0 for shards read from IPC streams: both offsets start at 0
                gather += self.mask_shift
            mask = self.mask_values.take(gather).astype(np.bool_)
        return torch.from_numpy(tokens), torch.from_numpy(positions), torch.from_numpy(mask)


@dataclass
class _Progress:
    """Where a reader is; updated before each item is yielded so that it describes the state
    *after* that item. ``token_position`` and ``row_start`` are used in packed mode, where the
    next sequence may begin inside a document; the row and offset are derived from them only
    when a state is asked for."""

    epoch: int
    reader: int
    readers: int
    chunk_cursor: int = 0  # index into this reader's chunk list
    row_cursor: int = 0  # unpacked: rows of the current chunk already yielded
    token_position: int = 0  # packed: stream offset of the next sequence's first token
    row_start: np.ndarray | None = None

    def row_and_offset(self) -> tuple[int, int]:
        if self.row_start is None:
            return self.row_cursor, 0
        row = int(np.searchsorted(self.row_start, self.token_position, side="right")) - 1
        return row, self.token_position - int(self.row_start[row])


class ShardDataset(IterableDataset):
    """Documents of a shard manifest, each read exactly once per epoch across ranks and workers.

    See the module documentation for the item layout, DDP use and resuming. An instance
    tracks one iteration at a time (a new ``iter()`` takes over its progress); DataLoader
    workers each iterate their own copy.

    Args:
        location: a manifest file or the directory holding ``manifest.json``.
        seq_len: pack documents into sequences of exactly this many tokens; None yields one
            item per document.
        shuffle: shuffle the chunk order and the rows inside each chunk, per epoch.
        seed: shuffle seed; must be the same on every rank. A non-negative integer.
        chunk_docs: documents per unit of work. Smaller gives more even readers and finer
            shuffling, larger gives fewer shard switches.
        rank, world_size: this process's place in data-parallel training; by default read from
            ``torch.distributed`` when it is initialized, else 0 and 1.
        verify: ``"checksum"``, ``"size"`` or ``"none"`` (see the module documentation).
        drop_last: in packed mode, drop each reader's final partial sequence instead of padding
            it with token 0, loss mask 0 and position 0.

    Raises:
        ShardFormatError: the manifest or a shard is missing, unreadable, unlisted or corrupt;
            the message names the file.
    """

    def __init__(
        self,
        location: str | os.PathLike[str],
        *,
        seq_len: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        chunk_docs: int = 1024,
        rank: int | None = None,
        world_size: int | None = None,
        verify: str = "checksum",
        drop_last: bool = True,
    ) -> None:
        super().__init__()
        if seq_len is not None and seq_len < 1:
            raise ValueError(f"seq_len must be positive or None, got {seq_len}")
        if chunk_docs < 1:
            raise ValueError(f"chunk_docs must be positive, got {chunk_docs}")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {', '.join(VERIFY_MODES)}, got {verify!r}")
        self.manifest_file = manifest_path(location)
        self.root = self.manifest_file.parent
        self.manifest: Manifest = read_manifest(self.manifest_file)
        if verify != "none":
            verify_shards(self.manifest_file, self.manifest, checksums=verify == "checksum")
        self.seq_len = seq_len
        self.shuffle = shuffle
        self.seed = int(seed)
        self.chunk_docs = int(chunk_docs)
        self.rank, self.world_size = _distributed_defaults(rank, world_size)
        self.drop_last = drop_last
        self.epoch = 0
        self.chunks = plan_chunks([shard.docs for shard in self.manifest.shards], self.chunk_docs)
        self._manifest_digest = _manifest_digest(self.manifest)
        self._progress: _Progress | None = None
        self._resume_state: dict[str, Any] | None = None

    # ----------------------------------------------------------------- public helpers

    @property
    def num_documents(self) -> int:
        return self.manifest.totals["docs"]

    @property
    def num_tokens(self) -> int:
        return self.manifest.totals["tokens"]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffle the next ``iter()`` uses, from its start (call it on the
        dataset given to the DataLoader before each epoch, as with DistributedSampler)."""
        self.epoch = int(epoch)
        self._progress = None
        self._resume_state = None

    def reader_chunks(self, reader: int, readers: int, epoch: int | None = None) -> np.ndarray:
        """Indexes into :attr:`chunks` (rows of shard, start, stop) of the chunks that reader
        ``reader`` of ``readers`` reads in an epoch, in its reading order."""
        epoch = self.epoch if epoch is None else epoch
        order = _chunk_order(len(self.chunks), self.seed, epoch, self.shuffle)
        return order[reader::readers]

    # ----------------------------------------------------------------- state

    def _settings(self) -> dict[str, Any]:
        return {
            "seq_len": self.seq_len,
            "shuffle": self.shuffle,
            "seed": self.seed,
            "chunk_docs": self.chunk_docs,
            "drop_last": self.drop_last,
            "rank": self.rank,
            "world_size": self.world_size,
        }

    def state_dict(self) -> dict[str, Any]:
        """This reader's position, after the last item it yielded (or where the next ``iter()``
        starts, when it has not started). Call it where the iteration runs: in the main process
        with ``num_workers=0``; with worker processes, StatefulDataLoader calls it in each worker."""
        if self._resume_state is not None:
            return dict(self._resume_state)
        progress = self._progress or self._fresh_progress()
        row, offset = progress.row_and_offset()
        return {
            "format": SHARD_STATE_FORMAT,
            "manifest": self._manifest_digest,
            "settings": self._settings(),
            "reader": progress.reader,
            "readers": progress.readers,
            "epoch": progress.epoch,
            "chunk_cursor": progress.chunk_cursor,
            "row_cursor": row,
            "token_offset": offset,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next ``iter()`` continue from ``state`` (from :meth:`state_dict`).

        Raises ValueError when the state belongs to another manifest or other settings; a state
        of another reader (another rank, worker id or worker count) is refused when iterated.
        """
        if not isinstance(state, dict) or state.get("format") != SHARD_STATE_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"not a ShardDataset state (format {found!r}, expected {SHARD_STATE_FORMAT!r})")
        if state.get("manifest") != self._manifest_digest:
            raise ValueError(
                f"state is from another manifest (digest {state.get('manifest')}, "
                f"{self.manifest_file} has {self._manifest_digest})"
            )
        saved = state.get("settings", {})
        differences = [
            f"{name}={saved.get(name)!r} in the state, {value!r} here"
            for name, value in self._settings().items()
            if saved.get(name) != value
        ]
        if differences:
            raise ValueError("state was saved with other settings: " + "; ".join(differences))
        for key in ("epoch", "chunk_cursor", "row_cursor", "token_offset", "reader", "readers"):
            if not isinstance(state.get(key), int) or state[key] < 0:
                raise ValueError(f"state field {key!r} is {state.get(key)!r}, expected a non-negative integer")
        self.epoch = state["epoch"]
        self._progress = None
        self._resume_state = dict(state)

    # ----------------------------------------------------------------- iteration

    def _current_reader(self) -> tuple[int, int]:
        worker = get_worker_info()
        if worker is None:
            return self.rank, self.world_size
        return self.rank * worker.num_workers + worker.id, self.world_size * worker.num_workers

    def _fresh_progress(self) -> _Progress:
        reader, readers = self._current_reader()
        return _Progress(epoch=self.epoch, reader=reader, readers=readers)

    def _start_progress(self) -> tuple[_Progress, int]:
        """The progress the next iteration starts from, and the token offset into its first row."""
        progress = self._fresh_progress()
        state, self._resume_state = self._resume_state, None
        if state is None:
            return progress, 0
        if (state["reader"], state["readers"]) != (progress.reader, progress.readers):
            raise ValueError(
                f"state belongs to reader {state['reader']} of {state['readers']}, but this is reader "
                f"{progress.reader} of {progress.readers} (rank * num_workers + worker id): resume with "
                "the same world size and num_workers, and load each worker's own state (StatefulDataLoader does)"
            )
        progress.chunk_cursor = state["chunk_cursor"]
        progress.row_cursor = state["row_cursor"]
        return progress, state["token_offset"]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        # Set up eagerly (not in the generator) so that state_dict() right after iter() already
        # describes this iteration, as StatefulDataLoader expects.
        progress, token_offset = self._start_progress()
        self._progress = progress
        chunk_ids = self.reader_chunks(progress.reader, progress.readers, progress.epoch)
        if self.seq_len is None:
            return self._iter_documents(progress, chunk_ids)
        return self._iter_packed(progress, chunk_ids, token_offset)

    def _read_chunk(self, shards: _OpenShard, chunk_id: int, epoch: int, with_ids: bool) -> _ChunkRows:
        shard_index, start, stop = (int(v) for v in self.chunks[chunk_id])
        table, path = shards.get(shard_index)
        offsets, values = _list_column(table, "input_ids", start, stop, path)
        mask_offsets = mask_values = None
        if "loss_mask" in table.column_names:
            mask_offsets, mask_values = _list_column(table, "loss_mask", start, stop, path)
            # Equal lengths row by row, so each row's mask starts a constant shift from its tokens.
            if not np.array_equal(np.diff(mask_offsets), np.diff(offsets)):
                raise ShardFormatError(f"{path}: loss_mask and input_ids lengths differ in rows {start}..{stop}")
        ids = table.column("id").slice(start, stop - start).to_pylist() if with_ids else None
        order = _row_order(stop - start, self.seed, epoch, chunk_id, self.shuffle)
        return _ChunkRows(offsets, values, mask_offsets, mask_values, order, ids)

    def _iter_documents(self, progress: _Progress, chunk_ids: np.ndarray) -> Iterator[dict[str, Any]]:
        shards = _OpenShard(self)
        first_row = progress.row_cursor
        for cursor in range(progress.chunk_cursor, len(chunk_ids)):
            chunk = self._read_chunk(shards, int(chunk_ids[cursor]), progress.epoch, with_ids=True)
            if first_row > chunk.num_rows:
                raise ValueError(f"state row {first_row} is beyond chunk {cursor} of this reader")
            progress.chunk_cursor, progress.row_cursor = cursor, first_row
            for position in range(first_row, chunk.num_rows):
                item = chunk.document(position)
                progress.row_cursor = position + 1
                yield item
            first_row = 0
        progress.chunk_cursor, progress.row_cursor = len(chunk_ids), 0

    def _iter_packed(self, progress: _Progress, chunk_ids: np.ndarray, token_offset: int) -> Iterator[dict[str, Any]]:
        seq_len = self.seq_len
        assert seq_len is not None
        # Full sequences are made a group at a time and handed out as views (unbind): one
        # gather per group instead of three small ones per sequence, whose fixed costs would
        # exceed the copying itself.
        group = max(1, _PACK_GROUP_TOKENS // seq_len)
        shards = _OpenShard(self)
        # Tokens of earlier chunks waiting for the next sequence (fewer than seq_len). When a
        # sequence is yielded this is always empty: the next sequence starts inside the current
        # chunk, so (chunk, token position) is the whole state and no tokens need saving.
        pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        pending_tokens = 0
        first_row = progress.row_cursor
        for cursor in range(progress.chunk_cursor, len(chunk_ids)):
            stream = self._read_chunk(shards, int(chunk_ids[cursor]), progress.epoch, with_ids=False).stream()
            if first_row >= len(stream.row_start):  # row == rows is valid: the chunk's end
                raise ValueError(f"state row {first_row} is beyond chunk {cursor} of this reader")
            begin = int(stream.row_start[first_row]) + token_offset
            if begin > stream.length:
                raise ValueError(f"state token offset {token_offset} is beyond chunk {cursor} of this reader")
            first_row, token_offset = 0, 0
            progress.chunk_cursor, progress.row_start, progress.token_position = cursor, stream.row_start, begin
            if pending_tokens:
                end = min(begin + seq_len - pending_tokens, stream.length)
                pending.append(stream.columns(begin, end))
                pending_tokens += end - begin
                begin = end
                if pending_tokens < seq_len:
                    continue  # this chunk is used up; keep collecting from the next
                item = _packed_item(*(torch.cat(parts) for parts in zip(*pending)))
                pending, pending_tokens = [], 0
                progress.token_position = begin
                yield item
            while (count := min((stream.length - begin) // seq_len, group)) > 0:
                end = begin + count * seq_len
                columns = [column.view(count, seq_len).unbind(0) for column in stream.columns(begin, end)]
                for tokens, positions, mask in zip(*columns):
                    begin += seq_len
                    progress.token_position = begin
                    yield {"input_ids": tokens, "position_ids": positions, "loss_mask": mask}
            if begin < stream.length:
                pending.append(stream.columns(begin, stream.length))
                pending_tokens += stream.length - begin
        progress.chunk_cursor, progress.row_start, progress.token_position = len(chunk_ids), None, 0
        progress.row_cursor = 0
        if pending_tokens and not self.drop_last:
            padding = seq_len - pending_tokens
            pending.append(
                (
                    torch.full((padding,), PAD_TOKEN_ID, dtype=torch.int64),
                    torch.zeros(padding, dtype=torch.int64),
                    torch.zeros(padding, dtype=torch.bool),
                )
            )
            yield _packed_item(*(torch.cat(parts) for parts in zip(*pending)))


class _OpenShard:
    """The one shard a reader has open (memory-mapped): asking for another closes it first."""

    def __init__(self, dataset: ShardDataset) -> None:
        self.dataset = dataset
        self.index: int | None = None
        self.table: pa.Table | None = None

    def get(self, shard_index: int) -> tuple[pa.Table, Path]:
        info: ShardInfo = self.dataset.manifest.shards[shard_index]
        path = self.dataset.root / info.path
        if shard_index != self.index:
            self.index, self.table = None, None  # unmap the previous shard before mapping the next
            table = open_shard(path, info)
            _check_token_type(table, path, self.dataset.manifest.token_dtype)
            self.index, self.table = shard_index, table
        return self.table, path


def _packed_item(tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"input_ids": tokens, "position_ids": positions, "loss_mask": mask}


def _check_token_type(table: pa.Table, path: Path, token_dtype: str) -> None:
    found = table.schema.field("input_ids").type
    if not pa.types.is_list(found) or str(found.value_type) != token_dtype:
        raise ShardFormatError(f"{path}: input_ids is {found}, the manifest says list<{token_dtype}>")


def _manifest_digest(manifest: Manifest) -> str:
    """Identifies a manifest's content (not its location: a moved corpus still resumes)."""
    content = {
        "token_dtype": manifest.token_dtype,
        "shards": [(s.path, s.docs, s.tokens, s.sha256) for s in manifest.shards],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


class MixedDataset(IterableDataset):
    """An endless stream that draws each item from one of several :class:`ShardDataset` sources,
    chosen at random with the given weights.

    The choices come from a numpy Generator seeded with ``seed``, so every reader (rank and
    worker) makes the same sequence of choices while reading its own split of each source. A
    source that runs out moves to its next epoch (a new shuffle) and goes on, so the mix never
    ends: stop training by steps. Build all sources with the same ``seq_len`` (their items must
    collate together); mixing packed and unpacked or different lengths is refused.

    ``state_dict``/``load_state_dict`` cover the generator and every source, so a restored mix
    continues exactly, as a ShardDataset does.
    """

    def __init__(self, sources: Sequence[tuple[ShardDataset, float]], seed: int = 0) -> None:
        super().__init__()
        if not sources:
            raise ValueError("MixedDataset needs at least one source")
        weights = np.array([float(weight) for _, weight in sources])
        if not np.all(np.isfinite(weights)) or np.any(weights <= 0):
            raise ValueError(f"weights must be positive and finite, got {weights.tolist()}")
        seq_lens = {source.seq_len for source, _ in sources}
        if len(seq_lens) > 1:
            raise ValueError(f"sources must share one seq_len, got {sorted(seq_lens, key=str)}")
        self.sources = [source for source, _ in sources]
        self.weights = (weights / weights.sum()).tolist()
        self.seed = int(seed)
        self._cumulative = np.cumsum(self.weights)
        self._rng: np.random.Generator | None = None
        self._draws = 0
        self._resume: dict[str, Any] | None = None

    def _settings(self) -> dict[str, Any]:
        return {"seed": self.seed, "weights": self.weights, "sources": len(self.sources)}

    def state_dict(self) -> dict[str, Any]:
        if self._resume is not None:
            return dict(self._resume)
        rng = self._rng if self._rng is not None else np.random.default_rng(self.seed)
        return {
            "format": MIXED_STATE_FORMAT,
            "settings": self._settings(),
            "draws": self._draws,
            "rng": rng.bit_generator.state,
            "sources": [source.state_dict() for source in self.sources],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("format") != MIXED_STATE_FORMAT:
            raise ValueError("not a MixedDataset state")
        saved = state.get("settings", {})
        here = self._settings()
        if saved.get("seed") != here["seed"] or saved.get("sources") != here["sources"]:
            raise ValueError(f"state was saved with seed/sources {saved}, this mix has {here}")
        if not np.allclose(saved.get("weights", []), here["weights"]):
            raise ValueError(f"state was saved with weights {saved.get('weights')}, this mix has {here['weights']}")
        for source, source_state in zip(self.sources, state["sources"]):
            source.load_state_dict(source_state)
        self._rng = None
        self._resume = dict(state)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rng = np.random.default_rng(self.seed)
        self._draws = 0
        state, self._resume = self._resume, None
        if state is not None:
            rng.bit_generator.state = state["rng"]
            self._draws = state["draws"]
        self._rng = rng
        iterators = [iter(source) for source in self.sources]
        return self._generate(rng, iterators)

    def _generate(
        self, rng: np.random.Generator, iterators: list[Iterator[dict[str, Any]]]
    ) -> Iterator[dict[str, Any]]:
        last = len(self.sources) - 1
        while True:
            choice = min(int(np.searchsorted(self._cumulative, rng.random(), side="right")), last)
            item = self._next_item(choice, iterators)
            self._draws += 1
            yield item

    def _next_item(self, choice: int, iterators: list[Iterator[dict[str, Any]]]) -> dict[str, Any]:
        for attempt in range(2):
            try:
                return next(iterators[choice])
            except StopIteration:
                if attempt:
                    break
                source = self.sources[choice]
                source.set_epoch(source.epoch + 1)
                iterators[choice] = iter(source)
        source = self.sources[choice]
        reader, readers = source._current_reader()
        raise ValueError(
            f"source {choice} ({source.manifest_file}) yields nothing for reader {reader} of {readers}: "
            "it has fewer chunks than readers (lower chunk_docs) or, packed, less than seq_len tokens per reader"
        )
