"""Seed tasks for self-instruct: the file format, its parser, and the bundled set.

Format (JSON Lines, the Self-Instruct repository's ``seed_tasks.jsonl``): one task per line,
an object with

- ``instruction`` (required, a non-empty string): what the task asks;
- ``instances`` (optional): a list of ``{"input": str, "output": str}`` examples (input may
  be empty); tasks with an instance also serve as few-shot examples for instance generation;
- ``is_classification`` (optional, default false): whether the output is one of a few labels;
- ``id`` and ``name`` (optional): an id is derived from the instruction when missing.

Blank lines and lines starting with ``#`` are ignored. A malformed line (bad JSON, a
missing or empty instruction, wrong types, a duplicate instruction) is skipped and reported
with ``file:line``; a file with no usable task is an error. The bundled set is the 175
human-written tasks of Self-Instruct (``synth/data/``, Apache-2.0).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.errors import StageInputError

BUNDLED_SEEDS = Path(__file__).parent / "data" / "self_instruct_seed_tasks.jsonl"
MAX_SEED_FILE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Instance:
    input: str
    output: str


@dataclass(frozen=True)
class Task:
    id: str
    instruction: str
    instances: tuple[Instance, ...] = ()
    is_classification: bool = False
    origin: str = "seed"  # "seed" (human) or "machine"


@dataclass
class SeedFile:
    tasks: list[Task]
    skipped: list[str] = field(default_factory=list)  # "file:line: why"


def task_id(instruction: str, prefix: str = "task") -> str:
    return f"{prefix}-{hashlib.sha256(instruction.encode()).hexdigest()[:16]}"


def _parse_line(raw: str, where: str) -> Task:
    try:
        record = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    instruction = record.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError("missing or empty 'instruction'")
    instances = []
    raw_instances = record.get("instances", [])
    if not isinstance(raw_instances, list):
        raise ValueError("'instances' must be a list")
    for number, item in enumerate(raw_instances):
        if not isinstance(item, dict) or not isinstance(item.get("output", None), str):
            raise ValueError(f"instance {number} must be an object with a string 'output'")
        value = item.get("input", "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ValueError(f"instance {number}: 'input' must be a string")
        instances.append(Instance(value.strip(), item["output"].strip()))
    classification = record.get("is_classification", False)
    if not isinstance(classification, bool):
        raise ValueError("'is_classification' must be true or false")
    identifier = record.get("id")
    if identifier is not None and not isinstance(identifier, str):
        identifier = str(identifier)
    return Task(
        id=identifier or task_id(instruction.strip(), "seed"),
        instruction=instruction.strip(),
        instances=tuple(instances),
        is_classification=classification,
    )


def read_seed_file(path: Path) -> SeedFile:
    """Parse a seed file; bad lines are skipped and listed, an unusable file raises StageInputError."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise StageInputError(f"{path}: cannot read the seed file ({exc.strerror or exc})") from exc
    if size > MAX_SEED_FILE_BYTES:
        raise StageInputError(f"{path}: seed file of {size:,} bytes is larger than {MAX_SEED_FILE_BYTES:,}")
    result = SeedFile(tasks=[])
    seen: set[str] = set()
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            where = f"{path}:{number}"
            text = line.decode("utf-8", "replace").strip()
            if not text or text.startswith("#"):
                continue
            try:
                task = _parse_line(text, where)
            except ValueError as exc:
                result.skipped.append(f"{where}: {exc}")
                continue
            key = " ".join(task.instruction.lower().split())
            if key in seen:
                result.skipped.append(f"{where}: duplicate instruction")
                continue
            seen.add(key)
            result.tasks.append(task)
    if not result.tasks:
        details = "; ".join(result.skipped[:3]) or "the file is empty"
        raise StageInputError(f"{path}: no usable seed task ({details})")
    return result
