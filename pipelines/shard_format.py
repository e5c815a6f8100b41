"""The token shard format: Arrow IPC stream files plus a ``manifest.json`` written last.

Readable without corpusforge: ``pyarrow.ipc.open_stream(path).read_all()`` or
``datasets.Dataset.from_file(path)`` (Hugging Face datasets stores its own tables as IPC
*streams*, which is why shards are streams, not IPC "files" with a footer).

A shard's columns:

- ``id`` (string): the document id from the corpus;
- ``input_ids`` (list<uint16> when the vocabulary has at most 65,536 ids, else list<uint32>):
  the document's tokens, EOS appended;
- ``loss_mask`` (list<uint8>, only when the input held conversations): 1 on the tokens a
  model should learn (the assistant's), 0 elsewhere; a plain text document is all 1.

``manifest.json`` (see :func:`write_manifest`) lists every shard with its documents, tokens,
bytes and SHA-256. It is written after every shard is complete, so a directory without one
is unfinished; a shard on disk that it does not list, or whose checksum differs, is refused
at load time (:func:`verify_shards`).

This module imports neither Spark nor Prefect: trainers read shards with it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pyarrow as pa

from pipelines.storage import is_uri, open_binary, write_text

FORMAT_NAME = "corpusforge-token-shards"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
SHARD_SUFFIX = ".arrow"
UINT16_LIMIT = 1 << 16
ROWS_PER_BATCH = 1024
_HASH_CHUNK = 1 << 22


# The types a reader may rely on (shard_schema writes exactly these).
_COLUMN_TYPES = {
    "id": (pa.string(),),
    "input_ids": (pa.list_(pa.uint16()), pa.list_(pa.uint32())),
    "loss_mask": (pa.list_(pa.uint8()),),
}


class ShardFormatError(ValueError):
    """A manifest or shard that cannot be trusted; the message names the file."""


def token_type(vocab_size: int) -> pa.DataType:
    """uint16 when every id fits (vocabulary of at most 65,536), else uint32."""
    return pa.uint16() if vocab_size <= UINT16_LIMIT else pa.uint32()


def shard_schema(token_dtype: pa.DataType, with_loss_mask: bool) -> pa.Schema:
    fields = [pa.field("id", pa.string()), pa.field("input_ids", pa.list_(token_dtype))]
    if with_loss_mask:
        fields.append(pa.field("loss_mask", pa.list_(pa.uint8())))
    return pa.schema(fields)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ShardInfo:
    """One manifest entry; ``path`` is relative to the manifest's directory."""

    path: str
    docs: int
    tokens: int
    bytes: int
    sha256: str


@dataclass
class Manifest:
    tokenizer: dict[str, Any]
    token_dtype: str
    has_loss_mask: bool
    shards: list[ShardInfo]
    recipe_hash: str = ""
    created_at: str = ""
    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION
    totals: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.totals = {
            "shards": len(self.shards),
            "docs": sum(s.docs for s in self.shards),
            "tokens": sum(s.tokens for s in self.shards),
            "bytes": sum(s.bytes for s in self.shards),
        }


class _HashingSink:
    """A binary file wrapper that counts and hashes what is written through it.

    A failed write (a full disk: ENOSPC, EFBIG) is re-raised naming the file, which the OS's own
    error for a write does not."""

    def __init__(self, raw: Any, name: str = "") -> None:
        self.raw = raw
        self.name = name
        self.digest = hashlib.sha256()
        self.size = 0
        self.closed = False

    def _named(self, exc: OSError) -> OSError:
        return exc if exc.filename or not self.name else OSError(exc.errno, exc.strerror, self.name)

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.digest.update(view)
        self.size += view.nbytes
        try:
            return self.raw.write(view)
        except OSError as exc:
            raise self._named(exc) from exc

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        try:
            self.raw.flush()
        except OSError as exc:
            raise self._named(exc) from exc

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.raw.close()
            except OSError as exc:
                raise self._named(exc) from exc


