"""The stage contract every Spark stage follows.

A stage turns its inputs into a *working* DataFrame: the document columns plus
``_drop_reason`` (null = keep), ``_drop_detail`` (where and why, e.g. ``file.jsonl:17: …``)
and ``_bytes_in``. :func:`run_stage` does the rest, the same way for every stage:

- writes into ``.<out>.tmp-<pid>`` beside the output and renames it on success, so a
  killed stage never leaves output that looks finished;
- inside the output: ``part-*.parquet`` (kept documents), ``_rejects/`` (dropped records
  with reason, detail and a text preview), ``_stats.json``, and ``_SUCCESS`` written last;
- skips the stage when ``_SUCCESS`` holds the same fingerprint (stage, config, inputs,
  code), so a rerun resumes after the last finished stage;
- holds a lock so two runs cannot write the same output.
"""

from __future__ import annotations

import bisect
import fcntl
import hashlib
import importlib
import inspect
import json
import logging
import os
import shutil
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Iterator

from pydantic import BaseModel

from pipelines.errors import StageInputError, StageLockedError
from pipelines.progress import spark_progress
from pipelines.schema import (
    BYTES_IN,
    DOCUMENT_COLUMNS,
    DROP_DETAIL,
    DROP_REASON,
    REJECTS_DIR,
    STATS_FILE,
    SUCCESS_FILE,
    validate_dataset,
)
from pipelines.spark import size_shuffles
from pipelines.storage import absolute, arrow_filesystem, is_uri, location, move_tree, remove_tree, walk_files, write_text

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("corpusforge.stage")

REJECT_PREVIEW_CHARS = 500
LOGGED_DETAILS = 50
EXAMPLES_PER_REASON = 5
# Lower edges of the byte-length buckets of ``length_histogram`` in ``_stats.json``: 0, 64, 128,
# 256, … 16 MiB; the last bucket has no upper bound (``null`` in the ``edges`` list).
LENGTH_EDGES: tuple[int, ...] = (0, *(64 << i for i in range(19)))


