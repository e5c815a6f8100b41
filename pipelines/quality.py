"""Stage ``quality``: the Gopher, C4 and FineWeb filter chain from ``filters.quality``.

Every kept document carries the signals of every filter in ``annotations``; a dropped one
names the first filter and rule that dropped it (``gopher_quality:word_count``), and
``_stats.json`` lists drops per filter in chain order.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, create_model, field_validator

from filters.quality import FILTERS, FilterChain
from pipelines.docstage import BatchProcessor, DocumentStage, DocumentStageConfig, Rows, merge_annotations, record_name
from pipelines.schema import DROP_DETAIL, DROP_REASON


class _QualityBase(DocumentStageConfig):
    filters: list[str] = Field(default_factory=lambda: list(FILTERS), description="filters to run, in order")
    annotate_all: bool = Field(
        False,
        description="compute every filter's signals even for dropped documents (slower; for threshold studies)",
    )

    @field_validator("filters")
    @classmethod
    def _known_filters(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in FILTERS]
        if unknown:
            raise ValueError(f"unknown filter(s) {', '.join(unknown)}; known: {', '.join(FILTERS)}")
        return names


# One sub-section per filter holding its thresholds: quality.gopher_quality.min_words, ...
QualityConfig = create_model(  # type: ignore[call-overload]
    "QualityConfig",
    __base__=_QualityBase,
    __doc__="Recipe section ``quality``.",
    **{name: (cls.Config, Field(default_factory=cls.Config)) for name, cls in FILTERS.items()},
)


def build_chain(settings: dict[str, Any]) -> FilterChain:
    return FilterChain([FILTERS[name](FILTERS[name].Config(**settings[name])) for name in settings["filters"]])


class QualityStage(DocumentStage):
    name = "quality"
    summary = "Gopher quality + repetition, C4 and FineWeb filters; signals kept as annotations"
    Config = QualityConfig
    code_modules = ("filters.quality", "filters.text", "filters.base")
    reads = ("text", "lang", "annotations")
    writes = ("text", "annotations")

    def batch_processor(self, config: BaseModel) -> BatchProcessor:
        settings = config.model_dump()

        def process(rows: Rows) -> None:
            chain = build_chain(settings)
            for row in rows:
                verdict = chain(row["text"], row["lang"], annotate_all=settings["annotate_all"])
                if verdict.text is not None:
                    row["text"] = verdict.text
                merge_annotations(row, verdict.signals)
                if verdict.reason:
                    filter_name, _, rule = verdict.reason.partition(":")
                    value = verdict.signals.get(f"{filter_name}.{rule}")
                    row[DROP_REASON] = verdict.reason
                    row[DROP_DETAIL] = f"{record_name(row)}: {verdict.reason}" + (
                        f" = {value:g}" if value is not None else ""
                    )

        return process

    def summarize(self, working: Any, stats: dict[str, Any], config: BaseModel) -> dict[str, Any]:
        per_filter = []
        for name in config.filters:  # type: ignore[attr-defined]
            rules = {
                reason.partition(":")[2]: value["docs"]
                for reason, value in stats["dropped"].items()
                if reason.startswith(f"{name}:")
            }
            per_filter.append({"filter": name, "dropped": sum(rules.values()), "rules": rules})
        return {"filters": per_filter}
