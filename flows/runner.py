"""Run one stage of a recipe: the single code path used by `corpusforge stage` and the flows."""

from __future__ import annotations

import errno
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.recipe import Recipe
from flows.registry import is_synth, stage_class
from pipelines.errors import CorpusforgeError, StageInputError
from pipelines.stage import STATS_FILE, StageResult, leftovers, read_success, run_stage, spark_stage_fingerprint
from pipelines.spark import get_spark
from pipelines.storage import is_uri, location
from synth.runner import run_synth_stage, synth_stage_fingerprint, synth_state_dir


class StageFailed(CorpusforgeError):
    """A stage of a build failed; the message names the stage and what went wrong.

    ``exit_code`` 2: its input or settings are at fault; 1: it crashed.
    """

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def stage_inputs(recipe: Recipe, name: str, earlier: list[tuple[str, Path]]) -> list[Path]:
    """What a stage reads in a build, given the (stage, output) pairs that ran before it.

    - A raw-file stage (ingest, ingest-warc, crawl) reads the paths of its section; when the
      section names none and an earlier stage ran, it reads that stage's output (a crawl's
      WARC files for ingest-warc).
    - Generation stages branch off the corpus: self-instruct reads its seed file
      (``self_instruct.seeds``); dialogues take their materials from ``dialogues.materials``,
      else from the latest corpus stage's documents, else run without materials.
    - tokenize reads the latest corpus stage's output and every generation stage's output.
    - Any other stage reads the previous corpus stage's output.
    """
    cls = stage_class(name)
    corpus = [out for stage, out in earlier if not is_synth(stage)]
    synth = [out for stage, out in earlier if is_synth(stage)]
    if name == "self-instruct":
        return []
    if name == "dialogues":
        return [] if recipe.dialogues.materials or not corpus else [corpus[-1]]
    if name == "tokenize" and (corpus or synth):
        return corpus[-1:] + synth
    if cls.reads_raw_files:
        paths = [location(p) for p in getattr(recipe.section(name), "paths", [])]
        if paths:
            return paths
        if corpus:
            return [corpus[-1]]
        if cls.inputs_optional:
            return []
        raise StageInputError(f"stage {name}: no input paths; set {cls.section}.paths in the recipe or pass --in")
    if not corpus:
        raise StageInputError(f"stage {name}: needs the output of an earlier stage as input (--in)")
    return [corpus[-1]]


def execute_stage(
    recipe: Recipe,
    name: str,
    inputs: list[Path],
    output: Path,
    *,
    force: bool = False,
    keep_rejects: Path | None = None,
) -> StageResult:
    stage = stage_class(name)()
    output = location(output)
    if is_uri(output) and (is_synth(name) or not stage.writes_uris):
        raise StageInputError(
            f"stage {name}: writes local or mounted paths only, not a URI like {output} "
            "(see docs/scaling.md for the stages that write to object stores)"
        )
    if is_synth(name):
        return run_synth_stage(stage, inputs, output, recipe.section(name), force=force)
    try:
        return run_stage(
            stage,
            inputs,
            output,
            recipe.section(name),
            lambda: get_spark(recipe.spark),
            force=force,
            keep_rejects=keep_rejects,
        )
    except CorpusforgeError:
        raise
    except Exception as exc:
        full = storage_full(exc, name, output)
        if full is None:
            raise
        raise full from exc


# A write that failed for want of room: the OS's own words for it, as Python and Java report them.
FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_WRITING_ROWS_TO = re.compile(r"writing rows to (?:file:)?(\S+?)\.?(?:\s|$)")  # Spark's TASK_WRITE_FAILED
_OS_ERROR_PATH = re.compile(r"\[Errno (\d+)\] [^\n]*?: '([^'\n]+)'")  # str() of an OSError with a filename


