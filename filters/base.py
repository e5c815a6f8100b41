"""The shape every document filter and annotator shares.

A filter *computes signals* (numbers about a document) and *decides* from them, in two
separate steps: the signals are stored in the document's ``annotations`` (namespaced
``<filter>.<signal>``), so a threshold can be changed later without recomputing anything
("store scores, decide later"), and every drop names the filter and the rule that made it.

Pure Python: no Spark, no Prefect. ``pipelines`` and ``synth`` both use these classes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class FilterConfig(BaseModel):
    """Base of every filter's settings (a section of the recipe)."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class Verdict:
    """What a filter said about one document."""

    reason: str | None  # None: keep; else "<filter>:<rule>", e.g. "gopher_quality:word_count"
    signals: dict[str, float] = field(default_factory=dict)  # already namespaced "<filter>.<signal>"
    text: str | None = None  # set only by filters that rewrite the text (e.g. C4 line removal)

    @property
    def keep(self) -> bool:
        return self.reason is None


class DocumentFilter(ABC, Generic[ConfigT]):
    """Compute signals for a text, then decide keep or drop from those signals alone."""

    name: ClassVar[str]
    Config: ClassVar[type[FilterConfig]]

    def __init__(self, config: ConfigT | None = None) -> None:
        self.config: ConfigT = config if config is not None else self.Config()  # type: ignore[assignment]

    @abstractmethod
    def signals(self, text: str, lang: str | None = None) -> dict[str, float]:
        """Raw measurements, un-namespaced (``{"word_count": 312.0, ...}``)."""

    @abstractmethod
    def decide(self, signals: dict[str, float], lang: str | None = None) -> str | None:
        """The first rule the signals break (``"word_count"``), or None to keep."""

    def rewrite(self, text: str, lang: str | None = None) -> str:
        """Filters that clean text (drop lines, …) override this; the default keeps the text."""
        return text

    def __call__(self, text: str, lang: str | None = None) -> Verdict:
        new_text = self.rewrite(text, lang)
        raw = self.signals(new_text, lang)
        rule = self.decide(raw, lang)
        return Verdict(
            reason=None if rule is None else f"{self.name}:{rule}",
            signals={f"{self.name}.{k}": float(v) for k, v in raw.items()},
            text=None if new_text is text else new_text,
        )