class Stage(ABC):
    """One step of a corpus build. Subclasses set ``name``, ``Config`` and ``transform``."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Config: ClassVar[type[BaseModel]]
    # The recipe section holding the stage's settings; the stage name unless it is no identifier.
    section: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "name", None) and not cls.__dict__.get("section"):
            cls.section = cls.name
    # True for stages that read raw files (ingest, crawl); False for stages that read documents.
    reads_raw_files: ClassVar[bool] = False
    # True for stages that can run without input paths (crawl: seeds may be in the recipe).
    inputs_optional: ClassVar[bool] = False
    # False for stages whose Python side writes files only a local or mounted path can take (crawl).
    writes_uris: ClassVar[bool] = True
    # Further modules whose code decides the output (e.g. "filters.quality"): part of the fingerprint.
    code_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.extra_stats: dict[str, Any] = {}
        # Where the finished output will be; set by run_stage before transform (stages that keep
        # resumable state beside their output use it).
        self.output_path: Path = Path()

    @abstractmethod
    def transform(self, spark: "SparkSession", inputs: list[Path], config: BaseModel) -> "DataFrame":
        """Return the working DataFrame (document columns + drop reason, detail, bytes in)."""

    def read_documents(self, spark: "SparkSession", inputs: list[Path]) -> "DataFrame":
        """Read document datasets after checking every file's schema on the driver.

        Each input is read as a whole dataset, so ``lang=en/`` style partition directories
        give back their column.
        """
        frames = []
        for path in inputs:
            validate_dataset(path)
            frames.append(spark.read.parquet(str(path)).select(*DOCUMENT_COLUMNS))
        return union_all(frames)

    def output_partitioning(self, config: BaseModel) -> list[str]:
        """Columns to partition the output by (``lang`` → ``lang=en/`` directories); none by default."""
        return []

    def fingerprint_extras(self, config: BaseModel) -> dict[str, Any]:
        """What else decides the output besides config, inputs and code (e.g. a model file's hash)."""
        return {}

    def write_kept(self, kept: "DataFrame", output: Path, config: BaseModel) -> None:
        """Write the kept documents into the unfinished output directory: Parquet by default.

        An override must run one action over ``kept`` (the stage totals are observed on it).
        """
        kept.write.mode("errorifexists").partitionBy(*self.output_partitioning(config)).parquet(str(output))

    def summarize(self, working: "DataFrame", stats: dict[str, Any], config: BaseModel) -> dict[str, Any]:
        """Stage-specific entries for ``_stats.json``, computed from the (cached) working rows."""
        return {}

    def write_extras(self, output: Path, config: BaseModel) -> None:
        """Write side outputs (``_duplicates/`` …) into the unfinished output directory."""

    def release(self) -> None:
        """Free what ``transform`` cached besides the working rows."""

    def finished(self) -> None:
        """Called once the output is complete and in place (e.g. to remove resumable state)."""


def union_all(frames: list["DataFrame"]) -> "DataFrame":
    """Union by column name of one or more DataFrames."""
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


@dataclass
class StageResult:
    stage: str
    output: Path
    stats: dict[str, Any]
    skipped: bool


def hash_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def input_fingerprint(path: Path) -> str:
    """Cheap identity of an input: a finished stage's own fingerprint, else file names, sizes, mtimes."""
    success = path / SUCCESS_FILE
    if success.is_file():
        try:
            return "stage:" + json.loads(success.read_text())["fingerprint"]
        except (ValueError, KeyError):
            pass
    if path.is_file():
        st = path.stat()
        return hash_json([path.name, st.st_size, getattr(st, "st_mtime_ns", None) or int(st.st_mtime * 1e9)])
    if not path.exists():
        raise StageInputError(f"{path}: input does not exist")
    return hash_json([list(entry) for entry in walk_files(path)])


def input_bytes(inputs: list[Path]) -> int:
    """Total size of the files of ``inputs`` (0 for inputs that do not exist)."""
    total = 0
    for path in inputs:
        if path.is_file():
            total += path.stat().st_size
        elif path.exists():
            total += sum(size for _, size, _ in walk_files(path))
    return total


def code_fingerprint(stage: "Stage | Any") -> str:
    """Source of the stage's modules (its class hierarchy) and of the filters it declares.

    Changed code reruns the stage.
    """
    modules = {
        inspect.getmodule(cls) for cls in type(stage).__mro__ if cls.__module__.startswith(("pipelines.", "synth."))
    }
    modules |= {importlib.import_module(name) for name in stage.code_modules}
    sources = sorted(inspect.getsource(m) for m in modules if m is not None)
    return hashlib.sha256("\n".join(sources).encode()).hexdigest()


def stage_fingerprint(stage: "Stage | Any", inputs: list[Path], config: BaseModel, options: dict[str, Any] | None = None) -> str:
    return hash_json(
        {
            "stage": stage.name,
            "config": config.model_dump(mode="json"),
            "inputs": [input_fingerprint(p) for p in inputs],
            "code": code_fingerprint(stage),
            "options": options or {},
        }
    )


def spark_stage_fingerprint(stage: Stage, inputs: list[Path], config: BaseModel, keep_rejects: Path | None = None) -> str:
    """The fingerprint :func:`run_stage` gives this run (``inputs`` resolved): also what a flow
    uses as the stage's cache key and what ``--dry-run`` compares with the finished output."""
    options = {"keep_rejects": str(absolute(keep_rejects))} if keep_rejects is not None else {}
    options.update(stage.fingerprint_extras(config))
    return stage_fingerprint(stage, inputs, config, options)


def read_success(output: Path) -> dict[str, Any] | None:
    try:
        return json.loads((output / SUCCESS_FILE).read_text())
    except (OSError, ValueError):
        return None


def current_result(stage_name: str, output: Path, fingerprint: str) -> StageResult | None:
    """The finished output's result when its fingerprint is ``fingerprint`` (nothing to do), else None."""
    done = read_success(output)
    if not done or done.get("fingerprint") != fingerprint:
        return None
    stats = json.loads((output / STATS_FILE).read_text())
    log.info("%s: output is current, skipping (%s)", stage_name, output)
    return StageResult(stage_name, output, stats, skipped=True)


def run_stats(
    started: float, started_at: str, inputs: list[Path], output: Path, config: BaseModel, fingerprint: str
) -> dict[str, Any]:
    """The part of ``_stats.json`` every stage writes about its run: times, paths, settings, fingerprint."""
    return {
        "wall_seconds": round(time.time() - started, 3),
        "started_at": started_at,
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "inputs": [str(p) for p in inputs],
        "output": str(output),
        "config": config.model_dump(mode="json"),
        "fingerprint": fingerprint,
    }


def publish(tmp: Path, output: Path, stats: dict[str, Any]) -> None:
    """Finish a stage: ``_stats.json``, then ``_SUCCESS``, then the rename of ``tmp`` to ``output``
    (an earlier output is moved aside first and removed after).

    On a URI (object stores have no atomic rename) the order is: the earlier output's
    ``_SUCCESS`` removed, the earlier output removed, the files moved, then ``_stats.json`` and
    ``_SUCCESS`` written last, so a run killed at any point leaves no output that looks finished.
    """
    marker = {"stage": stats["stage"], "fingerprint": stats["fingerprint"], "finished_at": stats["finished_at"]}
    if is_uri(output):
        remove_tree(output / SUCCESS_FILE)
        remove_tree(output)
        move_tree(tmp, output)
        write_text(output / STATS_FILE, json.dumps(stats, indent=2) + "\n")
        write_text(output / SUCCESS_FILE, json.dumps(marker) + "\n")
        return
    write_text(tmp / STATS_FILE, json.dumps(stats, indent=2) + "\n")
    write_text(tmp / SUCCESS_FILE, json.dumps(marker) + "\n")
    if output.exists():
        trash = output.parent / f".{output.name}.tmp-{os.getpid()}-old"
        os.rename(output, trash)
        os.rename(tmp, output)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, output)


@contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """One writer per output: an exclusive lock file beside it. Object stores have no locks; a
    flow runs each stage once, and two hand-started runs on one URI output must be avoided."""
    if is_uri(output):
        yield
        return
    lock_path = output.parent / f".{output.name}.lock"
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise StageLockedError(f"{output}: another run (pid {holder}) is writing this output") from exc
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def leftovers(output: Path) -> list[Path]:
    """Unfinished outputs of earlier, interrupted runs of the stage writing ``output``."""
    return sorted(output.parent.glob(f".{output.name}.tmp-*"))


def remove_leftovers(output: Path) -> None:
    for leftover in leftovers(output):
        log.warning("removing unfinished output of an earlier, interrupted run: %s", leftover)
        remove_tree(leftover)


def _quietly(what: str, *steps: Callable[[], Any]) -> None:
    """Clean-up after a stage: a failure here (a JVM that died of an OOM fails ``unpersist``
    too) is logged and must not replace the error that stopped the stage."""
    for step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001
            log.warning("could not %s: %s", what, exc)


def _discard_staging(tmp: Path) -> None:
    """After a failed run: free the space now (a full disk is a common cause) rather than at the
    next run; a failure to remove it must not hide the error that stopped the stage."""
    try:
        remove_tree(tmp)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not remove the unfinished output %s: %s", tmp, exc)


def length_bucket(n: int) -> int:
    """The ``length_histogram`` bucket of a record of ``n`` bytes."""
    return max(bisect.bisect_right(LENGTH_EDGES, n) - 1, 0)


def length_histogram(lengths_in: Iterable[int], lengths_out: Iterable[int]) -> dict[str, Any]:
    """``length_histogram`` of ``_stats.json`` from the byte lengths of the records in and the records kept."""
    counts_in = [0] * len(LENGTH_EDGES)
    counts_out = [0] * len(LENGTH_EDGES)
    for n in lengths_in:
        counts_in[length_bucket(n)] += 1
    for n in lengths_out:
        counts_out[length_bucket(n)] += 1
    return {"edges": [*LENGTH_EDGES, None], "in": counts_in, "out": counts_out}


