"""How a synth stage runs: partitions generated one after another, each finished partition
kept, the stage output assembled under the same contract as the Spark stages.

Why not Spark tasks: generation is bound by one model (a GPU, or 2 CPU cores feeding one
copy of a model); Spark workers would each load their own copy and fight over the device.
The scale path is the backend (vLLM's continuous batching, or many requests in flight to
an OpenAI-compatible server), not more Python processes.

Contract (shared with :mod:`pipelines.stage`): the output directory holds ``part-*.parquet``
(conversation records, ``docs/schema.md``), ``_rejects/`` (id, url, source, reason, detail,
bytes_in, text_preview), ``_stats.json`` and, written last, ``_SUCCESS`` with the stage's
fingerprint (config, inputs, code, model identity); a rerun with the same fingerprint is
skipped. Until the output is complete, finished partitions live in ``.<out>.synth-state/``
(each written to a temporary directory and renamed): a rerun after a crash or a ``kill -9``
replays them (a stage whose later partitions depend on earlier ones, like self-instruct's
task pool, restores its state from them) and generates only what is missing, with the same
seeds as an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipelines.errors import StageInputError
from pipelines.schema import CONVERSATION_SCHEMA
from pipelines.stage import (
    REJECT_PREVIEW_CHARS,
    REJECTS_DIR,
    StageResult,
    add_length_histograms,
    current_result,
    hash_json,
    input_fingerprint,
    length_histogram,
    output_lock,
    publish,
    rejects_stats,
    remove_leftovers,
    run_stats,
    stage_fingerprint,
)
from pipelines.storage import write_text
from synth.backends import Backend, Generation, GenerationConfig, Message, SamplingParams, backend_identity, make_backend

log = logging.getLogger("corpusforge.synth")

REJECT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("url", pa.string()),
        ("source", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("bytes_in", pa.int64()),
        ("text_preview", pa.string()),
    ]
)
PARTITION_FILE = "partition.json"
RECORDS_FILE = "records.parquet"
REJECTS_FILE = "rejects.parquet"


def conversation_bytes(messages: Sequence[Message]) -> int:
    return sum(len(m["content"].encode("utf-8", "surrogatepass")) for m in messages)


@dataclass
class Partition:
    """What one partition produced."""

    records: list[dict[str, Any]] = field(default_factory=list)  # CONVERSATION_SCHEMA rows
    rejects: list[dict[str, Any]] = field(default_factory=list)  # id, source, reason, detail, text
    counters: dict[str, int] = field(default_factory=dict)  # stage-specific counts, summed over partitions
    state: dict[str, Any] = field(default_factory=dict)  # what later partitions need (JSON)

    def reject(self, record_id: str, source: str, reason: str, detail: str, text: str) -> None:
        self.rejects.append({"id": record_id, "source": source, "reason": reason, "detail": detail, "text": text})

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n


@dataclass
class Meter:
    """Generation counts and time, for the stage stats and the progress bar."""

    requests: int = 0
    failed_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    generate_seconds: float = 0.0

    def add(self, other: "Meter | dict[str, Any]") -> None:
        values = other if isinstance(other, dict) else vars(other)
        for key in vars(self):
            setattr(self, key, getattr(self, key) + values.get(key, 0))

    def report(self) -> dict[str, Any]:
        seconds = self.generate_seconds or float("nan")
        return {
            **vars(self),
            "generate_seconds": round(self.generate_seconds, 3),
            "prompt_tokens_per_s": round(self.prompt_tokens / seconds, 1) if self.generate_seconds else None,
            "completion_tokens_per_s": round(self.completion_tokens / seconds, 1) if self.generate_seconds else None,
        }


class MeteredBackend:
    """A backend that counts what goes through it and feeds the progress bar."""

    def __init__(self, backend: Backend, config: GenerationConfig, on_tokens: Any = None) -> None:
        self.backend = backend
        self.config = config
        self.meter = Meter()
        self.on_tokens = on_tokens

    @property
    def model(self) -> str:
        return self.backend.model

    def generate(self, conversations: Sequence[Sequence[Message]], seed: int, **sampling: Any) -> list[Generation]:
        """Generate in batches of ``generation.batch_size``; ``sampling`` overrides the config's."""
        params: SamplingParams = self.config.sampling(**sampling)
        results: list[Generation] = []
        size = self.config.batch_size
        for offset in range(0, len(conversations), size):
            batch = conversations[offset : offset + size]
            started = time.perf_counter()
            generations = self.backend.generate(batch, params, seed + offset)
            self.meter.generate_seconds += time.perf_counter() - started
            self.meter.requests += len(batch)
            for generation in generations:
                self.meter.failed_requests += 0 if generation.ok else 1
                self.meter.prompt_tokens += generation.prompt_tokens
                self.meter.completion_tokens += generation.completion_tokens
            if self.on_tokens is not None:
                self.on_tokens(self.meter)
            results.extend(generations)
        return results


