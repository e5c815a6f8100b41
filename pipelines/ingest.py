"""Stage ``ingest``: local text, HTML, JSONL and Parquet files -> documents.

The readers below are plain Python generators (testable without Spark). The Spark stage
spreads the files over tasks, balanced by size, and runs the readers in ``mapInArrow``.

Bad input never stops the stage: every unreadable record becomes a working row with a
drop reason and a detail naming the file (and line or row), so it is counted, logged and
kept in ``_rejects/`` while the good records around it survive.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Protocol

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from pipelines.errors import StageInputError
from pipelines.schema import BYTES_IN, DROP_DETAIL, DROP_REASON, WORKING_SCHEMA, document_id, unfinished_output
from pipelines.stage import Stage
from pipelines.storage import absolute, is_uri, location, open_binary, walk_files

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

Format = Literal["text", "html", "jsonl", "parquet"]

EXTENSIONS: dict[str, Format] = {
    ".txt": "text",
    ".text": "text",
    ".md": "text",
    ".rst": "text",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}
MiB = 1024 * 1024
BINARY_SNIFF_BYTES = 8192


class IngestConfig(BaseModel):
    """Recipe section ``ingest``."""

    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(default_factory=list, description="files or directories to read (recursively)")
    formats: list[Format] = Field(
        default_factory=lambda: ["text", "html", "jsonl", "parquet"],
        description="which file kinds to read; others are counted and skipped",
    )
    source: str = Field("local", description="value of the `source` column")
    text_key: str = Field("text", description="JSONL/Parquet field holding the text")
    id_key: str = Field("id", description="JSONL/Parquet field holding an id (optional)")
    url_key: str = Field("url", description="JSONL/Parquet field holding a URL (optional)")
    title_key: str = Field("title", description="JSONL/Parquet field holding a title (optional)")
    html_main_content: bool = Field(True, description="keep only the main content of HTML pages")
    max_file_bytes: int = Field(256 * MiB, ge=1, description="larger files are skipped")
    max_doc_bytes: int = Field(10 * MiB, ge=1, description="larger documents (or JSONL lines) are skipped")
    max_decompressed_bytes: int = Field(1024 * MiB, ge=1, description="cap on a .gz file's output (gzip bombs)")
    files_per_task: int = Field(64, ge=1, description="how many files one Spark task reads at most")


def detect_format(path: Path) -> Format | None:
    suffixes = path.suffixes
    if suffixes and suffixes[-1].lower() == ".gz":
        suffixes = suffixes[:-1]
    return EXTENSIONS.get(suffixes[-1].lower()) if suffixes else None


def list_input_files(
    paths: Iterable[str | Path],
    formats: Iterable[str],
    detect: Callable[[Path], str | None] = lambda path: detect_format(path),
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Files to read (with the root they were found under) and counts of skipped extensions.

    ``detect`` names a file's format from its path (None: not one to read).
    """
    wanted = set(formats)
    files: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    for raw in paths:
        root = absolute(location(raw))
        if not root.exists():
            raise StageInputError(f"{raw}: input path does not exist")
        unfinished = unfinished_output(root)
        if unfinished:
            raise StageInputError(f"{raw}: {unfinished}")
        if root.is_file():
            candidates = [(root, root.stat().st_size)]
        elif is_uri(root):  # one listing call, not one per object
            candidates = [(root / rel, size) for rel, size, _ in walk_files(root)]
        else:
            candidates = [(p, p.stat().st_size) for p in sorted(p for p in root.rglob("*") if p.is_file())]
        base = root.parent if root.is_file() else root
        for path, size in candidates:
            if path != root and any(part.startswith(".") for part in path.relative_to(base).parts):
                continue  # hidden: e.g. the staging directory of a crawl that is still running or was killed
            fmt = detect(path)
            if fmt is None or fmt not in wanted:
                key = "".join(path.suffixes[-2:]).lower() or "(none)"
                skipped[key] = skipped.get(key, 0) + 1
                continue
            files.append(
                {"path": str(path), "rel": str(path.relative_to(base)), "format": fmt, "size": size}
            )
    return files, dict(sorted(skipped.items(), key=lambda kv: -kv[1]))


class DecompressionLimit(Exception):
    pass


READ_CHUNK = 64 * 1024


def iter_chunks(path: str, config: IngestConfig) -> Iterator[bytes]:
    """The file's bytes (decompressed for ``.gz``) in chunks of at most 64 KiB.

    For gzip this drives zlib directly: every byte decoded before a truncated member or
    the decompression cap (gzip bombs) is handed out before the error is raised, so the
    good records in front of the damage survive.
    """
    with open_binary(path) as handle:
        if not path.lower().endswith(".gz"):
            while chunk := handle.read(READ_CHUNK):
                yield chunk
            return
        yield from _gunzip(handle, config.max_decompressed_bytes)