def add_length_histograms(total: dict[str, Any] | None, part: dict[str, Any]) -> dict[str, Any]:
    """The sum of two length histograms (same edges)."""
    if total is None:
        return {"edges": list(part["edges"]), "in": list(part["in"]), "out": list(part["out"])}
    return {
        "edges": total["edges"],
        "in": [a + b for a, b in zip(total["in"], part["in"])],
        "out": [a + b for a, b in zip(total["out"], part["out"])],
    }


TOTAL_KEYS = ("docs_in", "bytes_in", "docs_out", "bytes_out")


def _observed_totals(working: "DataFrame") -> tuple["DataFrame", Any]:
    """``working`` with an observation of its totals and of its length histograms, gathered while
    the output is written (aggregates only: no extra job, no Python per row)."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    kept = F.col(DROP_REASON).isNull()
    size_in = F.coalesce(F.col(BYTES_IN), F.lit(0))
    size_out = F.octet_length("text")
    buckets = []
    for i, low in enumerate(LENGTH_EDGES):
        high = LENGTH_EDGES[i + 1] if i + 1 < len(LENGTH_EDGES) else None
        in_bucket_in = (size_in >= low) if high is None else ((size_in >= low) & (size_in < high))
        in_bucket_out = (size_out >= low) if high is None else ((size_out >= low) & (size_out < high))
        buckets.append(F.count_if(in_bucket_in).alias(f"length_in_{i}"))
        buckets.append(F.count_if(kept & in_bucket_out).alias(f"length_out_{i}"))
    observation = Observation("stage_totals")
    observed = working.observe(
        observation,
        F.count(F.lit(1)).alias("docs_in"),
        F.coalesce(F.sum(BYTES_IN), F.lit(0)).alias("bytes_in"),
        F.count_if(kept).alias("docs_out"),
        F.coalesce(F.sum(F.when(kept, F.octet_length("text"))), F.lit(0)).alias("bytes_out"),
        *buckets,
    )
    return observed, observation


def _observed_stats(values: dict[str, Any]) -> dict[str, Any]:
    """The totals and ``length_histogram`` from the observation of :func:`_observed_totals`."""
    stats: dict[str, Any] = {key: int(values[key]) for key in TOTAL_KEYS}
    n = len(LENGTH_EDGES)
    stats["length_histogram"] = {
        "edges": [*LENGTH_EDGES, None],
        "in": [int(values[f"length_in_{i}"]) for i in range(n)],
        "out": [int(values[f"length_out_{i}"]) for i in range(n)],
    }
    return stats


def rejects_stats(rejects: Path, stage_name: str) -> dict[str, Any]:
    """Drops per reason (docs, bytes) and a few example details, read back from ``_rejects/``.

    The rejects are small columns (no text), so the driver reads them with Arrow instead of
    running more Spark jobs over the working rows.
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    filesystem, where = arrow_filesystem(rejects)
    dataset = ds.dataset(where, format="parquet", filesystem=filesystem)
    table = dataset.to_table(columns=["reason", "bytes_in"])
    dropped: dict[str, Any] = {}
    if table.num_rows:
        grouped = table.group_by("reason").aggregate([("reason", "count"), ("bytes_in", "sum")])
        for row in grouped.to_pylist():
            dropped[row["reason"]] = {"docs": row["reason_count"], "bytes": row["bytes_in_sum"] or 0}
    dropped = dict(sorted(dropped.items(), key=lambda kv: (-kv[1]["docs"], kv[0])))

    examples: dict[str, list[str]] = {}
    logged = 0
    for batch in dataset.to_batches(columns=["reason", "detail"], filter=pc.field("detail").is_valid()):
        for row in batch.to_pylist():
            log.warning("%s: skipped (%s) %s", stage_name, row["reason"], row["detail"])
            bucket = examples.setdefault(row["reason"], [])
            if len(bucket) < EXAMPLES_PER_REASON:
                bucket.append(row["detail"])
            logged += 1
            if logged >= LOGGED_DETAILS:
                break
        if logged >= LOGGED_DETAILS:
            break
    total = sum(v["docs"] for v in dropped.values())
    if total > logged:
        log.warning("%s: %d more skipped records; see %s/", stage_name, total - logged, REJECTS_DIR)
    stats: dict[str, Any] = {"dropped": dropped}
    if dropped:
        stats["examples"] = examples
    return stats