class SynthStage(ABC):
    """A generation stage: ``run_partition`` is called for index 0, 1, … while ``wants_partition``."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Config: ClassVar[type[BaseModel]]
    section: ClassVar[str] = ""
    reads_raw_files: ClassVar[bool] = False
    inputs_optional: ClassVar[bool] = True
    produces_conversations: ClassVar[bool] = True
    code_modules: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "name", None) and not cls.__dict__.get("section"):
            cls.section = cls.name.replace("-", "_")

    def __init__(self) -> None:
        self.extra_stats: dict[str, Any] = {}

    def prepare(self, inputs: list[Path], config: Any) -> None:
        """Read and check the inputs (before any model is loaded); raise StageInputError if unusable."""

    @abstractmethod
    def wants_partition(self, index: int, config: Any) -> bool:
        """Whether partition ``index`` should run (given the partitions before it)."""

    def restore(self, index: int, state: dict[str, Any]) -> None:
        """Take in the state of finished partition ``index`` (replayed on resume, or just generated)."""

    @abstractmethod
    def run_partition(self, index: int, backend: MeteredBackend, config: Any) -> Partition:
        """Generate and filter partition ``index``."""

    def planned_units(self, config: Any) -> int | None:
        """How many units (docs_in) the whole stage will consider, for the progress bar."""
        return None

    def fingerprint_inputs(self, inputs: list[Path], config: Any) -> list[Path]:
        """Files besides the inputs whose content decides the output (a seed file named in the
        recipe); the decontamination eval sets are added by the runner. Known from the
        settings alone: no :meth:`prepare` needed."""
        return []

    def summarize(self, counters: dict[str, int], stats: dict[str, Any], config: Any) -> dict[str, Any]:
        return {}


def _write_partition(state_dir: Path, index: int, part: Partition, meter: Meter) -> None:
    final = state_dir / f"part-{index:05d}"
    tmp = state_dir / f".part-{index:05d}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(part.records, schema=CONVERSATION_SCHEMA), tmp / RECORDS_FILE)
    rejects = [
        {
            "id": r["id"],
            "url": None,
            "source": r["source"],
            "reason": r["reason"],
            "detail": r["detail"],
            "bytes_in": len(r["text"].encode("utf-8", "surrogatepass")),
            "text_preview": r["text"][:REJECT_PREVIEW_CHARS],
        }
        for r in part.rejects
    ]
    pq.write_table(pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA), tmp / REJECTS_FILE)
    sizes_out = [conversation_bytes(r["messages"]) for r in part.records]
    bytes_out = sum(sizes_out)
    info = {
        "index": index,
        # Every unit ends as a record or a reject, so the funnel adds up: in = out + dropped.
        "docs_in": len(part.records) + len(part.rejects),
        "docs_out": len(part.records),
        "bytes_out": bytes_out,
        "bytes_in": bytes_out + sum(r["bytes_in"] for r in rejects),
        "length_histogram": length_histogram(sizes_out + [r["bytes_in"] for r in rejects], sizes_out),
        "counters": part.counters,
        "state": part.state,
        "generation": vars(meter),
    }
    write_text(tmp / PARTITION_FILE, json.dumps(info) + "\n")
    os.rename(tmp, final)


def _read_partition_info(state_dir: Path, index: int) -> dict[str, Any] | None:
    try:
        return json.loads((state_dir / f"part-{index:05d}" / PARTITION_FILE).read_text())
    except (OSError, ValueError):
        return None


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def synth_state_dir(output: Path) -> Path:
    """Where a generation stage keeps its finished partitions until ``output`` is complete."""
    return output.parent / f".{output.name}.synth-state"


def synth_stage_fingerprint(stage: SynthStage, inputs: list[Path], config: Any) -> str:
    """The fingerprint :func:`run_synth_stage` gives this run (``inputs`` resolved), known
    without reading the inputs or loading the model: a flow's cache key, ``--dry-run``'s check."""
    files = stage.fingerprint_inputs(inputs, config) + [Path(p) for p in config.filters.decontamination.eval_sets]
    options = {"model": backend_identity(config.generation), "files": [input_fingerprint(p.resolve()) for p in files]}
    return stage_fingerprint(stage, inputs, config, options)


def run_synth_stage(
    stage: SynthStage,
    inputs: list[Path],
    output: Path,
    config: Any,
    *,
    force: bool = False,
    backend_factory: Any = make_backend,
) -> StageResult:
    """Run ``stage`` under the contract above; skip it if its finished output is current.

    ``backend_factory(generation_config) -> Backend`` is called only when a partition must be
    generated, so a current or fully resumable stage loads no model.
    """
    output = output.resolve()
    inputs = [Path(p).resolve() for p in inputs]
    if not inputs and not stage.inputs_optional:
        raise StageInputError(f"stage {stage.name}: no input given")
    stage.prepare(inputs, config)
    generation: GenerationConfig = config.generation
    output.parent.mkdir(parents=True, exist_ok=True)
    fingerprint = synth_stage_fingerprint(stage, inputs, config)
    state_dir = synth_state_dir(output)

    with output_lock(output):
        current = None if force else current_result(stage.name, output, fingerprint)
        if current is not None:
            return current
        remove_leftovers(output)
        key_file = state_dir / "fingerprint"
        if force or not key_file.is_file() or key_file.read_text().strip() != fingerprint:
            if state_dir.exists():
                log.info("%s: settings or inputs changed; discarding the partitions of an earlier run", stage.name)
            shutil.rmtree(state_dir, ignore_errors=True)
            state_dir.mkdir(parents=True)
            write_text(key_file, fingerprint + "\n")
        for leftover in state_dir.glob(".part-*.tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)

        started = time.time()
        started_at = datetime.now(timezone.utc).isoformat()
        console = Console(stderr=True)
        total_meter = Meter()
        counters: dict[str, int] = {}
        docs_in = docs_out = bytes_in = bytes_out = 0
        # None once a partition of an older run, written without one, is reused.
        lengths: dict[str, Any] | None = length_histogram([], [])
        resumed = 0
        backend: MeteredBackend | None = None
        index = 0
        try:
            with _progress(console) as progress:
                bar = progress.add_task(stage.name, total=stage.planned_units(config), rate="")
                while stage.wants_partition(index, config):
                    info = _read_partition_info(state_dir, index)
                    if info is None:
                        if backend is None:
                            backend = MeteredBackend(
                                backend_factory(generation),
                                generation,
                                on_tokens=lambda m: progress.update(
                                    bar, rate=f"{(m.prompt_tokens + m.completion_tokens) / max(m.generate_seconds, 1e-9):,.0f} tok/s"
                                ),
                            )
                            backend.backend.check()
                        before = Meter(**vars(backend.meter))
                        part = stage.run_partition(index, backend, config)
                        meter = Meter(**vars(backend.meter))
                        for key in vars(meter):
                            setattr(meter, key, getattr(meter, key) - getattr(before, key))
                        _write_partition(state_dir, index, part, meter)
                        info = _read_partition_info(state_dir, index)
                        assert info is not None
                        log.info(
                            "%s: partition %d: %d in, %d kept, %d dropped; %s completion tok/s",
                            stage.name,
                            index,
                            info["docs_in"],
                            info["docs_out"],
                            len(part.rejects),
                            meter.report()["completion_tokens_per_s"],
                        )
                    else:
                        resumed += 1
                    stage.restore(index, info["state"])
                    total_meter.add(info["generation"])
                    for key, value in info["counters"].items():
                        counters[key] = counters.get(key, 0) + value
                    docs_in += info["docs_in"]
                    docs_out += info["docs_out"]
                    bytes_in += info["bytes_in"]
                    bytes_out += info["bytes_out"]
                    if lengths is not None and "length_histogram" in info:
                        lengths = add_length_histograms(lengths, info["length_histogram"])
                    else:
                        lengths = None
                    progress.update(bar, advance=info["docs_in"])
                    index += 1
        finally:
            if backend is not None:
                backend.backend.close()
        if resumed:
            log.info("%s: resumed: %d finished partitions reused, %d generated", stage.name, resumed, index - resumed)

        tmp = output.parent / f".{output.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / REJECTS_DIR).mkdir(parents=True)
        for i in range(index):
            part_dir = state_dir / f"part-{i:05d}"
            shutil.copyfile(part_dir / RECORDS_FILE, tmp / f"part-{i:05d}.parquet")
            shutil.copyfile(part_dir / REJECTS_FILE, tmp / REJECTS_DIR / f"part-{i:05d}.parquet")
        stats: dict[str, Any] = {
            "stage": stage.name,
            "docs_in": docs_in,
            "docs_out": docs_out,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            **rejects_stats(tmp / REJECTS_DIR, stage.name),
        }
        if lengths is not None:
            stats["length_histogram"] = lengths
        stats["generation"] = {**backend_identity(generation), **total_meter.report()}
        stats["counts"] = dict(sorted(counters.items()))
        stats.update(stage.summarize(counters, stats, config))
        stats.update(stage.extra_stats)
        stats["partitions"] = {"total": index, "resumed": resumed}
        stats.update(run_stats(started, started_at, inputs, output, config, fingerprint))
        publish(tmp, output, stats)
        shutil.rmtree(state_dir, ignore_errors=True)
        log.info("%s: %d of %d kept in %.1fs", stage.name, docs_out, docs_in, stats["wall_seconds"])
        return StageResult(stage.name, output, stats, skipped=False)


def stable_seed(*parts: Any) -> int:
    """A 63-bit seed from the parts (the same parts give the same seed in every process)."""
    return int(hash_json(list(parts))[:15], 16)
