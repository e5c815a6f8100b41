"""Reading WARC files (Common Crawl and other crawls) into working rows.

Pure Python (warcio for record and header parsing, zlib for gzip, resiliparse for charset
detection and HTML extraction), so it is testable without Spark; the ``ingest_warc`` stage runs
``read_warc`` inside ``mapInArrow`` exactly as ``ingest`` runs ``read_file``.

Records
-------
One working row per WARC ``response`` record with an ``http(s)`` target (``warcinfo``,
``request``, ``metadata``, ``revisit``, ``resource`` and ``dns:`` records are skipped silently).
``url`` is WARC-Target-URI, ``fetched_at`` WARC-Date (UTC), ``title`` the HTML ``<title>``,
``text`` the (main) text, ``id`` = ``document_id(source, url + "@" + WARC-Record-ID)``.
``metadata``: ``warc_file`` (path relative to the input root), ``warc_record_id``,
``warc_offset`` (byte offset of the record in the file; in a ``.warc.gz`` the offset of its gzip
member, as in Common Crawl's index; ``warc_offset_in_member`` is added for a file that is not one
member per record), ``http_status``, ``content_type``, ``charset``, ``charset_source``
(``bom``, ``header``, ``meta``, ``detected`` or ``utf-8``) and ``warc_truncated`` when the crawler
truncated the payload. ``_bytes_in`` is the HTTP payload size as stored.

Charset policy
--------------
1. A byte order mark wins (UTF-8, UTF-16).
2. Bytes that are valid UTF-8 are decoded as UTF-8, whatever the header or the meta tag says:
   legacy-encoded text with non-ASCII bytes is practically never valid UTF-8, while "UTF-8 page
   served with a server-default ``ISO-8859-1`` header" is common. ``charset_source`` is
   ``header``/``meta`` when one of them said UTF-8, else ``utf-8``.
3. Otherwise the HTTP ``Content-Type`` charset, then the HTML ``<meta>`` charset (first 4 KiB),
   each used only if the bytes decode *strictly* with it: a header that lies ("utf-8" on a GBK
   page) fails this test and is ignored. Labels are mapped as browsers do (WHATWG: ``gb2312`` ->
   GBK/GB18030, ``shift_jis`` -> windows-31j, ``iso-8859-1`` -> windows-1252, ...).
   A single-byte charset decodes any bytes, so it cannot be checked that way: a declared
   single-byte charset loses to a detected multi-byte one that decodes strictly (a Shift-JIS
   page labelled windows-1251), and the web's default label (``iso-8859-1``/``windows-1252``)
   also loses to a detected single-byte charset of another script (a windows-1251 page
   labelled ``iso-8859-1``), never to another Latin one.
4. Otherwise detection (uchardet, via resiliparse ``detect_encoding``), with replacement
   characters for undecodable bytes; if detection has no answer, UTF-8 with replacement
   characters (``charset_source`` ``utf-8``).

Limits (memory stays bounded whatever the input)
------------------------------------------------
* ``max_record_bytes``: HTTP payload per record *after* transfer/content decoding; at most
  cap + 1 bytes are ever held, so a 60 MB one-line page or a ``Content-Encoding: gzip`` bomb
  costs cap + 64 KiB, then the rest of the record is skipped in 64 KiB blocks.
* ``max_decompressed_bytes``: all gzip output of one file (WARC members; gzip bombs in the file
  itself); past it the file is abandoned with one ``decompression_limit`` row.
* Header lines are read at most 1 MiB long, header blocks at most 4 MiB and 4096 lines
  (warcio's own ``readline`` would read a line of any length, quadratically).

Damage and resynchronisation
----------------------------
warcio stops at the first damage (a truncated or corrupt gzip member makes its decompressor print
to stderr and swallow the rest of the file; a wrong Content-Length makes it misparse the next
record). So this module does the framing warcio cannot recover from:

* gzip members are decompressed here (``_GzipSource``), member by member, tracking each
  member's offset; warcio only sees the decompressed stream (its own decompression is switched
  off).
* *gzip damage* (truncated member, corrupt deflate data, bad CRC, junk between members):
  the good output before it is delivered first, then the damage is reported and the file is
  scanned forward, 1 MiB at a time, for the next gzip member header (``1f 8b 08``); a candidate
  counts only if it decompresses to ``WARC/`` (compressed data contains the 3 magic bytes about
  once every 16 MB by chance). Reading continues there.
* *record damage* (a Content-Length that is too short: the record is not followed by the blank
  lines and a ``WARC/`` line; too long: the file ends first, or the record ends in the middle of
  another one; a header that does not parse; a missing Content-Length): the record is rejected
  and the (decompressed) stream is scanned from just after the record's start for the next line
  ``WARC/1.0`` or ``WARC/1.1``. In a ``.warc.gz`` the scan restarts decompression at the
  damaged record's gzip member, so records swallowed by a too-long Content-Length are recovered.
  A record followed by its blank lines and then junk is kept; the junk is the damage.
* A file that does not start with a WARC record is scanned once for a later one: found, the
  start is reported as damage; not found, the file is one ``not_warc`` row.

Resync can be fooled by a WARC file held inside a record's payload (a crawl of ``.warc`` or
``.warc.gz`` files: deflate stores incompressible data verbatim); that only matters after damage.

Every damage is one rejected row whose detail names the file, the offset and where reading
resumed; the good records before and after it are kept. Reasons, besides the ones of
``ingest`` (``empty_text``, ``doc_too_large``, ``binary_content``, ``file_too_large``,
``decompression_limit``, ``read_error``):
``not_warc``, ``truncated_gzip``, ``corrupt_gzip``, ``truncated_record``,
``bad_content_length``, ``malformed_record``, ``malformed_http``, ``http_status``,
``content_type``, ``record_too_large``.

Only WARC (``.warc``, ``.warc.gz``; gzip is recognised by its magic bytes, not the name) is
read; ARC files are rejected as ``not_warc``.
"""

