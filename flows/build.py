"""The Prefect flow of a corpus build: one task per stage, one Spark session per flow run.

Tasks pass paths, never DataFrames. Skipping finished stages is the stage contract's job
(fingerprints in ``_SUCCESS``), so Prefect's own result cache is off.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# Prefect's ephemeral server sends telemetry heartbeats; offline they only fail (and on
# SQLite they race the server's start-up writes: "database is locked"). Users may re-enable.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.recipe import Recipe
from flows.report import stage_summary, write_report
from flows.runner import execute_stage, stage_inputs
from pipelines.spark import spark_scope


@task(name="stage", cache_policy=NO_CACHE)
def stage_task(
    recipe: Recipe, name: str, inputs: list[str], output: str, force: bool, keep_rejects: str | None
) -> dict[str, Any]:
    rejects = Path(keep_rejects) if keep_rejects else None
    result = execute_stage(recipe, name, [Path(p) for p in inputs], Path(output), force=force, keep_rejects=rejects)
    summary = stage_summary(result)
    logger = get_run_logger()
    if result.skipped:
        logger.info("%s: output is current, skipped (%s)", name, output)
    else:
        logger.info("%s: %d -> %d documents in %.1fs", name, summary["docs_in"], summary["docs_out"], summary["wall_seconds"])
    return summary


@flow(name="corpusforge-build")
def build_corpus(recipe: Recipe, out_dir: str, force: bool = False, keep_rejects: str | None = None) -> dict[str, Any]:
    """Run the recipe's stages in order; what each reads: :func:`flows.runner.stage_inputs`.

    ``keep_rejects``: a directory; each stage writes its dropped documents to ``<dir>/<stage>/``.
    """
    out = Path(out_dir).resolve()
    summaries: list[dict[str, Any]] = []
    earlier: list[tuple[str, Path]] = []
    with spark_scope():
        for name in recipe.stages:
            inputs = stage_inputs(recipe, name, earlier)
            output = out / name
            summaries.append(
                stage_task.with_options(task_run_name=name)(
                    recipe,
                    name,
                    [str(p) for p in inputs],
                    str(output),
                    force,
                    str(Path(keep_rejects).resolve() / name) if keep_rejects else None,
                )
            )
            earlier.append((name, output))
    report = write_report(out, recipe.name, summaries)
    return {"output": str(out), "report": str(report), "stages": summaries}
