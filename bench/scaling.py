"""Cost curves: the web pipeline and MinHash dedup on growing corpora (10k, 100k, 1M documents).

Usage::

    python -m bench.scaling [--sizes 10000 100000 1000000] [--pipeline web minhash]
                            [--work /tmp/corpusforge-scaling] [--record]

Each size gets its own corpus, generated from real text (see :func:`write_corpus`), and its own
Spark application on a **standalone cluster started on 127.0.0.1** (one master, one worker, its
cores = the machine's), so that the driver (this Python process and its JVM) and the executor
(its JVM and its Python workers) are separate processes whose memory can be told apart: the
question is whether the driver stays flat as the corpus grows. On one machine the executor
shares the cores with the driver; nothing here measures network shuffle.

Pipelines:

- ``web``: ingest (JSONL) → langid → quality → pii → dedup-exact → dedup-minhash → tokenize, the
  demo recipe's stages at their recipe defaults, each one run through the stage contract.
- ``minhash``: dedup-minhash alone on the ingested documents (its input is prepared untimed).

Per stage: wall seconds, documents in/out, docs/s; peak RSS of the driver (Python + JVM), of the
executor JVM and of the executor's Python workers (sampled every 0.5 s from the process tree);
the JVMs' peak heap from Spark's own metrics; shuffle written, spill and input/output bytes from
Spark's REST API (the stages that ran for that step); peak scratch disk (``SPARK_LOCAL_DIRS``) and
the size of the step's output; CPU seconds of the whole process tree and *other* CPU (the machine
busy beyond it: another job shared the cores, so that step's time is pessimistic). ``--record`` appends the table to ``bench/RESULTS.md`` and writes
``bench/scaling.png``; the raw numbers go to ``WORK/results.json``.

Why generated documents: 1M real, distinct web pages are not on this machine. Each document is a
random run of 3–9 sentences drawn from the 15k sentences of the Python documentation sources
(real English, so language ID and the quality filters do their real work), with a fixed share of
exact copies, near copies (a sentence replaced) and repetitive junk, so that every filter and both
dedups have something to remove at every size. The same seed gives the same corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import psutil

from bench.harness import MiB, ProcessTreeSampler, append_section, git_commit, machine_description
from bench.make_jsonl import DEFAULT_SOURCES, load_sentences
from bench.standalone import StandaloneCluster, free_port

WEB_STAGES = ("ingest", "langid", "quality", "pii", "dedup-exact", "dedup-minhash", "tokenize")
DOCS_PER_SHARD = 25_000
EXACT_COPY_SHARE = 0.04
NEAR_COPY_SHARE = 0.04
JUNK_SHARE = 0.02
SAMPLE_INTERVAL_S = 0.5
DISK_SAMPLE_EVERY = 4  # scratch directories are walked every 4th sample (2 s)
PLOT_FILE = Path(__file__).with_name("scaling.png")

DRIVER_PY, DRIVER_JVM, EXECUTOR_JVM, EXECUTOR_PY = "driver_python", "driver_jvm", "executor_jvm", "executor_python"


# --------------------------------------------------------------------------- corpus


def write_corpus(out: Path, n_docs: int, seed: int = 0) -> dict[str, Any]:
    """``n_docs`` JSONL records in shards of 25k under ``out``; reused when already written."""
    done = out / "_corpus.json"
    if done.is_file():
        meta = json.loads(done.read_text())
        if meta.get("docs") == n_docs and meta.get("seed") == seed:
            return meta
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    sentences = load_sentences(DEFAULT_SOURCES)
    rng = random.Random(seed)
    written: list[str] = []
    kinds = {"unique": 0, "exact_copy": 0, "near_copy": 0, "junk": 0}
    shards = max(1, -(-n_docs // DOCS_PER_SHARD))
    number = 0
    for shard in range(shards):
        path = out / f"part-{shard:04d}.jsonl"
        with open(path, "w", encoding="utf-8") as handle:
            for _ in range(min(DOCS_PER_SHARD, n_docs - number)):
                draw = rng.random()
                if written and draw < EXACT_COPY_SHARE:
                    kind, text = "exact_copy", rng.choice(written)
                elif written and draw < EXACT_COPY_SHARE + NEAR_COPY_SHARE:
                    parts = rng.choice(written).split("\n")
                    parts[rng.randrange(len(parts))] = rng.choice(sentences)
                    kind, text = "near_copy", "\n".join(parts)
                elif draw < EXACT_COPY_SHARE + NEAR_COPY_SHARE + JUNK_SHARE:
                    kind, text = "junk", "\n".join([rng.choice(sentences)] * rng.randint(8, 20))
                else:
                    kind, text = "unique", "\n".join(rng.sample(sentences, rng.randint(3, 9)))
                # A bounded pool of earlier texts to copy from: memory stays flat at 1M docs.
                if kind == "unique":
                    if len(written) < 50_000:
                        written.append(text)
                    else:
                        written[rng.randrange(len(written))] = text
                kinds[kind] += 1
                record = {"id": f"doc-{number:08d}", "url": f"https://example.org/{number}", "text": text}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                number += 1
    meta = {
        "docs": n_docs,
        "seed": seed,
        "shards": shards,
        "bytes": sum(p.stat().st_size for p in out.glob("*.jsonl")),
        "kinds": kinds,
    }
    done.write_text(json.dumps(meta, indent=2) + "\n")
    return meta


# --------------------------------------------------------------------------- measuring


def _kind(process: psutil.Process, own_pid: int) -> str | None:
    """Which side a process belongs to; None for the cluster's own daemons (master, worker)."""
    if process.pid == own_pid:
        return DRIVER_PY
    try:
        cmdline = " ".join(process.cmdline())
        name = process.name().lower()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    if "java" in name:
        if "CoarseGrainedExecutorBackend" in cmdline:
            return EXECUTOR_JVM
        if "deploy.master.Master" in cmdline or "deploy.worker.Worker" in cmdline:
            return None
        return DRIVER_JVM
    if "pyspark" in cmdline or "python" in name:
        return EXECUTOR_PY
    return None