from __future__ import annotations

import re
import zlib
from bisect import bisect_right
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from pydantic import BaseModel, ConfigDict, Field
from warcio.archiveiterator import ArchiveIterator
from warcio.bufferedreaders import BufferedReader
from warcio.exceptions import ArchiveLoadFailed
from warcio.limitreader import LimitReader
from warcio.statusandheaders import StatusAndHeadersParser

from pipelines.ingest import READ_CHUNK, IngestStage, list_input_files, DecompressionLimit, keep_or_drop, rejected_row, working_row, html_to_text, looks_binary
from pipelines.schema import BYTES_IN
from pipelines.storage import open_binary

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

WARC_SUFFIXES = (".warc", ".warc.gz")
GZIP_MAGIC = b"\x1f\x8b\x08"
BLOCK = 64 * KiB  # warcio's read size
SCAN_CHUNK = 1 * MiB  # resync scans hold at most this (plus a few bytes of overlap)
MAX_HEADER_LINE = 1 * MiB
MAX_HEADER_BLOCK = 4 * MiB
MAX_HEADER_LINES = 4096  # per header block; real WARC + HTTP headers have a few dozen
DETAIL_CHARS = 200


class WarcIngestConfig(BaseModel):
    """Recipe section ``ingest_warc``."""

    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(default_factory=list, description="WARC files or directories to read (recursively)")
    source: str = Field("warc", description="value of the `source` column (e.g. cc-2024-10)")
    html_main_content: bool = Field(True, description="keep only the main content of HTML pages")
    max_file_bytes: int = Field(8 * GiB, ge=1, description="larger files are skipped")
    max_record_bytes: int = Field(
        10 * MiB, ge=1, description="HTTP payload cap per record, after content decoding (larger: record_too_large)"
    )
    max_decompressed_bytes: int = Field(16 * GiB, ge=1, description="cap on one file's gzip output (gzip bombs)")
    max_doc_bytes: int = Field(10 * MiB, ge=1, description="larger extracted texts are skipped")
    files_per_task: int = Field(4, ge=1, description="how many files one Spark task reads at most")
    content_types: list[str] = Field(
        default_factory=lambda: ["text/html", "application/xhtml+xml", "text/plain"],
        description="HTTP media types to extract; others are counted as content_type",
    )


# --------------------------------------------------------------------------------------------
# Listing


def is_warc_path(path: Path | str) -> bool:
    return str(path).lower().endswith(WARC_SUFFIXES)


