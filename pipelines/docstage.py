"""Base of the stages that read documents and annotate, rewrite or drop them (langid, quality, pii).

The per-document work is plain Python from ``filters``; this module only moves Arrow
batches in and out of Spark (``mapInArrow``) and applies the guards every such stage shares:
empty, gigantic and binary-looking texts are dropped with a reason before any filter sees
them, so no filter ever has to survive a 60 MB line of NUL bytes.
"""

from __future__ import annotations

import unicodedata
from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from pipelines.schema import BYTES_IN, DOCUMENT_COLUMNS, DROP_DETAIL, DROP_REASON, WORKING_SCHEMA
from pipelines.stage import Stage

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

MiB = 1024 * 1024
Rows = list[dict[str, Any]]
BatchProcessor = Callable[[Rows], None]  # updates the rows in place
BINARY_SAMPLE_CHARS = 4096


class DocumentStageConfig(BaseModel):
    """Settings every document stage has."""

    model_config = ConfigDict(extra="forbid")

    max_doc_bytes: int = Field(10 * MiB, ge=1, description="larger texts are dropped (doc_too_large)")


def looks_binary_text(text: str) -> bool:
    """NUL, many control characters or many U+FFFD (bytes that were never text) in the first 4 KiB."""
    sample = text[:BINARY_SAMPLE_CHARS]
    if not sample:
        return False
    if "\x00" in sample:
        return True
    bad = sum(
        1
        for ch in sample
        if ch == "\ufffd" or (ch not in "\t\n\r\f" and unicodedata.category(ch) == "Cc")
    )
    return bad / len(sample) > 0.1


def guard(text: str | None, max_doc_bytes: int) -> tuple[str, str] | None:
    """(reason, what) for texts no stage should process, else None."""
    if text is None or not text.strip():
        return "empty_text", "no text"
    # A character is at most 4 UTF-8 bytes: encode only texts that could be over the limit.
    if len(text) > max_doc_bytes or (
        4 * len(text) > max_doc_bytes and len(text.encode("utf-8", "surrogatepass")) > max_doc_bytes
    ):
        return "doc_too_large", f"{len(text)} characters > {max_doc_bytes} bytes"
    if looks_binary_text(text):
        return "binary_content", "binary-looking text"
    return None


def record_name(row: dict[str, Any]) -> str:
    """How a detail names a document: its id, and its URL when there is one."""
    return f"id={row['id']}" + (f" url={row['url']}" if row.get("url") else "")


def merge_annotations(row: dict[str, Any], signals: dict[str, float]) -> None:
    current = dict(row.get("annotations") or [])
    current.update(signals)
    row["annotations"] = current


class DocumentStage(Stage):
    """A stage whose work is a function from a batch of document rows to working rows.

    Subclasses implement :meth:`batch_processor`, which runs inside Spark's Python workers:
    it must be picklable and should load models lazily, once per worker process. It updates
    the rows in place: columns it fills, and ``_drop_reason`` / ``_drop_detail`` to drop one.
    """

    Config = DocumentStageConfig

    @abstractmethod
    def batch_processor(self, config: BaseModel) -> BatchProcessor:
        """Return the function applied to every batch of (guarded) rows."""

    def transform(self, spark: "SparkSession", inputs: list[Path], config: BaseModel) -> "DataFrame":
        from pyspark.sql import functions as F
        from pyspark.sql.pandas.types import from_arrow_schema

        assert isinstance(config, DocumentStageConfig)
        documents = self.read_documents(spark, inputs).withColumn(BYTES_IN, F.octet_length("text").cast("long"))
        process = self.batch_processor(config)
        max_doc_bytes = config.max_doc_bytes

        def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for batch in batches:
                rows = batch.to_pylist()
                passed: Rows = []
                for row in rows:
                    row[DROP_REASON] = row[DROP_DETAIL] = None
                    bad = guard(row["text"], max_doc_bytes)
                    if bad:
                        row[DROP_REASON] = bad[0]
                        row[DROP_DETAIL] = f"{record_name(row)}: {bad[1]}"
                        if bad[0] == "doc_too_large":
                            row["text"] = ""  # never carry the giant text into _rejects or later steps
                    else:
                        passed.append(row)
                if passed:
                    process(passed)
                yield pa.RecordBatch.from_pylist(rows, schema=WORKING_SCHEMA)

        return documents.select(*DOCUMENT_COLUMNS, BYTES_IN).mapInArrow(run, from_arrow_schema(WORKING_SCHEMA))
