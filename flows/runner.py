"""Run one stage of a recipe: the single code path used by `corpusforge stage` and the flows."""

from __future__ import annotations

from pathlib import Path

from flows.recipe import Recipe
from flows.registry import is_synth, stage_class
from pipelines.errors import StageInputError
from pipelines.stage import StageResult, run_stage
from pipelines.spark import get_spark


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
        paths = [Path(p) for p in getattr(recipe.section(name), "paths", [])]
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
    if is_synth(name):
        from synth.runner import run_synth_stage

        return run_synth_stage(stage, inputs, output, recipe.section(name), force=force)
    return run_stage(
        stage,
        inputs,
        output,
        recipe.section(name),
        lambda: get_spark(recipe.spark),
        force=force,
        keep_rejects=keep_rejects,
    )