def list_warc_files(paths: Iterable[str | Path]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """WARC files under ``paths`` as ``list_input_files`` dicts (format ``warc``) and skipped suffixes."""
    return list_input_files(paths, ["warc"], detect=lambda path: "warc" if is_warc_path(path) else None)


# --------------------------------------------------------------------------------------------
# Damage signals (internal; each becomes one rejected row)


class _GzipDamage(Exception):
    """The gzip member starting at ``member`` is truncated or corrupt."""

    def __init__(self, reason: str, message: str, member: int) -> None:
        super().__init__(message)
        self.reason, self.message, self.member = reason, message, member


class _FramingDamage(Exception):
    """The record structure is broken: at the current record, or at stream position ``at`` after it."""

    def __init__(self, reason: str, message: str, at: int | None = None) -> None:
        super().__init__(message)
        self.reason, self.message, self.at = reason, message, at


class _HeaderTooLong(Exception):
    pass


class _OverBudget(DecompressionLimit):
    def __init__(self, message: str, member: int) -> None:
        super().__init__(message)
        self.member = member


class _Budget:
    """Decompressed bytes of one file, all gzip sources together (re-reads after damage included)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def add(self, n: int, member: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise _OverBudget(f"decompressed size of the file exceeds {self.limit} bytes", member)


# --------------------------------------------------------------------------------------------
# Byte sources handed to warcio: read(n), tell(), unread(data), locate(pos)


class _Source:
    def __init__(self, start_pos: int) -> None:
        self.pos = start_pos  # stream position of the next byte read() returns
        self.pushback = b""

    def _fetch(self, size: int) -> bytes:
        raise NotImplementedError

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = BLOCK
        if self.pushback:
            data, self.pushback = self.pushback[:size], self.pushback[size:]
        else:
            data = self._fetch(size)
        self.pos += len(data)
        return data

    def unread(self, data: bytes) -> None:
        self.pushback = data + self.pushback
        self.pos -= len(data)

    def tell(self) -> int:
        return self.pos

    def locate(self, pos: int) -> tuple[int, int]:
        """(file offset of the record or gzip member holding stream position ``pos``, offset inside it)."""
        return pos, 0


class _RawSource(_Source):
    """An uncompressed WARC file from byte ``start``; stream positions are file offsets."""

    def __init__(self, handle: Any, start: int) -> None:
        super().__init__(start)
        self.handle = handle
        handle.seek(start)

    def _fetch(self, size: int) -> bytes:
        return self.handle.read(size)


class _GzipSource(_Source):
    """The decompressed bytes of the gzip members from file offset ``start`` on.

    Output comes in pieces of at most ``size`` bytes (zlib ``max_length``), so a gzip bomb never
    inflates more than that at once. All good output is handed out before a damage is raised;
    once raised, every later read raises it again.
    """

    def __init__(self, handle: Any, start: int, start_pos: int, budget: _Budget) -> None:
        super().__init__(start_pos)
        self.handle, self.budget = handle, budget
        handle.seek(start)
        self.fed = start  # file offset just past the last byte read from the handle
        self.pending = b""  # compressed bytes read but not yet consumed by zlib
        self.member = start  # file offset of the current member
        self.started = False  # the current member has been fed at least one byte
        self.decomp = zlib.decompressobj(31)
        self.out = start_pos  # stream position after everything decompressed so far
        self.starts = [start_pos]  # stream position where each member begins ...
        self.members = [start]  # ... and its file offset
        self.failure: _GzipDamage | None = None
        self.at_eof = False

    def _fail(self, reason: str, message: str) -> _GzipDamage:
        self.failure = _GzipDamage(reason, message, self.member)
        return self.failure

    def _fetch(self, size: int) -> bytes:
        while True:
            if self.failure is not None:
                raise self.failure
            if not self.pending:
                chunk = b"" if self.at_eof else self.handle.read(READ_CHUNK)
                if not chunk:
                    self.at_eof = True
                    if not self.started:
                        return b""  # clean end after a complete member
                    out = self.decomp.decompress(b"", size)  # output zlib still holds, if any
                    if out:
                        return self._emit(out, self.member)
                    raise self._fail("truncated_gzip", f"gzip member at offset {self.member} is cut short")
                self.pending = chunk
                self.fed += len(chunk)
            self.started = True
            member = self.member
            try:
                out = self.decomp.decompress(self.pending, size)
            except zlib.error as exc:
                raise self._fail("corrupt_gzip", f"gzip member at offset {self.member} is corrupt ({exc})") from None
            if self.decomp.eof:  # end of this member; another may follow
                rest = self.decomp.unused_data
                self.pending = rest
                self.member = self.fed - len(rest)
                self.decomp, self.started = zlib.decompressobj(31), False
                self.starts.append(self.out + len(out))
                self.members.append(self.member)
            else:
                self.pending = self.decomp.unconsumed_tail
            if out:
                return self._emit(out, member)

    def _emit(self, out: bytes, member: int) -> bytes:
        self.budget.add(len(out), member)
        self.out += len(out)
        return out

    def locate(self, pos: int) -> tuple[int, int]:
        index = max(bisect_right(self.starts, pos) - 1, 0)
        # Record starts only grow: forget members before this one (bounded bookkeeping).
        if index > 64:
            del self.starts[: index - 1], self.members[: index - 1]
            index = 1
        return self.members[index], pos - self.starts[index]


class _LineReader(BufferedReader):
    """warcio's buffered reader without decompression, with bounded, linear-time ``readline``."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream, block_size=BLOCK)
        self.header_bytes = self.header_lines = 0  # read by consecutive readline calls

    def reset(self) -> None:
        self.header_bytes = self.header_lines = 0

    def read(self, length: int | None = None) -> bytes:
        self.reset()
        return super().read(length)

    def readline(self, length: int | None = None) -> bytes:
        if length == 0:
            return b""
        cap = MAX_HEADER_LINE + 1 if length is None else min(length, MAX_HEADER_LINE + 1)
        parts: list[bytes] = []
        total = 0
        while total < cap:
            self._fillbuff()
            if self.empty():
                break
            piece = self.buff.readline(cap - total)
            parts.append(piece)
            total += len(piece)
            if piece.endswith(b"\n"):
                break
        line = b"".join(parts)
        if total > MAX_HEADER_LINE and not line.endswith(b"\n"):
            raise _HeaderTooLong(f"header line longer than {MAX_HEADER_LINE} bytes")
        self.header_bytes += total
        self.header_lines += 1
        if self.header_bytes > MAX_HEADER_BLOCK or self.header_lines > MAX_HEADER_LINES:
            raise _HeaderTooLong(f"headers longer than {MAX_HEADER_BLOCK} bytes or {MAX_HEADER_LINES} lines")
        return line


class _Records(ArchiveIterator):
    """warcio's ArchiveIterator over a ``_Source``: WARC only, no decompression, strict record ends."""

    def __init__(self, source: _Source) -> None:
        super().__init__(source, no_record_parse=True, block_size=BLOCK)
        self.reader = _LineReader(source)  # replaces warcio's DecompressingBufferedReader
        self.known_format = "warc"

    def _consume_blanklines(self) -> tuple[bytes | None, int]:
        # warcio prints a warning and skips one line when a record is not followed by blank
        # lines. Here: no blank line at all means the Content-Length was wrong (the record is
        # rejected); blank lines and then junk mean the record is fine and the junk is damage.
        empty = 0
        while True:
            line = self.reader.readline()
            if not line:
                return None, empty
            if not line.strip():
                empty += len(line)
                continue
            if line.startswith(b"WARC/"):  # next record (writers that omit the blank lines)
                return line, empty
            if empty:
                at = self.fh.tell() - self.reader.rem_length() - len(line)
                raise _FramingDamage("malformed_record", f"not a WARC record: {_short(line)}", at)
            raise _FramingDamage(
                "bad_content_length", f"record not followed by a blank line and the next record: {_short(line)}"
            )


# --------------------------------------------------------------------------------------------
# Resynchronisation scans


_WARC_LINE = re.compile(rb"\nWARC/1\.[01]\r?\n")


def _seek_record(source: _Source, after: int) -> bool:
    """Position ``source`` at the first line ``WARC/1.x`` starting after stream position ``after``.

    Reads forward holding one 1 MiB chunk plus a few bytes of overlap; False at the end of data.
    """
    while source.tell() < after:
        if not source.read(min(SCAN_CHUNK, after - source.tell())):
            return False
    window = b""
    while True:
        chunk = source.read(SCAN_CHUNK)
        if not chunk:
            return False
        window += chunk
        match = _WARC_LINE.search(window) if b"\nWARC/1." in window else None  # `in` is much faster
        if match:
            source.unread(window[match.start() + 1 :])
            return True
        window = window[-12:]


def _starts_warc_member(handle: Any, offset: int) -> bool:
    handle.seek(offset)
    data = handle.read(64 * KiB)
    try:
        return zlib.decompressobj(31).decompress(data, 16).startswith(b"WARC/")
    except zlib.error:
        return False


def _find_member(handle: Any, after: int) -> int | None:
    """File offset of the first gzip member at or after ``after`` that holds a WARC record."""
    buf_start, buf = after, b""
    while True:
        handle.seek(buf_start + len(buf))
        chunk = handle.read(SCAN_CHUNK)
        if not chunk:
            return None
        buf += chunk
        index = buf.find(GZIP_MAGIC)
        while index >= 0:
            if _starts_warc_member(handle, buf_start + index):
                return buf_start + index
            index = buf.find(GZIP_MAGIC, index + 1)
        keep = len(GZIP_MAGIC) - 1
        buf_start += len(buf) - keep
        buf = buf[-keep:]


# --------------------------------------------------------------------------------------------
# HTTP payload decoding (all bounded)


def _raw_chunks(stream: Any) -> Iterator[bytes]:
    while chunk := stream.read(READ_CHUNK):
        yield chunk


def _dechunk(stream: Any) -> Iterator[bytes]:
    """HTTP chunked transfer coding, streamed; falls back to plain data if it is not chunked."""
    first = True
    while True:
        line = stream.readline(64)
        if not line:
            return
        try:
            size = int(line.strip().split(b";")[0], 16)
        except ValueError:
            if first:  # declared chunked, stored de-chunked (common)
                yield line
                yield from _raw_chunks(stream)
            return
        first = False
        if size <= 0:
            return
        while size > 0:
            piece = stream.read(min(size, READ_CHUNK))
            if not piece:
                return
            size -= len(piece)
            yield piece
        stream.readline(64)  # CRLF after the chunk


def _inflate(chunks: Iterator[bytes], wbits: int, alt_wbits: int | None = None) -> Iterator[bytes]:
    """gzip/zlib/deflate content coding in pieces of at most 64 KiB of output (bombs stay small).

    If the very first bytes do not decode, the body was stored already decoded: passed through.
    """
    decomp, started = zlib.decompressobj(wbits), False
    for chunk in chunks:
        data = chunk
        while data:
            try:
                out = decomp.decompress(data, READ_CHUNK)
            except zlib.error:
                if started:
                    return  # damaged mid-way: keep what was decoded
                if alt_wbits is not None:
                    decomp, alt_wbits = zlib.decompressobj(alt_wbits), None
                    continue
                yield data
                yield from chunks
                return
            started = True
            if out:
                yield out
            if decomp.eof:
                rest = decomp.unused_data
                if wbits == 47 and rest.startswith(b"\x1f\x8b"):
                    decomp, data = zlib.decompressobj(wbits), rest
                    continue
                return
            data = decomp.unconsumed_tail
    while started and (out := decomp.decompress(b"", READ_CHUNK)):
        yield out


def _unbrotli(chunks: Iterator[bytes]) -> Iterator[bytes]:
    try:
        import brotli
    except ImportError:  # pragma: no cover - brotli is a warcio/urllib3 extra
        yield from chunks
        return
    decomp, started = brotli.Decompressor(), False
    for chunk in chunks:
        try:
            out = decomp.process(chunk, output_buffer_limit=READ_CHUNK)
            while True:
                if out:
                    yield out
                if decomp.can_accept_more_data() or decomp.is_finished():
                    break
                out = decomp.process(b"", output_buffer_limit=READ_CHUNK)
                if not out:
                    break
        except brotli.error:
            if not started:
                yield chunk
                yield from chunks
            return
        started = True


def _take(chunks: Iterator[bytes], cap: int) -> bytes | None:
    """All bytes, or None as soon as there are more than ``cap`` (never holding more)."""
    parts, size = [], 0
    try:
        for chunk in chunks:
            size += len(chunk)
            if size > cap:
                return None
            parts.append(chunk)
    finally:
        close = getattr(chunks, "close", None)
        if close:
            close()
    return b"".join(parts)


def read_payload(stream: Any, http_headers: Any, cap: int) -> bytes | None:
    """The decoded HTTP payload of a record (after its HTTP headers), or None if over ``cap``."""
    chunks: Iterator[bytes]
    if (http_headers.get_header("Transfer-Encoding") or "").strip().lower() == "chunked":
        chunks = _dechunk(stream)
    else:
        chunks = _raw_chunks(stream)
    encoding = (http_headers.get_header("Content-Encoding") or "").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        chunks = _inflate(chunks, 47)  # gzip or zlib header
    elif encoding == "deflate":
        chunks = _inflate(chunks, 15, alt_wbits=-15)  # zlib-wrapped, else raw deflate
    elif encoding == "br":
        chunks = _unbrotli(chunks)
    return _take(chunks, cap)


# --------------------------------------------------------------------------------------------
# Charsets


_WIDER = {"gbk": "gb18030", "gb2312": "gb18030", "shift_jis": "cp932", "euc_kr": "cp949", "big5": "big5hkscs"}
_MULTIBYTE = {"utf-8", "gb18030", "cp932", "euc_jp", "cp949", "big5hkscs", "iso2022_jp", "utf-16-le", "utf-16-be"}
_WEB_DEFAULT = "cp1252"  # what iso-8859-1, latin1, us-ascii and windows-1252 labels mean on the web
# Single-byte charsets of other scripts: detection may replace a declared web default with one
# of these (a Cyrillic page served as "iso-8859-1"), never with another Latin one (cp1250 and
# cp1252 disagree on French letters, and uchardet can mistake one for the other on short text).
_OTHER_SCRIPTS = {
    "cp1251", "koi8-r", "koi8-u", "iso8859-5", "cp866",  # Cyrillic
    "cp1253", "iso8859-7",  # Greek
    "cp1255", "iso8859-8",  # Hebrew
    "cp1256", "iso8859-6",  # Arabic
    "iso8859-11",  # Thai
}  # fmt: skip
_META_CHARSET = re.compile(rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:+-]{1,40})""", re.I)
_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


def charset_codec(label: str | None) -> str | None:
    """A Python codec for a charset label, mapped as browsers map it; None if unknown."""
    if not label:
        return None
    from resiliparse.parse.encoding import map_encoding_to_html5

    codec = map_encoding_to_html5(label.strip().strip("\"'").lower(), fallback_utf8=False)
    return _WIDER.get(codec, codec) if codec else None


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def _detect(data: bytes) -> str | None:
    from resiliparse.parse.encoding import detect_encoding

    codec = charset_codec(detect_encoding(data))
    return codec


def decode_payload(data: bytes, header_charset: str | None, html: bool) -> tuple[str, str, str]:
    """(text, codec, charset_source) following the policy in the module docstring."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(codec, errors="replace"), codec, "bom"
    declared: list[tuple[str, str]] = []
    if codec := charset_codec(header_charset):
        declared.append((codec, "header"))
    if html and (match := _META_CHARSET.search(data[: 4 * KiB])):
        if codec := charset_codec(match.group(1).decode("ascii")):
            declared.append((codec, "meta"))
    text = _strict(data, "utf-8")
    if text is not None:
        source = next((src for codec, src in declared if codec == "utf-8"), "utf-8")
        return text, "utf-8", source
    detected: list[str | None] = []

    def detect() -> str | None:
        if not detected:
            detected.append(_detect(data))
        return detected[0]

    for codec, source in declared:
        if codec == "utf-8":
            continue  # the bytes are not UTF-8: the declaration is wrong
        if codec not in _MULTIBYTE:  # any bytes decode: ask detection for a better answer
            guess = detect()
            better = guess in _MULTIBYTE or (codec == _WEB_DEFAULT and guess in _OTHER_SCRIPTS)
            if guess and guess != codec and better:
                if (text := _strict(data, guess)) is not None:
                    return text, guess, "detected"
        if (text := _strict(data, codec)) is not None:
            return text, codec, source
    guess = detect()
    if guess and guess != "utf-8":
        return data.decode(guess, errors="replace"), guess, "detected"
    return data.decode("utf-8", errors="replace"), "utf-8", "utf-8"


