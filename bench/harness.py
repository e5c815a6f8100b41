"""Benchmark a corpusforge Spark stage against a plain-Python baseline doing the same work.

Usage::

    python -m bench.harness ingest --in PATH [--set KEY=VALUE ...] [--repeat N] [--record]

Why a baseline: a Spark stage's absolute speed says little on its own (it depends on the
machine and the input). Running the stage's own per-record code in a plain loop, in the same
process, on the same files, gives the number to compare against: the ratio shows what Spark's
machinery (task scheduling, Arrow hand-off to Python workers, persisting, Parquet writing, the
stats and rejects jobs) costs or gains on this machine.

Each stage is one entry in :data:`BENCHMARKS` (stage name -> baseline function + input size);
the stage itself is found in :mod:`pipelines.registry` and run through the normal contract
(:func:`pipelines.stage.run_stage`), so adding a stage here means writing its baseline only.

What is timed (see :func:`bench_stage`):

1. the baseline: one warm-up run (fills the page cache, imports the readers), then ``--repeat``
   timed runs. It goes first so that its peak RSS does not include an idle Spark JVM;
2. Spark is started (timed, but reported apart: start-up is paid once per build, not per stage);
3. the stage: one warm-up run (JIT, Python worker start-up), then ``--repeat`` timed runs, each
   into a fresh output directory that is removed after (outside the timing).

Rates use the median wall time; peak RSS is the largest seen over the timed runs.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Generic, Iterator, Sequence, TypeVar

import psutil
import pyarrow.parquet as pq
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from flows.recipe import Recipe, default_recipe
from pipelines.errors import CorpusforgeError
from filters.langid import load_model, normalize_for_langid
from pipelines.docstage import guard
from pipelines.ingest import IngestConfig, list_input_files, read_file
from pipelines.langid import LangIdConfig, decide_language
from pipelines.quality import build_chain
from pipelines.registry import stage_class
from pipelines.schema import DROP_REASON, validate_dataset
from pipelines.spark import get_spark
from pipelines.stage import run_stage

T = TypeVar("T")

MB = 1_000_000  # input throughput is in MB/s (10^6 bytes), like disk and network rates
MiB = 1024 * 1024  # memory is in MiB, like `free -m` and `ps`
SAMPLE_INTERVAL_S = 0.1
RESULTS_FILE = Path(__file__).with_name("RESULTS.md")
REPO_ROOT = Path(__file__).resolve().parent.parent

# CPU time is reported per kind of process, which is what tells where a Spark stage spends it;
# OTHER is CPU the machine spent outside this process tree (someone else's job: a noisy result).
DRIVER, JVM, WORKERS, OTHER = "driver", "jvm", "workers", "other"
CPU_KINDS = (DRIVER, JVM, WORKERS, OTHER)
# Warn when other processes took more than this share of the machine's CPU during a timed run.
OTHER_CPU_WARN_SHARE = 0.05
OTHER_CPU_WARN_MIN_S = 0.5  # ...and at least this much (sub-second runs give noisy shares)

RESULTS_HEADER = """\
# Benchmark results

Written by `python -m bench.harness STAGE ... --record` (see `bench/README.md`); each section is
one invocation, newest last. Every stage is compared with a **baseline run in the same process
on the same input**: the stage's own per-record code in a plain Python loop, without Spark.

Columns:

- **wall s (median)**: median wall-clock seconds of the timed runs (after one untimed warm-up
  run); **runs s** lists each timed run. Spark start-up is not included (given apart).
- **docs in**: records read (kept and dropped); stage and baseline must agree.
- **docs/s**: documents in (every record read, kept or dropped) per second of median wall time.
- **input MB/s**: total size of the input files (10^6 bytes) per second of median wall time.
- **peak RSS MiB**: highest resident memory of the benchmark process plus all its child
  processes (the Spark JVM and its Python workers), sampled every 0.1 s, over the timed runs.
  It sums RSS, so pages shared between forked Python workers are counted more than once.
