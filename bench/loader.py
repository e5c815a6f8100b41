"""Benchmark the trainer-facing shard loader against plain pyarrow reading the same shards.

Usage::

    # a self-contained synthetic manifest: 4,000 random-length documents (~2M tokens)
    python -m bench.loader --make 4000 --out /tmp/corpusforge-bench/tokens
    python -m bench.loader --manifest /tmp/corpusforge-bench/tokens --seq-len 2048 --repeat 3

What is timed, in this one process: one untimed warm-up pass (which also fills the page
cache), then ``--repeat`` timed runs, each of as many passes as last ``--min-seconds``; the
median time per pass gives tokens/s:

- **ShardDataset**: ``ShardDataset(manifest, seq_len=..., shuffle=True)`` iterated directly, as
  a DataLoader with ``num_workers=0`` would (a new epoch, hence a new shuffle, per pass):
  packing into sequences, int64 token tensors, position ids and loss masks. Tokens counted are
  the tokens of the yielded sequences. Construction (manifest + checksums) is timed apart: it
  is paid once per run, not per epoch.
- **pyarrow per document**: ``pyarrow.ipc.open_stream`` on each memory-mapped shard, then every
  document's ``input_ids`` as a numpy array (``scalar.values.to_numpy()``), summing lengths:
  what a plain-pyarrow reader that hands out documents one by one does.
- **pyarrow numpy slices**: the same, but each record batch's offsets and values converted to
  numpy once and each document taken as a slice of them: the cheapest possible per-document
  loop, a bound rather than a realistic reader (it neither shuffles nor builds tensors).

The ratio is ShardDataset's tokens/s over each baseline's. One markdown table row is printed,
with the machine (CPU, cores, RAM) and library versions; nothing is written to RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import torch

from pipelines.shard_format import Manifest, ShardWriter, iter_shard_paths, read_manifest, token_type, write_manifest
from pipelines.shards import ShardDataset


def make_manifest(
    out: Path, docs: int, *, mean_len: int, docs_per_shard: int, vocab_size: int, loss_mask: bool, seed: int
) -> Manifest:
    """Write ``docs`` random documents (log-normal lengths around ``mean_len``, 1 to 16 * mean_len
    tokens) into shards of ``docs_per_shard`` with ShardWriter, then the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in list(out.glob("*.arrow")) + list(out.glob("manifest.json")):
        stale.unlink()
    rng = np.random.default_rng(seed)
    sigma = 0.8
    lengths = rng.lognormal(np.log(mean_len) - sigma**2 / 2, sigma, size=docs).astype(np.int64)
    lengths = np.clip(lengths, 1, 16 * mean_len)
    dtype = token_type(vocab_size)
    shards = []
    for shard_number, first in enumerate(range(0, docs, docs_per_shard)):
        writer = ShardWriter(out / f"shard-{shard_number:05d}.arrow", dtype, loss_mask)
        for doc in range(first, min(first + docs_per_shard, docs)):
            tokens = rng.integers(0, vocab_size, size=int(lengths[doc]), dtype=np.uint32)
            mask = (np.arange(len(tokens)) >= len(tokens) // 3).astype(np.uint8) if loss_mask else None
            writer.add(f"doc-{doc}", tokens, mask)
        shards.append(writer.close())
    manifest = Manifest(
        tokenizer={"name": "synthetic", "vocab_size": vocab_size},
        token_dtype=str(dtype),
        has_loss_mask=loss_mask,
        shards=shards,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    write_manifest(out, manifest)
    return manifest


def read_shard_dataset(dataset: ShardDataset, epoch: int) -> int:
    dataset.set_epoch(epoch)
    return sum(item["input_ids"].numel() for item in dataset)


def read_pyarrow_per_document(paths: list[Path]) -> int:
    tokens = 0
    for path in paths:
        with pa.memory_map(str(path)) as source:
            for batch in pa.ipc.open_stream(source):
                for document in batch.column("input_ids"):
                    tokens += len(document.values.to_numpy())
    return tokens


def read_pyarrow_numpy_slices(paths: list[Path]) -> int:
    tokens = 0
    for path in paths:
        with pa.memory_map(str(path)) as source:
            for batch in pa.ipc.open_stream(source):
                column = batch.column("input_ids")
                offsets = column.offsets.to_numpy()
                values = column.values.to_numpy()
                for start, stop in zip(offsets[:-1].tolist(), offsets[1:].tolist()):
                    tokens += len(values[start:stop])
    return tokens


def timed(run: Callable[[int], int], repeat: int, min_seconds: float) -> tuple[float, int]:
    """Median seconds per pass and the tokens one pass reads. One untimed warm-up pass, then
    ``repeat`` timed runs of enough passes to last ``min_seconds`` (a 2M-token pass takes
    milliseconds: a single one would mostly time the clock and the allocator's mood)."""
    start = time.perf_counter()
    tokens = run(0)
    passes = max(1, math.ceil(min_seconds / max(time.perf_counter() - start, 1e-6)))
    per_pass = []
    for attempt in range(repeat):
        start = time.perf_counter()
        for number in range(passes):
            tokens = run(1 + attempt * passes + number)
        per_pass.append((time.perf_counter() - start) / passes)
    return statistics.median(per_pass), tokens


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ram_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {cores} cores, {ram_gib:.0f} GiB RAM"


def bench(manifest_dir: Path, seq_len: int, repeat: int, min_seconds: float = 1.0) -> None:
    manifest = read_manifest(manifest_dir)
    paths = [path for path, _ in iter_shard_paths(manifest_dir, manifest)]

    start = time.perf_counter()
    dataset = ShardDataset(manifest_dir, seq_len=seq_len, shuffle=True, verify="checksum")
    construct_s = time.perf_counter() - start

    loader_s, loader_tokens = timed(lambda epoch: read_shard_dataset(dataset, epoch), repeat, min_seconds)
    per_doc_s, per_doc_tokens = timed(lambda _: read_pyarrow_per_document(paths), repeat, min_seconds)
    slices_s, slices_tokens = timed(lambda _: read_pyarrow_numpy_slices(paths), repeat, min_seconds)

    if not (per_doc_tokens == slices_tokens == manifest.totals["tokens"]):
        print(
            f"warning: baselines read {per_doc_tokens} / {slices_tokens} tokens, "
            f"the manifest says {manifest.totals['tokens']}",
            file=sys.stderr,
        )
    if manifest.totals["tokens"] - loader_tokens >= seq_len:
        print(f"warning: ShardDataset yielded {loader_tokens} of {manifest.totals['tokens']} tokens", file=sys.stderr)

    loader_rate = loader_tokens / loader_s
    per_doc_rate = per_doc_tokens / per_doc_s
    slices_rate = slices_tokens / slices_s
    totals = manifest.totals
    print(f"machine: {machine()}")
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"pyarrow {pa.__version__}, numpy {np.__version__}; "
        f"construction with checksums: {construct_s:.3f} s"
    )
    print()
    print(
        "| date | manifest | seq_len | ShardDataset Mtok/s | pyarrow per-doc Mtok/s | ratio "
        "| pyarrow numpy-slices Mtok/s | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {datetime.now(timezone.utc):%Y-%m-%d} "
        f"| {totals['docs']:,} docs, {totals['tokens'] / 1e6:.2f}M tokens, {totals['shards']} shards, "
        f"{manifest.token_dtype}{', loss mask' if manifest.has_loss_mask else ''} "
        f"| {seq_len} | {loader_rate / 1e6:.1f} | {per_doc_rate / 1e6:.1f} | {loader_rate / per_doc_rate:.2f} "
        f"| {slices_rate / 1e6:.1f} | {loader_rate / slices_rate:.2f} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loader", description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, help="manifest file or directory to benchmark")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--min-seconds", type=float, default=1.0, help="each timed run repeats passes for at least this long"
    )
    parser.add_argument(
        "--make", type=int, metavar="N_DOCS", help="write a synthetic manifest of N_DOCS documents to --out"
    )
    parser.add_argument("--out", type=Path, help="output directory for --make")
    parser.add_argument("--mean-len", type=int, default=512, help="--make: mean document length in tokens")
    parser.add_argument("--docs-per-shard", type=int, default=1000, help="--make: documents per shard")
    parser.add_argument("--vocab-size", type=int, default=50_257, help="--make: above 65,536 writes uint32 shards")
    parser.add_argument("--loss-mask", action="store_true", help="--make: write a loss_mask column")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.make is not None:
        if args.out is None:
            parser.error("--make needs --out")
        manifest = make_manifest(
            args.out, args.make, mean_len=args.mean_len, docs_per_shard=args.docs_per_shard,
            vocab_size=args.vocab_size, loss_mask=args.loss_mask, seed=args.seed,
        )
        totals = manifest.totals
        print(
            f"wrote {args.out}: {totals['docs']:,} docs, {totals['tokens']:,} tokens, "
            f"{totals['shards']} shards, {totals['bytes'] / 1e6:.1f} MB"
        )
        if args.manifest is None:
            return
    if args.manifest is None:
        parser.error("give --manifest (or --make N_DOCS --out DIR)")
    bench(args.manifest, args.seq_len, args.repeat, args.min_seconds)


if __name__ == "__main__":
    main()