def parse_content_type(value: str | None) -> tuple[str | None, str | None]:
    """(media type in lower case, charset parameter) of a Content-Type header."""
    if not value:
        return None, None
    media, *params = value.split(";")
    charset = None
    for param in params:
        name, _, val = param.partition("=")
        if name.strip().lower() == "charset" and val.strip():
            charset = val.strip().strip("\"'")
    return media.strip().lower() or None, charset


def _looks_html(data: bytes) -> bool:
    head = data[:1024].lower()
    return b"<html" in head or b"<!doctype html" in head or b"<head" in head or b"<body" in head


def _warc_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def _short(data: bytes | str) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.strip()
    return repr(text[:DETAIL_CHARS] + ("..." if len(text) > DETAIL_CHARS else ""))


# --------------------------------------------------------------------------------------------
# The reader


class _WarcReader:
    def __init__(self, handle: Any, file: dict[str, Any], config: WarcIngestConfig) -> None:
        self.handle, self.config = handle, config
        self.path, self.rel = file["path"], file["rel"]
        self.budget = _Budget(config.max_decompressed_bytes)
        self.gzip = False
        self.http_parser = StatusAndHeadersParser(["HTTP/1.0", "HTTP/1.1"], verify=False)
        self.content_types = {t.strip().lower() for t in config.content_types}

    # -- whole file ---------------------------------------------------------------------------

    def rows(self) -> Iterator[dict[str, Any]]:
        self.handle.seek(0)
        head = self.handle.read(64 * KiB)
        if not head:
            yield rejected_row(self.config, self.rel, "not_warc", f"{self.path}: empty file")
            return
        self.gzip = head.startswith(GZIP_MAGIC[:2])
        source: _Source | None
        source = _GzipSource(self.handle, 0, 0, self.budget) if self.gzip else _RawSource(self.handle, 0)
        problem = self._first_record_problem(head)
        if problem:
            # A damaged first record, or no WARC at all: one scan of the file tells which.
            reason, message = problem
            source = None if reason == "not_warc" else self._first_record_after_start()
            if source is None:
                yield rejected_row(self.config, self.rel, "not_warc", f"{self.path}: {message}")
                return
            resumed = self._where(source, source.tell())
            yield self._damage_row(reason, 0, f"{message}; resumed at offset {resumed}")
        # Each resynchronisation moves strictly forward (to a later gzip member, or to a later
        # position in the same member), so this ends.
        while source is not None:
            source = yield from self._segment(source)

    def _first_record_problem(self, head: bytes) -> tuple[str, str] | None:
        """None if the file starts with a WARC record (plain or gzip), else (reason, what it is instead)."""
        if self.gzip:
            try:
                start = zlib.decompressobj(31).decompress(head, 64)
            except zlib.error as exc:
                return "corrupt_gzip", f"gzip data that cannot be decompressed ({exc})"
            if start.startswith(b"WARC/"):
                return None
            return "corrupt_gzip", f"gzip data that is not WARC: {_short(start[:40])}"
        if head.startswith(b"WARC/"):
            return None
        if head.startswith(b"filedesc://"):
            return "not_warc", "ARC file (only WARC is supported)"
        return "malformed_record", f"does not start with a WARC record: {_short(head[:40])}"

    def _first_record_after_start(self) -> _Source | None:
        if not self.gzip:
            source = _RawSource(self.handle, 0)
            if _seek_record(source, 0):
                return source
        member = _find_member(self.handle, 1)  # also when the gzip magic itself is damaged
        if member is None:
            return None
        self.gzip = True
        return _GzipSource(self.handle, member, 0, self.budget)

    # -- one stretch of undamaged records -----------------------------------------------------

    def _segment(self, source: _Source) -> Iterator[dict[str, Any]]:
        """Rows until the data ends (returns None) or a damage (returns the resynchronised source)."""
        records = _Records(source)
        stream = iter(records)
        while True:
            start = records.offset  # where the next record begins (blank lines consumed)
            records.reader.reset()
            try:
                record = next(stream)
            except StopIteration:
                return None
            except _GzipDamage as exc:
                return (yield from self._after_gzip_damage(exc, source))
            except (ArchiveLoadFailed, _HeaderTooLong) as exc:
                return (yield from self._after_framing_damage(source, start, "malformed_record", _short(str(exc))))
            except (DecompressionLimit, OSError):
                raise
            except Exception as exc:  # noqa: BLE001 - a record warcio cannot parse must not end the file
                message = f"{type(exc).__name__}: {_short(str(exc))}"
                return (yield from self._after_framing_damage(source, start, "malformed_record", message))

            row = None
            try:
                row = self._record_row(record, start, source)
                records.read_to_end()
                if isinstance(record.raw_stream, LimitReader) and record.raw_stream.limit > 0:
                    raise _FramingDamage(
                        "truncated_record",
                        f"file ends {record.raw_stream.limit} bytes before the record's Content-Length",
                    )
            except _GzipDamage as exc:
                if row is not None and self._complete_before(record, exc, source, start):
                    yield row  # the damage is in a later member, found while looking for the next record
                    return (yield from self._after_gzip_damage(exc, source))
                return (yield from self._after_gzip_damage(exc, source, start))
            except _FramingDamage as exc:
                if exc.at is not None:  # junk after a complete record: the record stands
                    if row is not None:
                        yield row
                    return (yield from self._after_framing_damage(source, exc.at, exc.reason, exc.message))
                return (yield from self._after_framing_damage(source, start, exc.reason, exc.message))
            except _HeaderTooLong as exc:  # garbage after the record: its Content-Length is wrong
                return (yield from self._after_framing_damage(source, start, "bad_content_length", str(exc)))
            except DecompressionLimit:
                if row is not None and getattr(record.raw_stream, "limit", 1) == 0:
                    yield row
                raise
            except OSError:
                raise
            except Exception as exc:  # noqa: BLE001
                message = f"{type(exc).__name__}: {_short(str(exc))}"
                return (yield from self._after_framing_damage(source, start, "malformed_record", message))
            if row is not None:
                yield row

    def _complete_before(self, record: Any, exc: _GzipDamage, source: _Source, start: int) -> bool:
        """The record was read completely and the damage lies in a later gzip member."""
        return getattr(record.raw_stream, "limit", 1) == 0 and exc.member != source.locate(start)[0]

    # -- damage ------------------------------------------------------------------------------

    def _where(self, source: _Source, pos: int) -> str:
        offset, inner = source.locate(pos)
        return f"{offset}" + (f" (+{inner} in its gzip member)" if inner else "")

    def _damage_row(self, reason: str, offset: int | str, message: str) -> dict[str, Any]:
        detail = f"{self.path} at offset {offset}: {message}"
        return rejected_row(self.config, f"{self.rel}@{offset}:{reason}", reason, detail)

    def _after_framing_damage(self, source: _Source, start: int, reason: str, message: str) -> Iterator[dict[str, Any]]:
        """Reject, then rescan the stream from just after ``start`` for the next ``WARC/1.x`` line."""
        where = self._where(source, start)
        if isinstance(source, _GzipSource):
            member, inner = source.locate(start)
            fresh: _Source = _GzipSource(self.handle, member, start - inner, self.budget)
        else:
            fresh = _RawSource(self.handle, start)
        try:
            found = _seek_record(fresh, start)
        except _GzipDamage as exc:
            yield self._damage_row(reason, where, f"{message}; resynchronising hit damaged gzip data")
            return (yield from self._after_gzip_damage(exc, fresh))
        if not found:
            yield self._damage_row(reason, where, f"{message}; no record after it")
            return None
        yield self._damage_row(reason, where, f"{message}; resumed at offset {self._where(fresh, fresh.tell())}")
        return fresh

    def _after_gzip_damage(
        self, exc: _GzipDamage, source: _Source, record_start: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Reject, then scan the file for the next gzip member that holds a WARC record."""
        message = exc.message
        if record_start is not None:
            record_offset = self._where(source, record_start)
            if record_offset != str(exc.member):
                message += f" (reading the record at offset {record_offset})"
        resume = _find_member(self.handle, exc.member + 1)
        if resume is None:
            yield self._damage_row(exc.reason, exc.member, f"{message}; no record after it")
            return None
        yield self._damage_row(exc.reason, exc.member, f"{message}; resumed at offset {resume}")
        high = source.out if isinstance(source, _GzipSource) else 0
        return _GzipSource(self.handle, resume, high, self.budget)

    # -- one record ---------------------------------------------------------------------------

    def _record_row(self, record: Any, start: int, source: _Source) -> dict[str, Any] | None:
        headers = record.rec_headers
        length = (headers.get_header("Content-Length") or "").strip()
        if not length.isdigit():
            raise _FramingDamage("malformed_record", f"missing or invalid Content-Length {length!r}")
        uri = headers.get_header("WARC-Target-URI") or ""
        if record.rec_type != "response" or not uri.lower().startswith(("http:", "https:")):
            return None

        config = self.config
        offset, inner = source.locate(start)
        record_id = headers.get_header("WARC-Record-ID") or ""
        where = f"{self.path} at offset {self._where(source, start)}"
        locator = f"{uri}@{record_id}" if record_id else f"{uri}@{self.rel}@{offset}"
        metadata: dict[str, str] = {"warc_file": self.rel, "warc_record_id": record_id, "warc_offset": str(offset)}
        if inner:
            metadata["warc_offset_in_member"] = str(inner)
        if truncated := headers.get_header("WARC-Truncated"):
            metadata["warc_truncated"] = truncated
        fields: dict[str, Any] = {"url": uri, "fetched_at": _warc_date(headers.get_header("WARC-Date"))}

        def reject(reason: str, message: str, bytes_in: int = 0) -> dict[str, Any]:
            return rejected_row(config, locator, reason, f"{where}: {message}", bytes_in, metadata=metadata, **fields)

        if int(length) == 0:
            return reject("empty_text", "empty response record")
        stream = record.raw_stream
        try:
            http = self.http_parser.parse(stream)
        except EOFError:
            raise _FramingDamage("truncated_record", "file ends inside the record's HTTP headers") from None
        except _HeaderTooLong as exc:
            return reject("malformed_http", str(exc))
        payload_size = max(int(length) - stream.tell(), 0)
        status_text = (http.get_statuscode() or "") if http.protocol.upper().startswith("HTTP/") else ""
        if not status_text.isdigit():
            line = f"{http.protocol} {http.statusline}".strip()
            return reject("malformed_http", f"no HTTP status line: {_short(line)}", payload_size)
        metadata["http_status"] = status_text
        if status_text != "200":
            return reject("http_status", f"HTTP {status_text} for {uri}", payload_size)
        media, charset = parse_content_type(
            http.get_header("Content-Type") or headers.get_header("WARC-Identified-Payload-Type")
        )
        if media is not None:
            metadata["content_type"] = media
            if media not in self.content_types:
                return reject("content_type", f"content type {media!r} for {uri}", payload_size)

        body = read_payload(stream, http, config.max_record_bytes)
        if body is None:
            return reject(
                "record_too_large",
                f"HTTP payload over {config.max_record_bytes} bytes (decoded) for {uri}",
                payload_size,
            )
        if not body.strip():
            return reject("empty_text", f"empty HTTP payload for {uri}", payload_size)
        if media is None:
            media = "text/html" if _looks_html(body) else "text/plain"
            metadata["content_type"] = media
            if media not in self.content_types:
                return reject("content_type", f"no content type, looks like {media} for {uri}", payload_size)
        utf16 = body.startswith((b"\xff\xfe", b"\xfe\xff"))
        if not utf16 and looks_binary(body):
            return reject("binary_content", f"binary data served as {media} for {uri}", payload_size)

        is_html = "html" in media
        text, codec, charset_source = decode_payload(body, charset, is_html)
        metadata["charset"], metadata["charset_source"] = codec, charset_source
        title = None
        if is_html:
            text, title = html_to_text(text, config.html_main_content)
        else:
            text = text.strip()
        text = text.replace("\x00", "")
        row = working_row(config, locator, title=title, text=text, metadata=metadata, **{BYTES_IN: payload_size}, **fields)
        return keep_or_drop(row, where, config)


def read_warc(file: dict[str, Any], config: WarcIngestConfig) -> Iterator[dict[str, Any]]:
    """All working rows of one WARC file. Never raises for bad content: damage becomes rejected rows."""
    path, rel = file["path"], file["rel"]
    if file["size"] > config.max_file_bytes:
        detail = f"{path}: {file['size']} bytes > {config.max_file_bytes}"
        yield rejected_row(config, rel, "file_too_large", detail, file["size"])
        return
    try:
        with open_binary(path) as handle:
            reader = _WarcReader(handle, file, config)
            try:
                yield from reader.rows()
            except DecompressionLimit as exc:
                where = f"{path} at offset {exc.member}" if isinstance(exc, _OverBudget) else path
                yield rejected_row(config, rel + "#gzip", "decompression_limit", f"{where}: {exc}; rest of the file skipped")
    except OSError as exc:
        yield rejected_row(config, rel + "#read", "read_error", f"{path}: {exc}")


class IngestWarcStage(IngestStage):
    """Stage ``ingest-warc``: WARC files (our crawler's, Common Crawl's) -> documents."""

    name = "ingest-warc"
    section = "ingest_warc"
    summary = "WARC / WARC.gz response records -> main text, url, title, date (resiliparse)"
    Config = WarcIngestConfig

    def list_files(self, inputs: list[Path], config: BaseModel) -> tuple[list[dict[str, Any]], dict[str, int]]:
        return list_warc_files(inputs)

    def no_files_message(self, inputs: list[Path], config: BaseModel) -> str:
        return f"ingest-warc: no .warc or .warc.gz files under {', '.join(map(str, inputs))}"

    @staticmethod
    def read_one(file: dict[str, Any], config: Any) -> Iterator[dict[str, Any]]:
        return read_warc(file, config)
