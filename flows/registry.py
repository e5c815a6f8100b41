"""Every stage a recipe can name, in pipeline order: the Spark corpus stages
(:mod:`pipelines.registry`), then the generation stages (:mod:`synth`), then tokenize."""

from __future__ import annotations

from typing import Any

from pipelines.registry import STAGES as CORPUS_STAGES
from synth.dialogues import DialoguesStage
from synth.runner import SynthStage
from synth.self_instruct import SelfInstructStage

_corpus = [name for name in CORPUS_STAGES if name != "tokenize"]
STAGES: dict[str, type[Any]] = {
    **{name: CORPUS_STAGES[name] for name in _corpus},
    SelfInstructStage.name: SelfInstructStage,
    DialoguesStage.name: DialoguesStage,
    "tokenize": CORPUS_STAGES["tokenize"],
}


def stage_class(name: str) -> type[Any]:
    try:
        return STAGES[name]
    except KeyError:
        raise KeyError(f"unknown stage '{name}'; known stages: {', '.join(STAGES)}") from None


def is_synth(name: str) -> bool:
    return issubclass(stage_class(name), SynthStage)


def can_start(name: str) -> bool:
    """Whether a build may begin with this stage (it reads raw files or needs no input)."""
    cls = stage_class(name)
    return bool(cls.reads_raw_files or cls.inputs_optional)
