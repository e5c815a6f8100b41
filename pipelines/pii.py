"""Stage ``pii``: replaces e-mail addresses, IP addresses, phone numbers, … with typed placeholders.

Documents are kept; their text is rewritten. Per-document counts go to ``annotations``
(``pii.email`` …) and totals to ``_stats.json`` (``pii``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from filters.pii import PiiConfig
from pipelines.docstage import BatchProcessor, DocumentStage, DocumentStageConfig, Rows, merge_annotations
from pipelines.schema import DROP_REASON


class PiiStageConfig(DocumentStageConfig, PiiConfig):
    """Recipe section ``pii``: the scrubber's settings (kinds, placeholders, …) and the guards."""


class PiiStage(DocumentStage):
    name = "pii"
    summary = "replace e-mails, IPs, phone numbers … with typed placeholders"
    Config = PiiStageConfig
    code_modules = ("filters.pii",)
    reads = ("text", "annotations")
    writes = ("text", "annotations")

    def batch_processor(self, config: BaseModel) -> BatchProcessor:
        assert isinstance(config, PiiStageConfig)
        settings = {key: value for key, value in config.model_dump().items() if key in PiiConfig.model_fields}

        def process(rows: Rows) -> None:
            from filters.pii import PiiConfig, PiiScrubber

            scrubber = PiiScrubber(PiiConfig(**settings))
            for row in rows:
                text, counts = scrubber.scrub(row["text"])
                row["text"] = text
                merge_annotations(row, {f"pii.{kind}": float(n) for kind, n in counts.items() if n})

        return process

    def summarize(self, working: Any, stats: dict[str, Any], config: BaseModel) -> dict[str, Any]:
        from pyspark.sql import functions as F

        totals = (
            working.where(F.col(DROP_REASON).isNull())
            .select(F.explode("annotations").alias("key", "value"))
            .where(F.col("key").startswith("pii."))
            .groupBy("key")
            .agg(F.sum("value").alias("total"), F.count(F.lit(1)).alias("docs"))
            .collect()
        )
        return {
            "pii": {
                row["key"].removeprefix("pii."): {"replaced": int(row["total"]), "docs": row["docs"]}
                for row in sorted(totals, key=lambda r: r["key"])
            }
        }