def _tree_bytes(roots: Sequence[Path]) -> int:
    total = 0
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for name in files:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_size
                except OSError:
                    pass
    return total


class Sampler:
    """Peak RSS per side (summed over that side's processes) and peak scratch disk."""

    def __init__(self, scratch: Sequence[Path]) -> None:
        self.scratch = list(scratch)
        self.peak_rss = {DRIVER_PY: 0, DRIVER_JVM: 0, EXECUTOR_JVM: 0, EXECUTOR_PY: 0}
        self.peak_scratch = 0
        # CPU seconds of this process tree and of the whole machine: "other" CPU during a step
        # means someone else's job shared the cores and the step's time is pessimistic.
        self.tree_cpu_s = 0.0
        self.machine_cpu_s = 0.0
        self._cpu_first: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self._root = psutil.Process(os.getpid())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scaling-sampler", daemon=True)

    def _sample(self, disk: bool) -> None:
        sums = dict.fromkeys(self.peak_rss, 0)
        for process in [self._root, *self._root.children(recursive=True)]:
            kind = _kind(process, self._root.pid)
            if kind is None:
                continue
            try:
                with process.oneshot():
                    sums[kind] += process.memory_info().rss
                    times = process.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            self._cpu_first.setdefault(process.pid, times.user + times.system)
            self._cpu_last[process.pid] = times.user + times.system
        for kind, value in sums.items():
            self.peak_rss[kind] = max(self.peak_rss[kind], value)
        if disk:
            self.peak_scratch = max(self.peak_scratch, _tree_bytes(self.scratch))

    def _run(self) -> None:
        tick = 0
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            tick += 1
            self._sample(disk=tick % DISK_SAMPLE_EVERY == 0)

    def __enter__(self) -> "Sampler":
        self._machine_start = ProcessTreeSampler._machine_busy_seconds()
        self._sample(disk=True)
        started = set(self._cpu_first)
        self._thread.start()
        # Processes alive at the start count from their CPU time then; later ones from zero.
        self._started_pids = started
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(disk=True)
        self.machine_cpu_s = ProcessTreeSampler._machine_busy_seconds() - self._machine_start
        self.tree_cpu_s = sum(
            last - (self._cpu_first[pid] if pid in self._started_pids else 0.0) for pid, last in self._cpu_last.items()
        )

    @property
    def other_cpu_s(self) -> float:
        return max(0.0, self.machine_cpu_s - self.tree_cpu_s)