def _gunzip(handle: Any, limit: int) -> Iterator[bytes]:
    decompressor = zlib.decompressobj(wbits=31)
    in_member, total, pending = False, 0, b""
    while True:
        if not pending:
            pending = handle.read(READ_CHUNK)
            if not pending:
                break
        in_member = True
        out = decompressor.decompress(pending, READ_CHUNK)
        total += len(out)
        if total > limit:
            raise DecompressionLimit(f"decompressed size exceeds {limit} bytes")
        if out:
            yield out
        if decompressor.eof:  # end of one gzip member; another may follow
            pending, in_member = decompressor.unused_data, False
            decompressor = zlib.decompressobj(wbits=31)
        else:
            pending = decompressor.unconsumed_tail
    if in_member:
        tail = decompressor.flush()
        if tail:
            yield tail
        raise EOFError("gzip data ends in the middle of a member (truncated file)")


class LongLine(int):
    """What :func:`iter_lines` yields instead of a line longer than its limit: the line's length."""


def iter_lines(chunks: Iterable[bytes], max_line: int | None = None) -> Iterator[bytes | LongLine]:
    """Lines without their newline. Only each new chunk is split, so a giant line costs linear time.

    With ``max_line``, a longer line is never held: once it passes the limit its bytes are only
    counted, and a :class:`LongLine` with its length stands in for it (memory stays at about
    ``max_line`` plus one chunk, whatever the line).
    """
    partial: list[bytes] = []
    size = 0  # bytes of the current line so far
    skipping = False  # the current line is over max_line: counted, not kept
    for chunk in chunks:
        *complete, rest = chunk.split(b"\n")
        if complete:
            size += len(complete[0])
            if skipping or (max_line is not None and size > max_line):
                yield LongLine(size)
            else:
                partial.append(complete[0])
                yield b"".join(partial)
            for line in complete[1:]:
                yield LongLine(len(line)) if max_line is not None and len(line) > max_line else line
            partial, size, skipping = [], 0, False
        size += len(rest)
        if not skipping:
            partial.append(rest)
            if max_line is not None and size > max_line:
                partial, skipping = [], True
    if skipping:
        yield LongLine(size)
        return
    tail = b"".join(partial)
    if tail:
        yield tail


def read_prefix(path: str, config: IngestConfig, limit: int) -> bytes:
    """Up to ``limit`` bytes of the (decompressed) file."""
    parts, size = [], 0
    for chunk in iter_chunks(path, config):
        parts.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(parts)[:limit]


def looks_binary(data: bytes) -> bool:
    """NUL bytes or mostly control characters in the first block: not text."""
    head = data[:BINARY_SNIFF_BYTES]
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    return bool(head) and controls / len(head) > 0.1


def decode_bytes(data: bytes, html: bool = False) -> tuple[str, str]:
    """Decode with UTF-8 if valid, else (HTML) the meta tag's charset if the bytes decode with it,
    else the detected charset: the policy of :func:`pipelines.warc.decode_payload`, so a meta tag
    that lies (``utf-8`` on a windows-1251 page) is ignored instead of turning the text to mojibake."""
    from pipelines.warc import decode_payload

    text, encoding, _ = decode_payload(data, None, html)
    return text.lstrip("\ufeff"), encoding


def html_to_text(html: str, main_content: bool = True) -> tuple[str, str | None]:
    """Main text and title of an HTML page (resiliparse: fast, robust on broken markup)."""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    tree = HTMLTree.parse(html)
    text = extract_plain_text(tree, main_content=main_content, preserve_formatting=True, list_bullets=True)
    title = (tree.title or "").strip() or None
    return text.strip(), title


def _mtime(path: str) -> datetime:
    return datetime.fromtimestamp(location(path).stat().st_mtime, tz=timezone.utc)


class RowSettings(Protocol):
    """What the row builders need of a reader's settings (IngestConfig, WarcIngestConfig)."""

    source: str
    max_doc_bytes: int


def working_row(config: RowSettings, locator: str, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": document_id(config.source, locator),
        "url": None,
        "title": None,
        "text": "",
        "source": config.source,
        "fetched_at": None,
        "lang": None,
        "lang_score": None,
        "annotations": None,
        "metadata": None,
        DROP_REASON: None,
        DROP_DETAIL: None,
        BYTES_IN: 0,
    }
    row.update(fields)
    return row


def rejected_row(config: RowSettings, locator: str, reason: str, detail: str, bytes_in: int = 0, **fields: Any) -> dict[str, Any]:
    return working_row(config, locator, **{DROP_REASON: reason, DROP_DETAIL: detail, BYTES_IN: bytes_in, **fields})


