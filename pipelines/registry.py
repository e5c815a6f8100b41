"""Stage names -> stage classes, in pipeline order."""

from __future__ import annotations

from pipelines.ingest import IngestStage
from pipelines.stage import Stage

STAGES: dict[str, type[Stage]] = {cls.name: cls for cls in (IngestStage,)}


def stage_class(name: str) -> type[Stage]:
    try:
        return STAGES[name]
    except KeyError:
        raise KeyError(f"unknown stage '{name}'; known stages: {', '.join(STAGES)}") from None