class SparkRest:
    """The running application's monitoring REST API (the driver's UI port)."""

    def __init__(self, port: int, app_id: str) -> None:
        self.base = f"http://127.0.0.1:{port}/api/v1/applications/{app_id}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=30) as reply:
            return json.load(reply)

    def stage_ids(self) -> set[tuple[int, int]]:
        return {(s["stageId"], s["attemptId"]) for s in self.get("/stages")}

    def io_since(self, before: set[tuple[int, int]]) -> dict[str, int]:
        keys = ("shuffleWriteBytes", "shuffleReadBytes", "memoryBytesSpilled", "diskBytesSpilled", "inputBytes", "outputBytes")
        totals = dict.fromkeys(keys, 0)
        for stage in self.get("/stages"):
            if (stage["stageId"], stage["attemptId"]) in before:
                continue
            for key in keys:
                totals[key] += int(stage.get(key, 0) or 0)
        return totals

    def peak_heap(self) -> dict[str, int]:
        """Peak JVM heap of the driver and of the executors (largest), from Spark's executor metrics."""
        peaks = {"driver": 0, "executors": 0}
        for executor in self.get("/allexecutors"):
            heap = int((executor.get("peakMemoryMetrics") or {}).get("JVMHeapMemory", 0))
            side = "driver" if executor["id"] == "driver" else "executors"
            peaks[side] = max(peaks[side], heap)
        return peaks


@dataclass
class StepResult:
    pipeline: str
    size: int
    stage: str
    wall_s: float
    docs_in: int
    docs_out: int
    peak_rss: dict[str, int]
    peak_scratch_bytes: int
    output_bytes: int
    spark_io: dict[str, int]
    cpu_s: float = 0.0
    other_cpu_s: float = 0.0
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def docs_per_s(self) -> float:
        return self.docs_in / self.wall_s if self.wall_s else 0.0


# --------------------------------------------------------------------------- running


def _recipe(stages: Sequence[str], master: str, ui_port: int, corpus: Path, driver_memory: str) -> Any:
    from flows.recipe import default_recipe

    return default_recipe(
        [
            f"stages=[{', '.join(stages)}]",
            f"ingest.paths=[{corpus}]",
            "ingest.formats=[jsonl]",
            f"spark.master={master}",
            f"spark.driver_memory={driver_memory}",
            "spark.conf={"
            "'spark.ui.enabled': 'true', "
            f"'spark.ui.port': '{ui_port}', "
            "'spark.executor.memory': '2g', "
            "'spark.executor.processTreeMetrics.enabled': 'true'"
            "}",
        ]
    )


