"""Base of the stages that read documents and annotate, rewrite or drop them (langid, quality, pii).

The per-document work is plain Python from ``filters``; this module only moves Arrow
batches in and out of Spark (``mapInArrow``) and applies the guards every such stage shares:
empty, gigantic and binary-looking texts are dropped with a reason before any filter sees
them, so no filter ever has to survive a 60 MB line of NUL bytes.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from pipelines.schema import BYTES_IN, DOCUMENT_COLUMNS, DROP_DETAIL, DROP_REASON, WORKING_SCHEMA, dataset_files
from pipelines.storage import open_binary
from pipelines.stage import Stage

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

MiB = 1024 * 1024
Rows = list[dict[str, Any]]
# Updates the rows in place; may return new rows to append (1 -> N documents), else None.
BatchProcessor = Callable[[Rows], "Rows | None"]
BINARY_SAMPLE_CHARS = 4096


class DocumentStageConfig(BaseModel):
    """Settings every document stage has."""

    model_config = ConfigDict(extra="forbid")

    max_doc_bytes: int = Field(10 * MiB, ge=1, description="larger texts are dropped (doc_too_large)")


# Category Cc (U+0000-U+001F, U+007F-U+009F) except tab, newline, form feed and carriage
# return, plus U+FFFD: counted by one regex scan in C, not a Python loop over characters.
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ufffd]")


def looks_binary_text(text: str) -> bool:
    """NUL, many control characters or many U+FFFD (bytes that were never text) in the first 4 KiB."""
    sample = text[:BINARY_SAMPLE_CHARS]
    if not sample:
        return False
    if "\x00" in sample:
        return True
    return len(_NOT_TEXT.findall(sample)) / len(sample) > 0.1


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
    It may also return new rows (every document column, see :func:`batch_runner`).
    """

    Config = DocumentStageConfig
    # Columns the processor reads and writes. Only these become Python objects: the other
    # columns (and unchanged text) pass from the input Arrow batch to the output untouched.
    reads: ClassVar[tuple[str, ...]] = ("text",)
    writes: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def batch_processor(self, config: BaseModel) -> BatchProcessor:
        """Return the function applied to every batch of (guarded) rows."""

    def row_columns(self, config: BaseModel) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(reads, writes) for this config; the class attributes unless a stage needs more."""
        return self.reads, self.writes

    def transform(self, spark: "SparkSession", inputs: list[Path], config: BaseModel) -> "DataFrame":
        from pyspark.sql import functions as F
        from pyspark.sql.pandas.types import from_arrow_schema

        assert isinstance(config, DocumentStageConfig)
        documents = self.read_documents(spark, inputs).withColumn(BYTES_IN, F.octet_length("text").cast("long"))
        documents = spread_over_cores(spark, documents, inputs)
        run = batch_runner(self.batch_processor(config), *self.row_columns(config), config.max_doc_bytes)
        return documents.select(*DOCUMENT_COLUMNS, BYTES_IN).mapInArrow(run, from_arrow_schema(WORKING_SCHEMA))


def spread_over_cores(spark: "SparkSession", documents: "DataFrame", inputs: list[Path]) -> "DataFrame":
    """Round-robin the documents over every core when the input has fewer row groups than cores.

    A Parquet row group is read by one task, so a small input (one file, one row group) would
    run the per-document work (fastText, filters) on one core while the others idle. The
    shuffle costs far less than that.
    """
    import pyarrow.parquet as pq

    cores = spark.sparkContext.defaultParallelism
    row_groups = 0
    for path in inputs:
        for file in dataset_files(path):
            with open_binary(file) as handle:
                row_groups += pq.ParquetFile(handle).metadata.num_row_groups
            if row_groups >= cores:
                return documents
    return documents.repartition(cores)


def batch_runner(
    process: BatchProcessor, reads: tuple[str, ...], writes: tuple[str, ...], max_doc_bytes: int
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function: guards, then ``process`` on the rows that passed.

    Rows hold ``id``, ``url``, ``text`` and the ``reads`` and ``writes`` columns; the output
    batch is the input batch with the ``writes`` columns (and the drop columns) replaced.

    When ``process`` returns new rows, they are appended after the batch's rows and every
    column of that output batch is built from Python rows (the input rows completed from the
    batch). A new row gives every document column it needs (missing ones are null); its
    ``_bytes_in`` defaults to 0, since the input bytes are counted once, on the input row.
    A processor that changes a column outside ``writes`` must return new rows in that batch.
    """
    row_columns = list(dict.fromkeys(("id", "url", "text", *reads, *writes)))
    written = list(dict.fromkeys(writes))

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            rows = batch.select(row_columns).to_pylist()
            passed: Rows = []
            replaced = set(written)
            for row in rows:
                row[DROP_REASON] = row[DROP_DETAIL] = None
                bad = guard(row["text"], max_doc_bytes)
                if bad:
                    row[DROP_REASON] = bad[0]
                    row[DROP_DETAIL] = f"{record_name(row)}: {bad[1]}"
                    if bad[0] == "doc_too_large":
                        row["text"] = ""  # never carry the giant text into _rejects or later steps
                        replaced.add("text")
                else:
                    passed.append(row)
            extra = process(passed) if passed else None
            if extra:
                yield _rows_batch(batch, rows, extra)
                continue
            replaced |= {DROP_REASON, DROP_DETAIL}
            arrays = [
                pa.array([row[field.name] for row in rows], type=field.type)
                if field.name in replaced
                else batch.column(field.name)
                for field in WORKING_SCHEMA
            ]
            yield pa.RecordBatch.from_arrays(arrays, schema=WORKING_SCHEMA)

    return run


def _rows_batch(batch: pa.RecordBatch, rows: Rows, extra: Rows) -> pa.RecordBatch:
    """The batch's rows (updated by ``rows``) followed by ``extra``, every column from Python."""
    full = batch.to_pylist()
    for whole, row in zip(full, rows):
        whole.update(row)
    for row in extra:
        row.setdefault(BYTES_IN, 0)
    out = full + extra
    arrays = [pa.array([row.get(field.name) for row in out], type=field.type) for field in WORKING_SCHEMA]
    return pa.RecordBatch.from_arrays(arrays, schema=WORKING_SCHEMA)
