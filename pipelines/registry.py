"""Stage names -> stage classes, in pipeline order."""

from __future__ import annotations

from pipelines.crawl import CrawlStage
from pipelines.dedup_exact import DedupExactStage
from pipelines.dedup_minhash import DedupMinHashStage
from pipelines.ingest import IngestStage
from pipelines.langid import LangIdStage
from pipelines.pii import PiiStage
from pipelines.quality import QualityStage
from pipelines.stage import Stage
from pipelines.tokenize import TokenizeStage
from pipelines.warc import IngestWarcStage

STAGES: dict[str, type[Stage]] = {
    cls.name: cls
    for cls in (
        CrawlStage,
        IngestStage,
        IngestWarcStage,
        LangIdStage,
        QualityStage,
        PiiStage,
        DedupExactStage,
        DedupMinHashStage,
        TokenizeStage,
    )
}


def stage_class(name: str) -> type[Stage]:
    try:
        return STAGES[name]
    except KeyError:
        raise KeyError(f"unknown stage '{name}'; known stages: {', '.join(STAGES)}") from None