def run_size(
    pipelines: Sequence[str], size: int, work: Path, cluster: StandaloneCluster, console: Any, driver_memory: str = "2g"
) -> list[StepResult]:
    from flows.runner import execute_stage
    from pipelines.spark import get_spark

    corpus = work / f"corpus-{size}"
    console.print(f"[bold]{size:,} documents[/]: writing the corpus …")
    meta = write_corpus(corpus, size)
    console.print(f"  {meta['shards']} JSONL files, {meta['bytes'] / 1e6:,.0f} MB, {meta['kinds']}")
    ui_port = free_port()
    recipe = _recipe(WEB_STAGES, cluster.master_url, ui_port, corpus, driver_memory)
    spark = get_spark(recipe.spark)
    rest = SparkRest(ui_port, spark.sparkContext.applicationId)
    results: list[StepResult] = []
    try:
        for pipeline in pipelines:
            out = work / f"out-{size}" / pipeline
            shutil.rmtree(out, ignore_errors=True)
            if pipeline == "web":
                steps, source = list(WEB_STAGES), [corpus]
            else:
                prepared = work / f"out-{size}" / "minhash-input"
                source = [execute_stage(recipe, "ingest", [corpus], prepared).output]
                steps = ["dedup-minhash"]
            for name in steps:
                before = rest.stage_ids()
                with Sampler(cluster.local_dirs) as sampler:
                    started = time.perf_counter()
                    result = execute_stage(recipe, name, source, out / name, force=True)
                    wall = time.perf_counter() - started
                stats = result.stats
                step = StepResult(
                    pipeline=pipeline,
                    size=size,
                    stage=name,
                    wall_s=round(wall, 2),
                    docs_in=int(stats["docs_in"]),
                    docs_out=int(stats["docs_out"]),
                    peak_rss=dict(sampler.peak_rss),
                    peak_scratch_bytes=sampler.peak_scratch,
                    output_bytes=_tree_bytes([result.output]),
                    spark_io=rest.io_since(before),
                    cpu_s=round(sampler.tree_cpu_s, 1),
                    other_cpu_s=round(sampler.other_cpu_s, 1),
                    dropped={reason: v["docs"] for reason, v in stats.get("dropped", {}).items()},
                )
                results.append(step)
                console.print(
                    f"  {pipeline}/{name}: {step.wall_s:.1f} s, {step.docs_in:,} → {step.docs_out:,} docs, "
                    f"{step.docs_per_s:,.0f} docs/s, driver {_mib(_driver(step)):,} MiB, "
                    f"executor {_mib(_executor(step)):,} MiB, shuffle {step.spark_io['shuffleWriteBytes'] / 1e6:,.0f} MB"
                )
                source = [result.output]
        heap = rest.peak_heap()
        for step in results:
            step.spark_io["driver_peak_heap"] = heap["driver"]
            step.spark_io["executor_peak_heap"] = heap["executors"]
    finally:
        spark.stop()
    return results


def _mib(n: int) -> int:
    return round(n / MiB)


def _driver(step: StepResult) -> int:
    return step.peak_rss[DRIVER_PY] + step.peak_rss[DRIVER_JVM]


def _executor(step: StepResult) -> int:
    return step.peak_rss[EXECUTOR_JVM] + step.peak_rss[EXECUTOR_PY]


# --------------------------------------------------------------------------- reporting


