"""The Prefect flows: a corpus build and a synthetic-data build, one task per stage.

- One Spark session per flow run, started by the first stage that needs it, stopped at the end
  (none at all when every stage is current).
- Each stage task's cache key is the stage's fingerprint (its inputs, settings and code, the
  one the stage contract writes into ``_SUCCESS``), so a rerun after a failure resumes at the
  failed stage and a changed setting reruns only that stage and what reads its output.
  Prefect's cache records live under ``OUT/.prefect-cache`` and are only trusted while the
  stage's output is complete with that fingerprint; a stage that is current shows as
  ``Cached`` in Prefect's UI.
- A stage is retried (``orchestration.retries``) unless it failed on its input or settings:
  that error would only repeat.
- The stages' own log lines, and Spark's driver log (``OUT/logs/spark.log``), reach Prefect's
  run logs.

Tasks pass paths, never DataFrames.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

# Prefect's ephemeral server sends telemetry heartbeats; offline they only fail (and on
# SQLite they race the server's start-up writes: "database is locked"). Users may re-enable.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger, task
from prefect.cache_policies import CacheKeyFnPolicy
from prefect.logging.handlers import APILogHandler

from flows.incremental import resolve_period
from flows.recipe import Recipe
from flows.registry import is_synth
from flows import report as run_report
from flows.runner import StageFailed, execute_stage, stage_inputs, stage_status
from pipelines.errors import CorpusforgeError
from pipelines.spark import spark_scope
from pipelines.storage import location

CACHE_DIR = ".prefect-cache"
SPARK_LOG = Path("logs") / "spark.log"
FORWARDED_SPARK_LINES = 500
SPARK_LEVELS = {"TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
                "ERROR": logging.ERROR, "FATAL": logging.CRITICAL}


def _retry_unless_input_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry crashes (a lost executor, a full disk, a JVM error), not bad input or settings."""
    return not isinstance(state.data, CorpusforgeError)


def _stage_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    return f"{parameters['name']}-{parameters['fingerprint']}"