def keep_or_drop(row: dict[str, Any], where: str, config: RowSettings) -> dict[str, Any]:
    text = row["text"]
    if not text or not text.strip():
        row[DROP_REASON], row[DROP_DETAIL], row["text"] = "empty_text", f"{where}: no text", text or ""
    elif len(text) > config.max_doc_bytes:
        row[DROP_REASON], row[DROP_DETAIL] = "doc_too_large", f"{where}: {len(text)} characters"
        row["text"] = ""
    return row


def _read_whole_file(file: dict[str, Any], config: IngestConfig) -> Iterator[dict[str, Any]]:
    path, rel, fmt = file["path"], file["rel"], file["format"]
    data = read_prefix(path, config, config.max_doc_bytes + 1)
    if len(data) > config.max_doc_bytes:
        yield rejected_row(config, rel, "doc_too_large", f"{path}: larger than {config.max_doc_bytes} bytes", file["size"])
        return
    if looks_binary(data):
        yield rejected_row(config, rel, "binary_content", f"{path}: binary data in a {fmt} file", len(data))
        return
    text, encoding = decode_bytes(data, html=fmt == "html")
    title = None
    if fmt == "html":
        text, title = html_to_text(text, config.html_main_content)
    row = working_row(
        config,
        rel,
        url=path if is_uri(location(path)) else Path(path).as_uri(),
        title=title,
        text=text,
        fetched_at=_mtime(path),
        metadata={"file": rel, "format": fmt, "encoding": encoding},
        **{BYTES_IN: len(data)},
    )
    yield keep_or_drop(row, path, config)


# JSON can escape UTF-16 surrogates one by one ("\\ud800"); a lone one is not Unicode text and
# cannot be encoded to UTF-8 (Arrow fails on it, and with it the whole task's batch).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _unicode(value: str) -> str:
    """``value`` with lone surrogates replaced by U+FFFD, as undecodable bytes are elsewhere."""
    return _LONE_SURROGATE.sub("\ufffd", value)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else _unicode(str(value))


def _record_row(record: Any, locator: str, where: str, file: dict[str, Any], config: IngestConfig, bytes_in: int, extra_meta: dict[str, str]) -> dict[str, Any]:
    if not isinstance(record, dict):
        return rejected_row(config, locator, "malformed_record", f"{where}: not a JSON object", bytes_in)
    if config.text_key not in record:
        return rejected_row(config, locator, "missing_text", f"{where}: no '{config.text_key}' field", bytes_in)
    text = record[config.text_key]
    if not isinstance(text, str):
        return rejected_row(
            config, locator, "bad_text_type", f"{where}: '{config.text_key}' is {type(text).__name__}, not a string", bytes_in
        )
    given_id = record.get(config.id_key)
    row = working_row(
        config,
        locator,
        url=_str_or_none(record.get(config.url_key)),
        title=_str_or_none(record.get(config.title_key)),
        text=_unicode(text),
        fetched_at=_mtime(file["path"]),
        metadata={"file": file["rel"], "format": file["format"], **extra_meta},
        **{BYTES_IN: bytes_in},
    )
    if given_id not in (None, ""):
        row["id"] = _str_or_none(given_id)
    return keep_or_drop(row, where, config)


def _read_jsonl(file: dict[str, Any], config: IngestConfig) -> Iterator[dict[str, Any]]:
    path, rel = file["path"], file["rel"]
    for number, line in enumerate(iter_lines(iter_chunks(path, config), config.max_doc_bytes), start=1):
        where, locator = f"{path}:{number}", f"{rel}:{number}"
        if isinstance(line, LongLine):  # never read whole: bounded memory on a giant line
            yield rejected_row(config, locator, "doc_too_large", f"{where}: line of {line} bytes", int(line))
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            yield rejected_row(config, locator, "malformed_jsonl", f"{where}: {exc}", len(line))
            continue
        yield _record_row(record, locator, where, file, config, len(line), {"line": str(number)})


def _read_parquet(file: dict[str, Any], config: IngestConfig) -> Iterator[dict[str, Any]]:
    path, rel = file["path"], file["rel"]
    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    if config.text_key not in names:
        yield rejected_row(
            config, rel, "missing_text", f"{path}: no column '{config.text_key}' (columns: {', '.join(names)})", file["size"]
        )
        return
    wanted = [k for k in (config.text_key, config.id_key, config.url_key, config.title_key) if k in names]
    row_number = 0
    for batch in parquet.iter_batches(columns=wanted, batch_size=1024):
        columns = [_python_values(column) for column in batch.columns]
        for record in (dict(zip(batch.schema.names, values)) for values in zip(*columns)):
            where, locator = f"{path}#row={row_number}", f"{rel}#{row_number}"
            text = record.get(config.text_key)
            size = len(text.encode()) if isinstance(text, str) else 0
            yield _record_row(record, locator, where, file, config, size, {"row": str(row_number)})
            row_number += 1


