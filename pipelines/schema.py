"""The one document schema every corpus stage reads and writes.

Kept in Arrow terms (pyarrow only, no Spark import) so that readers, tests and the
shard tooling can use it without a JVM. ``docs/schema.md`` documents each column.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.errors import SchemaError
from pipelines.storage import open_binary

DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("title", pa.string()),
        pa.field("text", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("fetched_at", pa.timestamp("us", tz="UTC")),
        pa.field("lang", pa.string()),
        pa.field("lang_score", pa.float32()),
        # Numeric signals from annotators ("store scores, decide later"), e.g. "gopher.word_count".
        pa.field("annotations", pa.map_(pa.string(), pa.float64())),
        # Free-form provenance, e.g. "file", "line", "encoding", "content_type".
        pa.field("metadata", pa.map_(pa.string(), pa.string())),
    ]
)
DOCUMENT_COLUMNS: list[str] = DOCUMENT_SCHEMA.names

# Chat data (synthetic dialogues, SFT sets): what the tokenize stage turns into shards with a
# loss mask. ``messages`` is the usual chat-messages list: role (system, user, assistant) and content.
MESSAGE_TYPE = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])
CONVERSATION_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("messages", pa.list_(MESSAGE_TYPE), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("metadata", pa.map_(pa.string(), pa.string())),
    ]
)

# Columns a stage adds while it works; never written to the kept output.
DROP_REASON = "_drop_reason"
DROP_DETAIL = "_drop_detail"
BYTES_IN = "_bytes_in"
WORKING_SCHEMA = DOCUMENT_SCHEMA.append(pa.field(DROP_REASON, pa.string())).append(
    pa.field(DROP_DETAIL, pa.string())
).append(pa.field(BYTES_IN, pa.int64()))


def document_id(source: str, locator: str) -> str:
    """A stable id: the same source and locator (relative path, line, URL) give the same id."""
    return hashlib.sha256(f"{source}\x00{locator}".encode()).hexdigest()[:32]


def _same_kind(actual: pa.DataType, expected: pa.DataType) -> bool:
    if pa.types.is_string(expected):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual) or pa.types.is_string_view(actual)
    if pa.types.is_floating(expected):
        return pa.types.is_floating(actual)
    if pa.types.is_timestamp(expected):
        return pa.types.is_timestamp(actual)
    if pa.types.is_list(expected):
        return (pa.types.is_list(actual) or pa.types.is_large_list(actual)) and _same_kind(
            actual.value_type, expected.value_type
        )
    if pa.types.is_struct(expected):
        if not pa.types.is_struct(actual):
            return False
        for field in expected:
            index = actual.get_field_index(field.name)
            if index < 0 or not _same_kind(actual.field(index).type, field.type):
                return False
        return True
    if pa.types.is_map(expected):
        return (
            pa.types.is_map(actual)
            and _same_kind(actual.key_type, expected.key_type)
            and _same_kind(actual.item_type, expected.item_type)
        )
    return actual.equals(expected)


def check_schema(
    schema: pa.Schema,
    where: str,
    partition_columns: frozenset[str] = frozenset(),
    expected: pa.Schema = DOCUMENT_SCHEMA,
) -> None:
    """Raise SchemaError naming ``where`` and the first column that does not fit.

    ``partition_columns`` come from ``name=value`` directories (e.g. ``lang=en/``), not the file.
    """
    for field in expected:
        index = schema.get_field_index(field.name)
        if index < 0 and field.name in partition_columns:
            continue
        if index < 0:
            raise SchemaError(
                f"{where}: missing column '{field.name}' (expected {field.type}); "
                f"found columns: {', '.join(schema.names) or 'none'}"
            )
        actual = schema.field(index).type
        if not _same_kind(actual, field.type):
            raise SchemaError(f"{where}: column '{field.name}' has type {actual}, expected {field.type}")


# The layout every stage output shares (the stage contract in pipelines/stage.py writes it).
SUCCESS_FILE = "_SUCCESS"
STATS_FILE = "_stats.json"
REJECTS_DIR = "_rejects"
# ``.<out>.tmp-<pid>``: where a stage writes before it publishes (``-old``: an output being replaced).
STAGING_NAME = re.compile(r"^\..+\.tmp-\d+(-old)?$")


def unfinished_output(path: Path) -> str | None:
    """Why ``path`` must not be read as a finished dataset (None: it may be).

    A staging directory, or a stage output without ``_SUCCESS`` (an object-store publish that
    was cut short), holds some of a run's files, never a whole dataset.
    """
    if STAGING_NAME.match(path.name):
        return "the staging directory of a stage run that did not finish (the stage's next run removes it)"
    if path.is_dir() and not (path / SUCCESS_FILE).exists():
        if (path / STATS_FILE).exists() or (path / REJECTS_DIR).exists():
            return f"a stage output without {SUCCESS_FILE}: the run that wrote it did not finish"
    return None


def dataset_files(path: Path) -> list[Path]:
    """The Parquet files of a dataset directory, skipping hidden and ``_``-prefixed entries."""
    unfinished = unfinished_output(path)
    if unfinished:
        raise SchemaError(f"{path}: {unfinished}")
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise SchemaError(f"{path}: no such file or directory")
    files = sorted(
        p
        for p in path.rglob("*.parquet")
        if not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts)
    )
    if not files:
        raise SchemaError(f"{path}: no Parquet files found")
    return files


def validate_dataset(path: Path, expected: pa.Schema = DOCUMENT_SCHEMA) -> list[Path]:
    """Check every file footer of a document (or ``expected``) dataset; return its files.

    Footers only: cheap even for thousands of files, and it fails before Spark starts a job.
    """
    files = dataset_files(path)
    for file in files:
        try:
            with open_binary(file) as handle:
                schema = pq.read_schema(handle)
        except (pa.ArrowInvalid, OSError) as exc:
            raise SchemaError(f"{file}: not a readable Parquet file ({exc})") from exc
        parts = file.relative_to(path).parts[:-1] if path.is_dir() else ()
        partition_columns = frozenset(p.split("=", 1)[0] for p in parts if "=" in p)
        check_schema(schema, str(file), partition_columns, expected)
    return files
