"""Stage ``dedup-exact``: one document per group of identical normalized texts.

Normalization, all in Spark SQL (no Python per row): lower case, every Unicode punctuation
and symbol character removed (``\\p{P}``, ``\\p{S}``), white space runs collapsed to one space,
trimmed. The SHA-256 of that string groups documents; in each group the document with the
earliest ``fetched_at`` (then the smallest ``id``) is kept, so reruns give identical output.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from pipelines.schema import BYTES_IN, DOCUMENT_COLUMNS, DROP_DETAIL, DROP_REASON
from pipelines.stage import Stage

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession


class DedupExactConfig(BaseModel):
    """Recipe section ``dedup_exact``."""

    model_config = ConfigDict(extra="forbid")

    lowercase: bool = Field(True, description="compare texts case-insensitively")
    strip_punctuation: bool = Field(True, description="ignore Unicode punctuation and symbols")
    collapse_whitespace: bool = Field(True, description="treat any run of white space as one space")


def normalized_text(config: DedupExactConfig) -> "Column":
    from pyspark.sql import functions as F

    text = F.col("text")
    if config.lowercase:
        text = F.lower(text)
    if config.strip_punctuation:
        text = F.regexp_replace(text, r"[\p{P}\p{S}]+", "")
    if config.collapse_whitespace:
        text = F.trim(F.regexp_replace(text, r"\s+", " "))
    return text


def keep_first(frame: "DataFrame", group: str) -> "DataFrame":
    """Rank each group by (fetched_at, id): adds ``_rank`` and ``_first`` (the kept id)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy(group).orderBy(F.col("fetched_at").asc_nulls_last(), F.col("id").asc())
    return frame.withColumn("_rank", F.row_number().over(order)).withColumn(
        "_first", F.first("id").over(order.rowsBetween(Window.unboundedPreceding, Window.currentRow))
    )


class DedupExactStage(Stage):
    name = "dedup-exact"
    section = "dedup_exact"
    summary = "exact dedup on normalized text; keeps the earliest document of each group"
    Config = DedupExactConfig

    def transform(self, spark: "SparkSession", inputs: list[Path], config: BaseModel) -> "DataFrame":
        from pyspark.sql import functions as F

        assert isinstance(config, DedupExactConfig)
        documents = self.read_documents(spark, inputs)
        hashed = documents.withColumn("_text_hash", F.sha2(normalized_text(config), 256))
        ranked = keep_first(hashed, "_text_hash")
        duplicate = F.col("_rank") > 1
        return ranked.select(
            *DOCUMENT_COLUMNS,
            F.when(duplicate, F.lit("dedup_exact:duplicate")).alias(DROP_REASON),
            F.when(duplicate, F.concat(F.lit("id="), F.col("id"), F.lit(" duplicates id="), F.col("_first"))).alias(
                DROP_DETAIL
            ),
            F.octet_length("text").cast("long").alias(BYTES_IN),
        )

    def summarize(self, working: Any, stats: dict[str, Any], config: BaseModel) -> dict[str, Any]:
        dropped = stats["dropped"].get("dedup_exact:duplicate", {"docs": 0})["docs"]
        return {"duplicates_removed": dropped}
