"""The filters every generated text goes through, built from :mod:`filters` (pure Python).

One :class:`TextChecks` per stage run: language (fastText lid.176, the corpus stages'
model), repetition (Gopher's rules), refusals and AI disclaimers, and n-gram overlap with
the user's evaluation sets. Each check answers keep (None) or a drop reason named
``<filter>:<rule>`` with a detail, like the corpus filters.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from filters.decontam import DecontamConfig, Decontaminator, EvalSetError
from filters.instructions import RefusalFilter
from filters.quality import GopherRepetition
from pipelines.errors import StageInputError

Drop = tuple[str, str]  # (reason, detail)


class SynthFilterConfig(BaseModel):
    """``<stage>.filters``: what generated text must pass."""

    model_config = ConfigDict(extra="forbid")

    lang: str | None = Field("en", description="expected language (ISO 639-1); null turns the language check off")
    min_lang_score: float = Field(0.5, ge=0, le=1, description="lid.176 score the expected language needs")
    langid_min_chars: int = Field(
        24, ge=1, description="shorter texts are not language-checked (lid.176 is unreliable on a few words)"
    )
    repetition: bool = Field(True, description="drop texts that break Gopher's repetition rules")
    refusals: bool = Field(True, description="drop refusals and AI disclaimers")
    decontamination: DecontamConfig = Field(default_factory=DecontamConfig)


class TextChecks:
    def __init__(self, config: SynthFilterConfig) -> None:
        self.config = config
        self.repetition = GopherRepetition()
        self.refusal = RefusalFilter()

    @cached_property
    def langid(self):  # type: ignore[no-untyped-def]
        from filters.langid import LanguageIdentifier

        return LanguageIdentifier()

    @cached_property
    def decontaminator(self) -> Decontaminator | None:
        if not self.config.decontamination.eval_sets:
            return None
        try:
            return Decontaminator(self.config.decontamination)
        except EvalSetError as exc:
            raise StageInputError(f"filters.decontamination: {exc}") from None

    def decontamination_stats(self) -> dict[str, Any]:
        """Eval-set items loaded and malformed lines skipped; loads the eval sets (call it
        before the model loads, so a bad eval set fails first)."""
        found = self.decontaminator
        if found is None:
            return {}
        return {"eval_items": found.items, "skipped": len(found.skipped), "skipped_lines": found.skipped[:20]}

    def language(self, text: str) -> Drop | None:
        expected = self.config.lang
        if expected is None or len(text.strip()) < self.config.langid_min_chars:
            return None
        label, score = self.langid.predict_one(text)
        if label != expected or score < self.config.min_lang_score:
            return "langid:lang", f"expected {expected}, got {label} ({score:.2f})"
        return None

    def text(self, text: str, *, refusal: bool = True) -> Drop | None:
        """Language, repetition and (for replies) refusal checks."""
        found = self.language(text)
        if found:
            return found
        if self.config.repetition:
            verdict = self.repetition(text)
            if not verdict.keep:
                return str(verdict.reason), "repeated n-grams or lines"
        if refusal and self.config.refusals:
            verdict = self.refusal(text)
            if not verdict.keep:
                return str(verdict.reason), text[:120]
        return None

    def contamination(self, text: str) -> Drop | None:
        if self.decontaminator is None:
            return None
        hit = self.decontaminator.check(text)
        if hit is None:
            return None
        name, ngram = hit
        return "decontam:eval_overlap", f"shares '{ngram}' with {name}"