def storage_full(exc: BaseException, stage: str, output: Path) -> OSError | None:
    """For a stage that failed because a disk (or a quota, or a file-size limit) was full: an
    ``OSError`` with that errno whose message names the stage and the path it was writing, instead
    of the hundreds of lines of Java stack trace Spark wraps it in. None for any other failure.

    Still an OSError, not a :class:`CorpusforgeError`: a build retries it like any crash.
    """
    seen, chain = set(), []
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    text = "\n".join(str(e) for e in chain)
    for code in FULL_ERRNOS:
        named = [e for e in chain if isinstance(e, OSError) and e.errno == code]
        if not named and os.strerror(code) not in text:
            continue
        path = next((e.filename for e in named if e.filename), None)
        if path is None:
            found = [m.group(2) for m in _OS_ERROR_PATH.finditer(text) if int(m.group(1)) == code]
            found = found or _WRITING_ROWS_TO.findall(text)
            path = found[0] if found else None
        if path is not None:
            where = path
        elif named:  # the driver's own writes (the stage contract's files) go into the output's directory
            where = str(output)
        else:
            where = f"{output} (or Spark's scratch space, spark.local.dir)"
        return OSError(code, f"stage {stage}: {os.strerror(code)} while writing {where}; no output was published")
    return None


def stage_fingerprint_for(recipe: Recipe, name: str, inputs: list[Path], keep_rejects: Path | None = None) -> str:
    """The fingerprint the stage's run will have (:func:`execute_stage` computes the same one)."""
    stage = stage_class(name)()
    resolved = [Path(p).resolve() for p in inputs]
    if is_synth(name):
        return synth_stage_fingerprint(stage, resolved, recipe.section(name))
    return spark_stage_fingerprint(stage, resolved, recipe.section(name), keep_rejects)


@dataclass
class StageStatus:
    """Whether a stage's finished output is current, and if not, why it must run."""

    fingerprint: str
    current: bool
    reason: str


def _changed_keys(old: Any, new: Any, prefix: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [k for key in keys for k in _changed_keys(old.get(key), new.get(key), f"{prefix}.{key}")]
    return [] if old == new else [prefix]


def stage_status(recipe: Recipe, name: str, inputs: list[Path], output: Path, keep_rejects: Path | None = None) -> StageStatus:
    """Compare the run a stage would make with its finished output, if any (reads no data)."""
    fingerprint = stage_fingerprint_for(recipe, name, inputs, keep_rejects)
    done = read_success(output)
    if done is None:
        unfinished = bool(leftovers(output)) or synth_state_dir(output).exists()
        return StageStatus(fingerprint, False, "an interrupted run to resume" if unfinished else "no finished output")
    if done.get("fingerprint") == fingerprint:
        return StageStatus(fingerprint, True, "output is current")
    try:
        earlier = json.loads((output / STATS_FILE).read_text()).get("config", {})
    except (OSError, ValueError):
        earlier = {}
    section = stage_class(name).section
    changed = _changed_keys(earlier, recipe.section(name).model_dump(mode="json"), section)
    if changed:
        shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        return StageStatus(fingerprint, False, f"settings changed: {shown}")
    return StageStatus(fingerprint, False, "inputs or code changed")


@dataclass
class PlannedStage:
    name: str
    inputs: list[Path]
    output: Path
    action: str  # "run", "skip" or "fail"
    reason: str


def plan_build(recipe: Recipe, out: Path, *, force: bool = False, keep_rejects: Path | None = None) -> list[PlannedStage]:
    """What a build would do, stage by stage, without running anything (``--dry-run``).

    A stage that reads the output of a stage that will run must run too; the others are
    compared with their finished output (:func:`stage_status`).
    """
    steps: list[PlannedStage] = []
    earlier: list[tuple[str, Path]] = []
    will_change: dict[Path, str] = {}
    for name in recipe.stages:
        output = out / name
        try:
            inputs = stage_inputs(recipe, name, earlier)
            changed_upstream = [will_change[p] for p in inputs if p in will_change]
            if force:
                action, reason = "run", "--force"
            elif changed_upstream:
                action, reason = "run", f"its input changes ({', '.join(changed_upstream)} runs)"
            else:
                status = stage_status(recipe, name, inputs, output, keep_rejects / name if keep_rejects else None)
                action, reason = ("skip", status.reason) if status.current else ("run", status.reason)
        except CorpusforgeError as exc:
            inputs, action, reason = [], "fail", str(exc)
        steps.append(PlannedStage(name, inputs, output, action, reason))
        if action != "skip":
            will_change[output] = name
        earlier.append((name, output))
    return steps