def _write_full_rejects(working: "DataFrame", target: Path) -> None:
    """Dropped documents, whole, one folder per filter, written atomically like the output."""
    from pyspark.sql import functions as F

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    remove_tree(tmp)
    (
        working.where(F.col(DROP_REASON).isNotNull())
        .select(
            *DOCUMENT_COLUMNS,
            F.col(DROP_REASON).alias("reason"),
            F.col(DROP_DETAIL).alias("detail"),
            F.split(F.col(DROP_REASON), ":").getItem(0).alias("filter"),
        )
        .write.partitionBy("filter")
        .parquet(str(tmp))
    )
    remove_tree(target)
    move_tree(tmp, target)


def run_stage(
    stage: Stage,
    inputs: list[Path],
    output: Path,
    config: BaseModel,
    spark: "Callable[[], SparkSession]",
    *,
    force: bool = False,
    output_partitions: int | None = None,
    keep_rejects: Path | None = None,
) -> StageResult:
    """Run ``stage`` under the contract above; skip it if its finished output is current.

    ``spark`` is called only when the stage really runs, so a fully current build starts no JVM.
    ``keep_rejects``: also write the dropped documents, whole, to ``keep_rejects/filter=<name>/``.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    output = absolute(location(output))
    inputs = [absolute(location(p)) for p in inputs]
    if not inputs and not stage.inputs_optional:
        raise StageInputError(f"stage {stage.name}: no input given")
    output.parent.mkdir(parents=True, exist_ok=True)
    fingerprint = spark_stage_fingerprint(stage, inputs, config, keep_rejects)

    with output_lock(output):
        current = None if force else current_result(stage.name, output, fingerprint)
        if current is not None:
            return current
        remove_leftovers(output)
        stage.output_path = output
        session = spark()
        partitions = size_shuffles(session, input_bytes(inputs))

        tmp = output.parent / f".{output.name}.tmp-{os.getpid()}"
        started = time.time()
        started_at = datetime.now(timezone.utc).isoformat()
        log.info("%s: %s -> %s (%d shuffle partitions)", stage.name, ", ".join(map(str, inputs)), output, partitions)
        working = stage.transform(session, inputs, config).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            with spark_progress(session, stage.name):
                observed, totals = _observed_totals(working)
                kept = observed.where(F.col(DROP_REASON).isNull()).select(*DOCUMENT_COLUMNS)
                if output_partitions:
                    kept = kept.coalesce(output_partitions)
                stage.write_kept(kept, tmp, config)
                rejects = working.where(F.col(DROP_REASON).isNotNull()).select(
                    "id",
                    "url",
                    "source",
                    F.col(DROP_REASON).alias("reason"),
                    F.col(DROP_DETAIL).alias("detail"),
                    F.col(BYTES_IN).alias("bytes_in"),
                    F.substring("text", 1, REJECT_PREVIEW_CHARS).alias("text_preview"),
                )
                rejects.coalesce(1).write.parquet(str(tmp / REJECTS_DIR))
                stats = _observed_stats(totals.get)
                stats.update(rejects_stats(tmp / REJECTS_DIR, stage.name))
                stats.update(stage.summarize(working, stats, config))
                stage.write_extras(tmp, config)
                if keep_rejects is not None:
                    _write_full_rejects(working, absolute(location(keep_rejects)))
                    stats["rejects_dir"] = str(absolute(location(keep_rejects)))
        except BaseException:
            _discard_staging(tmp)
            raise
        finally:
            _quietly("release the stage's cached data", working.unpersist, stage.release)

        stats = {
            "stage": stage.name,
            **stats,
            **stage.extra_stats,
            "spark_master": session.sparkContext.master,
            **run_stats(started, started_at, inputs, output, config, fingerprint),
        }
        try:
            publish(tmp, output, stats)
        except BaseException:
            _discard_staging(tmp)
            raise
        stage.finished()
        log.info(
            "%s: %d of %d documents kept in %.1fs",
            stage.name,
            stats["docs_out"],
            stats["docs_in"],
            stats["wall_seconds"],
        )
        return StageResult(stage.name, output, stats, skipped=False)
