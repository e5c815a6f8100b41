"""Run one stage of a recipe: the single code path used by `corpusforge stage` and the flows."""

from __future__ import annotations

from pathlib import Path

from flows.recipe import Recipe
from pipelines.errors import StageInputError
from pipelines.registry import stage_class
from pipelines.stage import StageResult, run_stage
from pipelines.spark import get_spark


def stage_inputs(recipe: Recipe, name: str, previous_output: Path | None) -> list[Path]:
    """What a stage reads in a build.

    A raw-file stage (ingest, ingest-warc, crawl) reads the paths of its section; when the
    section names none and an earlier stage ran, it reads that stage's output (a crawl's WARC
    files for ingest-warc). Any other stage reads the previous output.
    """
    cls = stage_class(name)
    if cls.reads_raw_files:
        paths = [Path(p) for p in getattr(recipe.section(name), "paths", [])]
        if paths:
            return paths
        if previous_output is not None:
            return [previous_output]
        if cls.inputs_optional:
            return []
        raise StageInputError(f"stage {name}: no input paths; set {cls.section}.paths in the recipe or pass --in")
    if previous_output is None:
        raise StageInputError(f"stage {name}: needs the output of an earlier stage as input (--in)")
    return [previous_output]


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
    return run_stage(
        stage,
        inputs,
        output,
        recipe.section(name),
        lambda: get_spark(recipe.spark),
        force=force,
        keep_rejects=keep_rejects,
    )