def markdown(results: Sequence[StepResult]) -> str:
    header = (
        "| pipeline | docs | stage | wall s | docs in → out | docs/s | driver RSS MiB (py + JVM) | "
        "executor RSS MiB (JVM + py) | shuffle write MB | spill MB | scratch peak MB | output MB | CPU s (other) |\n"
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows = []
    for r in results:
        spill = (r.spark_io["memoryBytesSpilled"] + r.spark_io["diskBytesSpilled"]) / 1e6
        rows.append(
            f"| {r.pipeline} | {r.size:,} | {r.stage} | {r.wall_s:,.1f} | {r.docs_in:,} → {r.docs_out:,} | "
            f"{r.docs_per_s:,.0f} | {_mib(_driver(r)):,} ({_mib(r.peak_rss[DRIVER_PY])} + {_mib(r.peak_rss[DRIVER_JVM])}) | "
            f"{_mib(_executor(r)):,} ({_mib(r.peak_rss[EXECUTOR_JVM])} + {_mib(r.peak_rss[EXECUTOR_PY])}) | "
            f"{r.spark_io['shuffleWriteBytes'] / 1e6:,.1f} | {spill:,.1f} | {r.peak_scratch_bytes / 1e6:,.1f} | "
            f"{r.output_bytes / 1e6:,.1f} | {r.cpu_s:,.0f} ({r.other_cpu_s:,.0f}) |"
        )
    totals = []
    for pipeline in sorted({r.pipeline for r in results}):
        for size in sorted({r.size for r in results if r.pipeline == pipeline}):
            steps = [r for r in results if r.pipeline == pipeline and r.size == size]
            wall = sum(r.wall_s for r in steps)
            heap = steps[0].spark_io.get("driver_peak_heap", 0), steps[0].spark_io.get("executor_peak_heap", 0)
            totals.append(
                f"| {pipeline} | {size:,} | {wall:,.1f} | {size / wall:,.0f} | {max(_mib(_driver(r)) for r in steps):,} | "
                f"{_mib(heap[0]):,} | {max(_mib(_executor(r)) for r in steps):,} | {_mib(heap[1]):,} |"
            )
    summary = (
        "| pipeline | docs | wall s (all steps) | docs/s end to end | driver peak RSS MiB | driver peak heap MiB | "
        "executor peak RSS MiB | executor peak heap MiB |\n|---|---:|---:|---:|---:|---:|---:|---:|\n" + "\n".join(totals)
    )
    return summary + "\n\n" + header + "\n" + "\n".join(rows)


def plot(results: Sequence[StepResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rate, memory) = plt.subplots(1, 2, figsize=(12, 4.5))
    for pipeline in sorted({r.pipeline for r in results}):
        for stage in dict.fromkeys(r.stage for r in results if r.pipeline == pipeline):
            steps = sorted((r for r in results if r.pipeline == pipeline and r.stage == stage), key=lambda r: r.size)
            label = f"{pipeline}: {stage}" if pipeline != "web" else stage
            rate.plot([r.size for r in steps], [r.docs_per_s for r in steps], marker="o", label=label)
    rate.set(xscale="log", yscale="log", xlabel="documents", ylabel="docs/s", title="throughput per stage")
    rate.legend(fontsize=7)
    sizes = sorted({r.size for r in results})
    for label, pick in (("driver (py + JVM)", _driver), ("executor (JVM + py)", _executor)):
        memory.plot(sizes, [max(pick(r) for r in results if r.size == s) / MiB for s in sizes], marker="o", label=label)
    memory.set(xscale="log", xlabel="documents", ylabel="peak RSS MiB", title="peak memory (all steps)")
    memory.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console

    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--pipeline", nargs="+", choices=["web", "minhash"], default=["web", "minhash"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/corpusforge-scaling"))
    parser.add_argument(
        "--driver-memory", default="2g", help="driver JVM heap (a run that passes with a small one shows the driver's need)"
    )
    parser.add_argument("--plot", type=Path, default=PLOT_FILE, help="where --record writes the plot")
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md and write the plot")
    args = parser.parse_args(argv)
    console = Console()
    args.work.mkdir(parents=True, exist_ok=True)
    results_file = args.work / "results.json"
    started = datetime.now(timezone.utc)
    results: list[StepResult] = []
    cores = os.cpu_count() or 2
    with StandaloneCluster(args.work / "cluster", workers=1, cores_per_worker=cores, memory_per_worker="6g") as cluster:
        for size in args.sizes:
            results += run_size(args.pipeline, size, args.work, cluster, console, args.driver_memory)
            results_file.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    table = markdown(results)
    console.print(table)
    if args.record:
        plot(results, args.plot)
        ended = datetime.now(timezone.utc)
        section = "\n".join(
            [
                f"## scaling: {', '.join(args.pipeline)} at {', '.join(f'{s:,}' for s in args.sizes)} documents "
                f"({started:%Y-%m-%d %H:%M}–{ended:%H:%M} UTC)",
                "",
                f"- machine: {machine_description()}",
                f"- command: `python -m bench.scaling {' '.join(argv if argv is not None else sys.argv[1:])}`",
                f"- commit: `{git_commit()}`",
                f"- Spark standalone on 127.0.0.1: 1 worker, {cores} cores, executor heap 2g, driver heap {args.driver_memory}; "
                "one application per size",
                f"- plot: [{args.plot.name}]({args.plot.name}); raw numbers: `{results_file}`",
                "",
                table,
                "",
            ]
        )
        append_section(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