def _python_values(column: pa.Array) -> list[Any]:
    """A column's values; strings decoded with replacement characters. Parquet does not check that
    a string column holds UTF-8 (other writers may store any bytes), and ``to_pylist`` would fail
    on one bad value, taking its whole batch and the rest of the file with it."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        raw = column.cast(pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary())
        return [None if value is None else value.decode("utf-8", "replace") for value in raw.to_pylist()]
    return column.to_pylist()


READERS = {"text": _read_whole_file, "html": _read_whole_file, "jsonl": _read_jsonl, "parquet": _read_parquet}


def read_file(file: dict[str, Any], config: IngestConfig) -> Iterator[dict[str, Any]]:
    """All working rows of one file. Never raises for bad content: errors become rejected rows."""
    path, rel = file["path"], file["rel"]
    if file["size"] > config.max_file_bytes:
        yield rejected_row(config, rel, "file_too_large", f"{path}: {file['size']} bytes > {config.max_file_bytes}", file["size"])
        return
    try:
        yield from READERS[file["format"]](file, config)
    except DecompressionLimit as exc:
        yield rejected_row(config, rel + "#gzip", "decompression_limit", f"{path}: {exc}")
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        yield rejected_row(config, rel + "#gzip", "truncated_gzip", f"{path}: {exc or 'unexpected end of gzip data'}")
    except (OSError, pa.ArrowException) as exc:
        yield rejected_row(config, rel + "#read", "read_error", f"{path}: {exc}")


def _batches(rows: Iterable[dict[str, Any]], max_rows: int = 2048, max_bytes: int = 64 * MiB) -> Iterator[pa.RecordBatch]:
    pending: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        pending.append(row)
        size += len(row["text"])
        if len(pending) >= max_rows or size >= max_bytes:
            yield pa.RecordBatch.from_pylist(pending, schema=WORKING_SCHEMA)
            pending, size = [], 0
    if pending:
        yield pa.RecordBatch.from_pylist(pending, schema=WORKING_SCHEMA)


def balance_files(files: list[dict[str, Any]], tasks: int) -> list[list[dict[str, Any]]]:
    """Greedy largest-first assignment of files to ``tasks`` bins of similar total size."""
    bins: list[list[dict[str, Any]]] = [[] for _ in range(max(1, tasks))]
    totals = [0] * len(bins)
    for file in sorted(files, key=lambda f: -f["size"]):
        index = totals.index(min(totals))
        bins[index].append(file)
        totals[index] += max(file["size"], 1)
    return [b for b in bins if b]


class IngestStage(Stage):
    name = "ingest"
    summary = "local text/HTML/JSONL/Parquet files -> documents"
    Config = IngestConfig
    reads_raw_files = True

    def list_files(self, inputs: list[Path], config: BaseModel) -> tuple[list[dict[str, Any]], dict[str, int]]:
        assert isinstance(config, IngestConfig)
        return list_input_files(inputs, config.formats)

    def no_files_message(self, inputs: list[Path], config: BaseModel) -> str:
        return f"ingest: no {'/'.join(config.formats)} files under {', '.join(map(str, inputs))}"  # type: ignore[attr-defined]

    @staticmethod
    def read_one(file: dict[str, Any], config: Any) -> Iterator[dict[str, Any]]:
        """All working rows of one file (runs in the Spark workers; never raises for bad content)."""
        return read_file(file, config)

    def transform(self, spark: "SparkSession", inputs: list[Path], config: BaseModel) -> "DataFrame":
        from pyspark.sql.pandas.types import from_arrow_schema

        files, skipped = self.list_files(inputs, config)
        self.extra_stats = {
            "files": {
                "read": len(files),
                "bytes": sum(f["size"] for f in files),
                "skipped_by_extension": skipped,
            }
        }
        if not files:
            raise StageInputError(self.no_files_message(inputs, config) + (f" (skipped: {skipped})" if skipped else ""))
        parallelism = spark.sparkContext.defaultParallelism
        tasks = max(parallelism * 2, -(-len(files) // config.files_per_task))  # type: ignore[attr-defined]
        bins = balance_files(files, min(tasks, len(files)))
        task_rdd = spark.sparkContext.parallelize(bins, len(bins)).flatMap(lambda b: b)
        task_df = spark.createDataFrame(task_rdd, "path string, rel string, format string, size long")
        settings, config_class, read_one = config.model_dump(), type(config), self.read_one

        def read_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            cfg = config_class(**settings)
            rows = (row for batch in batches for file in batch.to_pylist() for row in read_one(file, cfg))
            yield from _batches(rows)

        return task_df.mapInArrow(read_partition, from_arrow_schema(WORKING_SCHEMA))