- **CPU s driver / JVM / workers / other**: CPU seconds (user + system), median over the timed
  runs, of the benchmark's own Python process, the Spark JVM, Spark's Python workers, and
  *other*: CPU the whole machine was busy beyond that (other people's processes). A large
  *other* means the machine was shared and the times are pessimistic.
- **vs baseline**: the row's docs/s divided by the baseline's docs/s (above 1: faster than
  the plain loop; below 1: slower).
"""


# --------------------------------------------------------------------------- measuring


def _process_kind(process: psutil.Process, own_pid: int) -> str:
    if process.pid == own_pid:
        return DRIVER
    try:
        name = process.name().lower()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return WORKERS
    return JVM if "java" in name else WORKERS


class ProcessTreeSampler:
    """Samples this process and all its descendants on a background thread.

    Tracks the peak of the summed RSS, and per process the first and last CPU times seen, so
    that CPU spent during the run can be split by kind of process. Spark's JVM is a child of
    the driver and its Python workers are children of the JVM, hence ``recursive=True``.
    A process that starts and exits between two samples is missed; with
    ``spark.python.worker.reuse`` (the corpusforge default) workers live across tasks.
    """

    def __init__(self, interval: float = SAMPLE_INTERVAL_S) -> None:
        self.interval = interval
        self.peak_rss_bytes = 0
        self._root = psutil.Process(os.getpid())
        self._first_cpu: dict[int, float] = {}
        self._last_cpu: dict[int, tuple[str, float]] = {}
        self._baseline_pids: set[int] = set()
        self._machine_start: float = 0.0
        self._machine_busy: float = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        try:
            processes = [self._root, *self._root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        rss = 0
        for process in processes:
            try:
                with process.oneshot():
                    rss += process.memory_info().rss
                    times = process.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue  # exited between listing and reading
            cpu = times.user + times.system
            self._first_cpu.setdefault(process.pid, cpu)
            self._last_cpu[process.pid] = (_process_kind(process, self._root.pid), cpu)
        self.peak_rss_bytes = max(self.peak_rss_bytes, rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    @staticmethod
    def _machine_busy_seconds() -> float:
        """CPU seconds the whole machine has been busy (guest time is already inside user)."""
        times = psutil.cpu_times()
        busy = ("user", "nice", "system", "irq", "softirq")
        return sum(getattr(times, name, 0.0) for name in busy)

    def __enter__(self) -> "ProcessTreeSampler":
        self._machine_start = self._machine_busy_seconds()
        self._sample()
        # Processes alive at the start count from their CPU time then; later ones from zero.
        self._baseline_pids = set(self._first_cpu)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self._machine_busy = self._machine_busy_seconds() - self._machine_start

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used during the sampled span, per kind of process (and by other processes)."""
        totals = {kind: 0.0 for kind in CPU_KINDS}
        for pid, (kind, last) in self._last_cpu.items():
            first = self._first_cpu[pid] if pid in self._baseline_pids else 0.0
            totals[kind] += max(0.0, last - first)
        totals[OTHER] = max(0.0, self._machine_busy - sum(totals.values()))
        return totals


@dataclass(frozen=True)
class Measurement(Generic[T]):
    """One timed call: wall seconds, peak RSS of the process tree, CPU split, and fn's result."""

    name: str
    wall_seconds: float
    peak_rss_bytes: int
    cpu_seconds: dict[str, float]
    value: T


def measure(name: str, fn: Callable[[], T], interval: float = SAMPLE_INTERVAL_S) -> Measurement[T]:
    """Run ``fn`` while a background thread samples the RSS of this process and its children.

    Returns the wall seconds (``time.perf_counter``), the peak summed RSS in bytes, the CPU
    seconds per kind of process, and whatever ``fn`` returned (so callers can check the work).
    """
    with ProcessTreeSampler(interval) as sampler:
        started = time.perf_counter()
        value = fn()
        wall = time.perf_counter() - started
    return Measurement(name, wall, sampler.peak_rss_bytes, sampler.cpu_seconds(), value)


# --------------------------------------------------------------------------- stages and baselines


@dataclass(frozen=True)
class Counts:
    """What one run did; stage and baseline must agree, or the comparison is meaningless."""

    docs_in: int
    docs_out: int
    dropped: dict[str, int] = field(default_factory=dict)


def baseline_ingest(inputs: list[Path], config: BaseModel) -> Counts:
    """The ingest stage's work without Spark: list the files, run every file through its reader.

    ``read_file`` is exactly the generator the stage runs inside ``mapInArrow``, so the
    difference to the stage is Spark's machinery plus what the baseline leaves out on purpose:
    writing the Parquet output, ``_rejects/`` and the stats (the stage's real cost includes them).
    """
    assert isinstance(config, IngestConfig)
    files, _ = list_input_files(inputs, config.formats)
    docs_in = docs_out = 0
    dropped: dict[str, int] = {}
    for file in files:
        for row in read_file(file, config):
            docs_in += 1
            reason = row[DROP_REASON]
            if reason is None:
                docs_out += 1
            else:
                dropped[reason] = dropped.get(reason, 0) + 1
    return Counts(docs_in, docs_out, dict(sorted(dropped.items())))


def baseline_ingest_warc(inputs: list[Path], config: BaseModel) -> Counts:
    """``read_warc`` (the stage's own reader: framing, charset, resiliparse extraction) over
    every WARC file in one loop, without Spark."""
    from pipelines.warc import WarcIngestConfig, list_warc_files, read_warc

    assert isinstance(config, WarcIngestConfig)
    files, _ = list_warc_files(inputs)
    tally = _Tally()
    for file in files:
        for row in read_warc(file, config):
            tally.docs_in += 1
            if row[DROP_REASON] is None:
                tally.docs_out += 1
            else:
                tally.drop(row[DROP_REASON])
    return tally.counts()


def warc_input_size(inputs: list[Path], config: BaseModel) -> tuple[int, int]:
    from pipelines.warc import list_warc_files

    files, _ = list_warc_files(inputs)
    return len(files), sum(f["size"] for f in files)


def ingest_input_size(inputs: list[Path], config: BaseModel) -> tuple[int, int]:
    """Number and total size of the files the stage will read (only the configured formats)."""
    assert isinstance(config, IngestConfig)
    files, _ = list_input_files(inputs, config.formats)
    return len(files), sum(f["size"] for f in files)


def _document_batches(inputs: list[Path], columns: list[str]) -> Iterator[list[dict[str, Any]]]:
    """The documents of the input datasets in batches of 1,000, read with plain pyarrow."""
    for path in inputs:
        for file in validate_dataset(path):
            for batch in pq.ParquetFile(file).iter_batches(columns=columns, batch_size=1000):
                yield batch.to_pylist()


@dataclass
class _Tally:
    docs_in: int = 0
    docs_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def counts(self) -> Counts:
        return Counts(self.docs_in, self.docs_out, dict(sorted(self.dropped.items())))


def _guarded(rows: list[dict[str, Any]], config: BaseModel, tally: _Tally) -> list[dict[str, Any]]:
    """Apply the document-stage guards as the stage does; count what they drop."""
    passed = []
    for row in rows:
        tally.docs_in += 1
        bad = guard(row["text"], config.max_doc_bytes)  # type: ignore[attr-defined]
        if bad:
            tally.drop(bad[0])
        else:
            passed.append(row)
    return passed


def baseline_langid(inputs: list[Path], config: BaseModel) -> Counts:
    """A plain fastText predict loop in one process: batches of 1,000 normalized texts."""
    assert isinstance(config, LangIdConfig)
    model = load_model(config.model_path)
    tally = _Tally()
    for rows in _document_batches(inputs, ["text"]):
        passed = _guarded(rows, config, tally)
        labels, scores = model.predict([normalize_for_langid(r["text"], config.max_chars) for r in passed], k=1)
        for label, score in zip(labels, scores):
            lang = label[0].removeprefix("__label__") if len(label) else None
            verdict = decide_language(lang, min(float(score[0]), 1.0) if len(score) else 0.0, config.keep)
            if verdict:
                tally.drop(f"langid:{verdict[0]}")
            else:
                tally.docs_out += 1
    return tally.counts()


def baseline_quality(inputs: list[Path], config: BaseModel) -> Counts:
    """The same filter chain called document by document in one process."""
    settings = config.model_dump()
    chain = build_chain(settings)
    tally = _Tally()
    for rows in _document_batches(inputs, ["text", "lang"]):
        for row in _guarded(rows, config, tally):
            verdict = chain(row["text"], row["lang"], annotate_all=settings["annotate_all"])
            if verdict.reason:
                tally.drop(verdict.reason)
            else:
                tally.docs_out += 1
    return tally.counts()


def baseline_tokenize(inputs: list[Path], config: BaseModel) -> Counts:
    """The tokenizer's own batch encode (Rust, all cores) over batches of 1,000 texts in one process.

    It leaves out what the stage adds on purpose: EOS, writing the shards and their checksums.
    """
    from pipelines.tokenize import TokenizeConfig
    from pipelines.tokenizer import fast_tokenizer, resolve_tokenizer

    assert isinstance(config, TokenizeConfig)
    tokenizer = fast_tokenizer(resolve_tokenizer(config.tokenizer, config.eos_token).directory)
    tally = _Tally()
    for rows in _document_batches(inputs, ["text"]):
        passed = _guarded(rows, config, tally)
        tokenizer.encode_batch([row["text"] for row in passed], add_special_tokens=False)
        tally.docs_out += len(passed)
    return tally.counts()


def baseline_dedup_minhash(inputs: list[Path], config: BaseModel) -> Counts:
    """datasketch's MinHash + MinHashLSH in one process (its own default bands/rows, no verification),
    on the same shingles; clusters by union-find, one document kept per cluster.

    A different algorithm from the stage (which verifies candidates), so the documents kept
    differ a little; the comparison is of speed and memory, quality is scored by bench/dedup_eval.
    """
    from bench.dedup_eval import datasketch_baseline
    from filters.minhash import MinHashConfig, shingles

    settings = MinHashConfig(**{k: v for k, v in config.model_dump().items() if k in MinHashConfig.model_fields})
    docs = [
        {"id": row["id"], "text": row["text"]}
        for rows in _document_batches(inputs, ["id", "text", "lang"])
        for row in rows
    ]
    result = datasketch_baseline(
        docs, lambda text: shingles(text, None, settings), settings.threshold, settings.num_perm, settings.seed
    )
    removed = len(docs) - len(result["kept"])
    return Counts(len(docs), len(docs) - removed, {"dedup_minhash:near_duplicate": removed} if removed else {})


def documents_input_size(inputs: list[Path], config: BaseModel) -> tuple[int, int]:
    """Number and total size of the Parquet files of the input document datasets."""
    files = [f for path in inputs for f in validate_dataset(path)]
    return len(files), sum(f.stat().st_size for f in files)


@dataclass(frozen=True)
class StageBenchmark:
    """How to benchmark one stage: its baseline and how to size its input."""

    name: str  # the stage's name in pipelines.registry and its recipe section
    baseline: Callable[[list[Path], BaseModel], Counts]
    input_size: Callable[[list[Path], BaseModel], tuple[int, int]]  # (files, bytes)
    help: str


BENCHMARKS: dict[str, StageBenchmark] = {
    b.name: b
    for b in (
        StageBenchmark(
            "ingest", baseline_ingest, ingest_input_size, "raw files -> documents, vs read_file() in a loop"
        ),
        StageBenchmark(
            "ingest-warc", baseline_ingest_warc, warc_input_size, "WARC files -> documents, vs read_warc() in a loop"
        ),
        StageBenchmark(
            "langid", baseline_langid, documents_input_size, "documents -> lang, vs a plain fastText predict loop"
        ),
        StageBenchmark(
            "quality", baseline_quality, documents_input_size, "documents -> filtered, vs the filter chain in a loop"
        ),
        StageBenchmark(
            "dedup-minhash",
            baseline_dedup_minhash,
            documents_input_size,
            "near-duplicates, vs datasketch MinHashLSH in one process",
        ),
        StageBenchmark(
            "tokenize",
            baseline_tokenize,
            documents_input_size,
            "documents -> token shards, vs the tokenizer's encode_batch in one process",
        ),
    )
}


def run_spark_stage(name: str, inputs: list[Path], recipe: Recipe, output: Path) -> Counts:
    """One forced run of the stage through the normal contract (output, rejects, stats)."""
    result = run_stage(
        stage_class(name)(), inputs, output, recipe.section(name), lambda: get_spark(recipe.spark), force=True
    )
    stats = result.stats
    dropped = {reason: v["docs"] for reason, v in stats["dropped"].items()}
    return Counts(stats["docs_in"], stats["docs_out"], dict(sorted(dropped.items())))


# --------------------------------------------------------------------------- one benchmark


@dataclass
class Series:
    """The timed runs of one contender (baseline or stage)."""

    label: str
    runs: list[Measurement[Counts]]
    input_bytes: int

    @property
    def median_wall(self) -> float:
        return statistics.median(m.wall_seconds for m in self.runs)

    @property
    def counts(self) -> Counts:
        return self.runs[-1].value

    @property
    def consistent(self) -> bool:
        return all(m.value == self.counts for m in self.runs)

    @property
    def docs_per_s(self) -> float:
        return self.counts.docs_in / self.median_wall

    @property
    def mb_per_s(self) -> float:
        return self.input_bytes / MB / self.median_wall

    @property
    def peak_rss_mib(self) -> float:
        return max(m.peak_rss_bytes for m in self.runs) / MiB

    def cpu_median(self, kind: str) -> float:
        return statistics.median(m.cpu_seconds[kind] for m in self.runs)


@dataclass
class BenchResult:
    """Everything one invocation measured, and the context needed to compare it later."""

    stage: str
    inputs: list[Path]
    files: int
    input_bytes: int
    baseline: Series
    stage_series: Series
    spark_startup_s: float
    spark_master: str
    spark_version: str
    repeat: int
    warmup: bool = True

    @property
    def counts_match(self) -> bool:
        return self.baseline.counts == self.stage_series.counts

    def ratio(self, series: Series) -> float:
        return series.docs_per_s / self.baseline.docs_per_s


def _timed_runs(
    label: str,
    fn: Callable[[int], Counts],
    repeat: int,
    input_bytes: int,
    console: Console,
    cleanup: Callable[[int], None] = lambda _n: None,
    warmup: bool = True,
) -> Series:
    """One untimed warm-up call (unless ``warmup`` is off), then ``repeat`` measured calls of
    ``fn(run_number)``. ``cleanup(run_number)`` runs after each call, outside the measurement.
    """
    if warmup:
        console.print(f"[dim]{label}: warm-up run[/dim]")
        fn(0)
        cleanup(0)
    runs: list[Measurement[Counts]] = []
    for number in range(1, repeat + 1):
        m = measure(label, functools.partial(fn, number))
        cleanup(number)
        console.print(
            f"[dim]{label}: run {number}/{repeat}: {m.wall_seconds:.2f} s, "
            f"peak RSS {m.peak_rss_bytes / MiB:.0f} MiB, {m.value.docs_in} docs in[/dim]"
        )
        runs.append(m)
    return Series(label, runs, input_bytes)


def bench_stage(
    bench: StageBenchmark, inputs: list[Path], recipe: Recipe, repeat: int, console: Console, warmup: bool = True
) -> BenchResult:
    """Baseline first (no JVM yet, so its RSS is its own), then start Spark, then the stage."""
    config = recipe.section(bench.name)
    files, input_bytes = bench.input_size(inputs, config)
    console.print(f"{bench.name}: {files} input files, {input_bytes / MB:.1f} MB")

    baseline = _timed_runs(
        "baseline", lambda _n: bench.baseline(inputs, config), repeat, input_bytes, console, warmup=warmup
    )

    startup = measure("spark start-up", lambda: get_spark(recipe.spark))
    spark = startup.value
    console.print(
        f"[dim]Spark {spark.version} ({spark.sparkContext.master}) started in {startup.wall_seconds:.1f} s[/dim]"
    )

    # A fresh output per run, so no run pays for replacing the previous run's output.
    workdir = Path(tempfile.mkdtemp(prefix=f"corpusforge-bench-{bench.name}-"))
    try:
        stage_series = _timed_runs(
            f"{bench.name} (Spark)",
            lambda n: run_spark_stage(bench.name, inputs, recipe, workdir / f"run-{n}"),
            repeat,
            input_bytes,
            console,
            cleanup=lambda n: shutil.rmtree(workdir / f"run-{n}", ignore_errors=True),
            warmup=warmup,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    return BenchResult(
        stage=bench.name,
        inputs=inputs,
        files=files,
        input_bytes=input_bytes,
        baseline=baseline,
        stage_series=stage_series,
        spark_startup_s=startup.wall_seconds,
        spark_master=spark.sparkContext.master or recipe.spark.master,
        spark_version=spark.version,
        repeat=repeat,
        warmup=warmup,
    )


# --------------------------------------------------------------------------- reporting

COLUMNS = (
    "run",
    "wall s (median)",
    "runs s",
    "docs in",
    "docs/s",
    "input MB/s",
    "peak RSS MiB",
    "CPU s driver / JVM / workers / other",
    "vs baseline",
)


def result_rows(result: BenchResult) -> list[list[str]]:
    """The table's cells, shared by the terminal table and the Markdown one."""
    rows = []
    for series in (result.baseline, result.stage_series):
        walls = ", ".join(f"{m.wall_seconds:.2f}" for m in series.runs)
        cpu = " / ".join(f"{series.cpu_median(kind):.1f}" for kind in CPU_KINDS)
        rows.append(
            [
                series.label,
                f"{series.median_wall:.2f}",
                walls,
                f"{series.counts.docs_in:,}",
                f"{series.docs_per_s:,.0f}",
                f"{series.mb_per_s:,.2f}",
                f"{series.peak_rss_mib:,.0f}",
                cpu,
                f"{result.ratio(series):.2f}×",
            ]
        )
    return rows


def result_notes(result: BenchResult) -> list[str]:
    """Facts needed to read the numbers: what was read, what was kept, anything inconsistent."""
    notes = [
        f"input: {', '.join(map(str, result.inputs))} ({result.files:,} files, {result.input_bytes / MB:,.1f} MB)",
        f"documents: {result.stage_series.counts.docs_in:,} in, {result.stage_series.counts.docs_out:,} kept"
        + (f", dropped {result.stage_series.counts.dropped}" if result.stage_series.counts.dropped else ""),
        f"Spark {result.spark_version}, master {result.spark_master}; "
        f"start-up {result.spark_startup_s:.1f} s (not in the stage's time)",
        f"{'1 warm-up run + ' if result.warmup else 'no warm-up run, '}{result.repeat} timed run(s) each; "
        "baseline ran before Spark was started",
    ]
    if not result.counts_match:
        notes.append(
            f"WARNING: stage and baseline disagree: stage {result.stage_series.counts}, "
            f"baseline {result.baseline.counts}"
        )
    cores = os.cpu_count() or 1
    for series in (result.baseline, result.stage_series):
        busiest = max(series.runs, key=lambda m: m.cpu_seconds[OTHER] / (m.wall_seconds * cores))
        share = busiest.cpu_seconds[OTHER] / (busiest.wall_seconds * cores)
        if share > OTHER_CPU_WARN_SHARE and busiest.cpu_seconds[OTHER] > OTHER_CPU_WARN_MIN_S:
            notes.append(
                f"WARNING: during a timed {series.label} run other processes used {share:.0%} of the "
                f"machine's CPU ({busiest.cpu_seconds[OTHER]:.1f} CPU s): the machine was shared"
            )
        if not series.consistent:
            notes.append(f"WARNING: {series.label} counted differently across runs")
    return notes


def print_result(result: BenchResult, console: Console) -> None:
    table = Table(title=f"{result.stage}: Spark stage vs plain-Python baseline")
    for index, column in enumerate(COLUMNS):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in result_rows(result):
        table.add_row(*row)
    console.print(table)
    for note in result_notes(result):
        console.print(("[bold red]" if note.startswith("WARNING") else "[dim]") + note, markup=True, highlight=False)


def markdown_table(result: BenchResult) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] + ["---:"] * (len(COLUMNS) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in result_rows(result)]
    return "\n".join(lines)


def machine_description() -> str:
    """CPU model, logical cores and total RAM: enough to know whether two results compare."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = psutil.virtual_memory().total / 1024**3
    return f"{model}, {os.cpu_count()} logical cores, {ram:.1f} GiB RAM"


def git_commit() -> str:
    """Short commit of the code measured (read-only `git rev-parse`)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def command_line(argv: Sequence[str]) -> str:
    return "python -m bench.harness " + shlex.join(argv)


def record(result: BenchResult, argv: Sequence[str], path: Path = RESULTS_FILE) -> None:
    """Append one section to RESULTS.md (created with its column legend if missing)."""
    now = datetime.now(timezone.utc)
    section = [
        f"## {result.stage}: {', '.join(p.name for p in result.inputs)} ({now:%Y-%m-%d %H:%M} UTC)",
        "",
        f"- date: {now:%Y-%m-%d %H:%M:%S} UTC",
        f"- machine: {machine_description()}",
        f"- command: `{command_line(argv)}`",
        f"- commit: `{git_commit()}`; Python {platform.python_version()}",
        *(f"- {note}" for note in result_notes(result)),
        "",
        markdown_table(result),
        "",
    ]
    append_section("\n".join(section), path)


def append_section(section: str, path: Path = RESULTS_FILE) -> None:
    """Append a Markdown section to RESULTS.md (created with its column legend if missing)."""
    text = path.read_text() if path.exists() else RESULTS_HEADER
    if not text.endswith("\n\n"):
        text = text.rstrip("\n") + "\n\n"
    path.write_text(text + section)


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.harness",
        description="Time a corpusforge Spark stage against a plain-Python baseline on the same input.",
    )
    commands = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for bench in BENCHMARKS.values():
        sub = commands.add_parser(bench.name, help=bench.help, description=bench.help)
        sub.add_argument(
            "--in", dest="inputs", action="append", required=True, type=Path, metavar="PATH",
            help="input file or directory (repeatable)",
        )
        sub.add_argument(
            "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
            help="recipe override by dotted path, e.g. 'ingest.formats=[html]' (repeatable)",
        )
        sub.add_argument("--repeat", type=int, default=3, help="timed runs after the warm-up (default 3)")
        sub.add_argument(
            "--no-warmup", action="store_true", help="skip the untimed warm-up runs (for inputs that take minutes)"
        )
        sub.add_argument("--record", action="store_true", help=f"append the result to {RESULTS_FILE.name}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped or logged: do not squeeze the table to 80 columns
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Each run would log up to 50 skipped records; the drop counts are in the summary instead.
    logging.getLogger("corpusforge.stage").setLevel(logging.ERROR)
    if args.repeat < 1:
        console.print("[red]--repeat must be at least 1")
        return 2
    try:
        recipe = default_recipe(args.overrides)
        result = bench_stage(BENCHMARKS[args.stage], args.inputs, recipe, args.repeat, console, warmup=not args.no_warmup)
    except CorpusforgeError as exc:  # bad recipe override, missing input, no Java
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 1
    finally:
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()
    print_result(result, console)
    if args.record:
        record(result, argv)
        console.print(f"recorded in {RESULTS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