class SparkLogTail:
    """The lines Spark's driver appends to its log file while a stage runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.is_file() else 0

    def forward(self, logger: Any, stage: str) -> None:
        if not self.path.is_file():
            return
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        self.offset += len(data)
        entries: list[tuple[int, str]] = []
        for line in data.decode("utf-8", "replace").splitlines():
            fields = line.split(" ", 2)
            if len(fields) == 3 and fields[1] in SPARK_LEVELS:
                entries.append((SPARK_LEVELS[fields[1]], line))
            elif entries:  # a stack trace or message continued on the next line
                entries[-1] = (entries[-1][0], entries[-1][1] + "\n" + line)
        for level, text in entries[:FORWARDED_SPARK_LINES]:
            logger.log(level, "spark (%s): %s", stage, text)
        if len(entries) > FORWARDED_SPARK_LINES:
            logger.info("spark (%s): %d more lines in %s", stage, len(entries) - FORWARDED_SPARK_LINES, self.path)


@task(
    name="stage",
    cache_policy=CacheKeyFnPolicy(cache_key_fn=_stage_cache_key),
    persist_result=True,
    retry_condition_fn=_retry_unless_input_error,
)
def stage_task(
    recipe: Recipe,
    name: str,
    inputs: list[str],
    output: str,
    fingerprint: str,
    force: bool,
    keep_rejects: str | None,
) -> dict[str, Any]:
    """Run one stage (``fingerprint``, computed by the flow, is this task's cache key)."""
    logger = get_run_logger()
    spark_log = SparkLogTail(Path(recipe.spark.log_file)) if recipe.spark.log_file else None
    rejects = Path(keep_rejects) if keep_rejects else None
    try:
        result = execute_stage(recipe, name, [location(p) for p in inputs], location(output), force=force, keep_rejects=rejects)
    finally:
        if spark_log is not None:
            spark_log.forward(logger, name)
    summary = run_report.stage_summary(result)
    if result.skipped:
        logger.info("%s: output is current, skipped (%s)", name, output)
    else:
        logger.info("%s: %d -> %d documents in %.1fs", name, summary["docs_in"], summary["docs_out"], summary["wall_seconds"])
    return summary


@contextmanager
def _stage_logs_to_prefect() -> Iterator[None]:
    """Send the stages' own log records (``corpusforge.*``) to the run's logs in Prefect too."""
    logger = logging.getLogger("corpusforge")
    handler = APILogHandler()
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:  # a served run has no CLI to set it
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _failure(stage: str, exc: Exception) -> StageFailed:
    if isinstance(exc, CorpusforgeError):
        message = str(exc)
        named = message.startswith((f"stage {stage}", f"{stage}:"))
        return StageFailed(message if named else f"stage {stage}: {message}", exit_code=2)
    return StageFailed(f"stage {stage} failed ({type(exc).__name__}: {exc}); see the log above", exit_code=1)


def run_stages(recipe: Recipe, out: Path, force: bool, keep_rejects: str | None) -> list[dict[str, Any]]:
    """The recipe's stages in order, each a task; what each reads: :func:`flows.runner.stage_inputs`."""
    storage = out / CACHE_DIR
    summaries: list[dict[str, Any]] = []
    earlier: list[tuple[str, Path]] = []
    for name in recipe.stages:
        inputs = stage_inputs(recipe, name, earlier)
        output = out / name
        rejects = Path(keep_rejects).resolve() / name if keep_rejects else None
        try:
            status = stage_status(recipe, name, inputs, output, rejects)
        except CorpusforgeError as exc:  # e.g. an input path that does not exist
            raise _failure(name, exc) from exc
        run = stage_task.with_options(
            task_run_name=name,
            retries=recipe.orchestration.retries,
            retry_delay_seconds=recipe.orchestration.retry_delay_seconds,
            result_storage=storage,
            # Run (and record the new result) unless the output on disk is current.
            refresh_cache=force or not status.current,
        )
        state = run(
            recipe, name, [str(p) for p in inputs], str(output), status.fingerprint, force,
            str(rejects) if rejects else None, return_state=True,
        )
        try:
            summary = state.result()
        except Exception as exc:
            raise _failure(name, exc) from exc
        if state.is_completed() and state.name == "Cached":
            summary = {**summary, "skipped": True}
        summaries.append(summary)
        earlier.append((name, output))
    return summaries


def _scheduled_time() -> datetime | None:
    from prefect.runtime import flow_run

    return flow_run.scheduled_start_time if flow_run.id else None


def _build(recipe: Recipe, out_dir: str, force: bool, keep_rejects: str | None) -> dict[str, Any]:
    recipe, out, earlier = resolve_period(recipe, Path(out_dir).resolve(), _scheduled_time())
    logger = get_run_logger()
    if recipe.incremental.period:
        logger.info(
            "incremental build %s in %s; deduplicated against %d earlier build(s)%s",
            recipe.incremental.run, out, len(earlier), (": " + ", ".join(d.name for d in earlier)) if earlier else "",
        )
    if not recipe.spark.log_file:
        recipe = recipe.model_copy(update={"spark": recipe.spark.model_copy(update={"log_file": str(out / SPARK_LOG)})})
    out.mkdir(parents=True, exist_ok=True)
    with _stage_logs_to_prefect(), spark_scope():
        summaries = run_stages(recipe, out, force, keep_rejects)
    report = run_report.write_report(out, recipe.name, summaries)
    run_report.publish_report_artifacts(out, recipe.name)
    from prefect.runtime import flow_run

    return {"output": str(out), "report": str(report), "stages": summaries, "flow_run_id": flow_run.id}


@flow(name="corpusforge-build")
def build_corpus(recipe: Recipe, out_dir: str, force: bool = False, keep_rejects: str | None = None) -> dict[str, Any]:
    """A corpus build: crawl or files → text → language → quality → PII → dedup → token shards.

    ``keep_rejects``: a directory; each stage writes its dropped documents to ``<dir>/<stage>/``.
    """
    return _build(recipe, out_dir, force, keep_rejects)


@flow(name="corpusforge-synth")
def build_synthetic(recipe: Recipe, out_dir: str, force: bool = False) -> dict[str, Any]:
    """A synthetic-data build: self-instruct and dialogues → filters → SFT shards."""
    return _build(recipe, out_dir, force, None)


def flow_for(recipe: Recipe) -> Any:
    """The synthetic-data flow for a recipe of generation stages (and tokenize), else the build."""
    generation_only = all(is_synth(s) or s == "tokenize" for s in recipe.stages) and any(is_synth(s) for s in recipe.stages)
    return build_synthetic if generation_only else build_corpus


def run_build(recipe: Recipe, out_dir: str, force: bool = False, keep_rejects: str | None = None) -> dict[str, Any]:
    if flow_for(recipe) is build_synthetic:
        if keep_rejects:
            raise CorpusforgeError("--keep-rejects is for corpus stages; the generation stages keep their rejects in _rejects/")
        return build_synthetic(recipe, out_dir, force=force)
    return build_corpus(recipe, out_dir, force=force, keep_rejects=keep_rejects)