class ShardWriter:
    """Writes one shard: ``add`` documents, then ``close`` returns its :class:`ShardInfo`.

    Locally the shard is written to a hidden temporary name and renamed when closed, so a
    killed writer leaves no file that looks like a shard. On a URI (object store) the shard is
    one object, put when closed (atomic by itself). Size and SHA-256 are taken while writing.
    """

    def __init__(self, path: Path, token_dtype: pa.DataType, with_loss_mask: bool) -> None:
        self.path = path
        self.schema = shard_schema(token_dtype, with_loss_mask)
        self._tmp = path if is_uri(path) else path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self._sink = _HashingSink(open_binary(self._tmp, "wb"), str(self._tmp))
        self._writer = pa.ipc.new_stream(pa.PythonFile(self._sink, mode="w"), self.schema)
        self._pending: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        self.docs = 0
        self.tokens = 0

    def add(self, doc_id: str, input_ids: Sequence[int], loss_mask: Sequence[int] | None = None) -> None:
        self._pending["id"].append(doc_id)
        self._pending["input_ids"].append(input_ids)
        if "loss_mask" in self._pending:
            self._pending["loss_mask"].append(loss_mask if loss_mask is not None else [1] * len(input_ids))
        self.docs += 1
        self.tokens += len(input_ids)
        if len(self._pending["id"]) >= ROWS_PER_BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._pending["id"]:
            return
        arrays = [pa.array(self._pending[f.name], type=f.type) for f in self.schema]
        self._writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        self._pending = {name: [] for name in self.schema.names}

    def close(self) -> ShardInfo:
        self._flush()
        self._writer.close()
        self._sink.close()
        if self._tmp != self.path:
            os.replace(self._tmp, self.path)
        return ShardInfo(self.path.name, self.docs, self.tokens, self._sink.size, self._sink.digest.hexdigest())

    def abort(self) -> None:
        """Drop the unfinished shard. Errors closing it are ignored: abort runs while another
        error (often the same full disk) propagates, and must neither hide it nor keep the file."""
        for close in (self._writer.close, self._sink.close):
            try:
                close()
            except Exception:  # noqa: BLE001
                pass
        if self._tmp != self.path:
            self._tmp.unlink(missing_ok=True)


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically (see :func:`pipelines.storage.write_text`)."""
    target = directory / MANIFEST_FILE
    write_text(target, json.dumps(asdict(manifest), indent=2) + "\n")
    return target


def manifest_path(location: str | os.PathLike[str]) -> Path:
    """``location`` itself when it is a manifest file, else ``location/manifest.json``."""
    path = Path(location)
    return path if path.is_file() else path / MANIFEST_FILE


def read_manifest(location: str | os.PathLike[str]) -> Manifest:
    """Parse and check a manifest; errors name the file and what is wrong."""
    path = manifest_path(location)
    if not path.is_file():
        hint = " (the tokenize stage writes it last: is the output finished?)" if path.parent.is_dir() else ""
        raise ShardFormatError(f"{path}: no manifest{hint}")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ShardFormatError(f"{path}: not a readable JSON manifest ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise ShardFormatError(f"{path}: not a corpusforge shard manifest (format != {FORMAT_NAME!r})")
    if data.get("version") != FORMAT_VERSION:
        raise ShardFormatError(f"{path}: manifest version {data.get('version')!r}, this reader knows {FORMAT_VERSION}")
    try:
        shards = [ShardInfo(**entry) for entry in data["shards"]]
        manifest = Manifest(
            tokenizer=data["tokenizer"],
            token_dtype=data["token_dtype"],
            has_loss_mask=bool(data["has_loss_mask"]),
            shards=shards,
            recipe_hash=data.get("recipe_hash", ""),
            created_at=data.get("created_at", ""),
        )
    except (KeyError, TypeError) as exc:
        raise ShardFormatError(f"{path}: malformed manifest ({exc!r})") from exc
    for number, shard in enumerate(manifest.shards):
        counts = (shard.docs, shard.tokens, shard.bytes)
        counts_ok = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts)
        if not (isinstance(shard.path, str) and shard.path and isinstance(shard.sha256, str) and counts_ok):
            raise ShardFormatError(f"{path}: malformed shard entry {number} ({shard})")
    # A shard listed twice would be read twice per epoch.
    repeated = sorted(name for name, count in Counter(s.path for s in manifest.shards).items() if count > 1)
    if repeated:
        raise ShardFormatError(f"{path}: shard(s) listed more than once: {', '.join(repeated[:5])}")
    if manifest.token_dtype not in ("uint16", "uint32"):
        raise ShardFormatError(f"{path}: token_dtype {manifest.token_dtype!r} is neither uint16 nor uint32")
    return manifest


def verify_shards(location: str | os.PathLike[str], manifest: Manifest, *, checksums: bool = True) -> None:
    """Refuse shards the manifest does not list, listed shards that are missing or of another
    size, and (with ``checksums``) any whose SHA-256 differs."""
    root = manifest_path(location).parent
    listed = {s.path for s in manifest.shards}
    on_disk = {p.name for p in root.glob(f"*{SHARD_SUFFIX}")}
    unlisted = sorted(on_disk - listed)
    if unlisted:
        raise ShardFormatError(
            f"{root}: shard(s) not in {MANIFEST_FILE}: {', '.join(unlisted[:5])}"
            + (f" and {len(unlisted) - 5} more" if len(unlisted) > 5 else "")
        )
    for shard in manifest.shards:
        path = root / shard.path
        if not path.is_file():
            raise ShardFormatError(f"{path}: listed in {MANIFEST_FILE} but missing")
        size = path.stat().st_size
        if size != shard.bytes:
            raise ShardFormatError(f"{path}: {size} bytes, the manifest says {shard.bytes} (truncated or replaced?)")
        if checksums and file_sha256(path) != shard.sha256:
            raise ShardFormatError(f"{path}: SHA-256 differs from the manifest (corrupted or replaced)")


def open_shard(path: Path, shard: ShardInfo | None = None) -> pa.Table:
    """The shard as a memory-mapped Arrow table; a foreign, truncated or structurally corrupt
    file is a ShardFormatError.

    The table is validated in full (offsets in bounds and monotonic, ids valid UTF-8): a
    corrupted file that kept its size passes ``verify_shards(checksums=False)``, and its bad
    offsets must not reach code that indexes the memory map with them.
    """
    try:
        source = pa.memory_map(str(path), "r")
        table = pa.ipc.open_stream(source).read_all()
        table.validate(full=True)
    # ArrowException covers ArrowNotImplementedError (a corrupt type code) too; a corrupt field
    # name surfaces as UnicodeDecodeError, a ValueError.
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ShardFormatError(f"{path}: not a readable Arrow IPC stream ({exc})") from exc
    if "input_ids" not in table.column_names or "id" not in table.column_names:
        raise ShardFormatError(f"{path}: missing columns (has {', '.join(table.column_names)}; needs id, input_ids)")
    for name, found in zip(table.column_names, table.schema.types):
        if name in _COLUMN_TYPES and found not in _COLUMN_TYPES[name]:
            allowed = " or ".join(str(t) for t in _COLUMN_TYPES[name])
            raise ShardFormatError(f"{path}: column {name} is {found}, expected {allowed}")
    if shard is not None and table.num_rows != shard.docs:
        raise ShardFormatError(f"{path}: {table.num_rows} documents, the manifest says {shard.docs}")
    return table


def iter_shard_paths(location: str | os.PathLike[str], manifest: Manifest) -> Iterable[tuple[Path, ShardInfo]]:
    root = manifest_path(location).parent
    for shard in manifest.shards:
        yield root / shard.path, shard
