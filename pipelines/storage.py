"""Where stages read and write: local paths and storage URIs through one layer.

A location is a local path (``/data/in``, ``~/corpus``: a :class:`pathlib.Path`) or a URI
(``file:///data/in``, ``s3a://bucket/prefix``, ``gs://bucket/prefix``, ``hdfs://namenode/path``:
a :class:`upath.UPath`, i.e. pathlib's API over an fsspec filesystem). Spark gets ``str(location)``
and reads it with Hadoop's filesystems; the driver (listing, stats, completion markers) and the
Python code on executors (raw-file readers, shard writers) go through this module, so a stage
never needs a file that only the driver can see.

URIs need the fsspec backend of their scheme on the driver *and* the executors (``s3fs`` for
``s3a://``/``s3://``, ``gcsfs`` for ``gs://``, pyarrow's libhdfs binding for ``hdfs://``: the
``cloud`` extra), and Spark needs the matching Hadoop connector jars (``hadoop-aws``,
``gcs-connector``); see docs/scaling.md. Credentials come from each library's usual environment
(``AWS_ACCESS_KEY_ID``…, ``GOOGLE_APPLICATION_CREDENTIALS``), never from a recipe.

What differs on object stores: there is no atomic directory rename, so
:func:`pipelines.stage.publish` moves the finished files first and writes the completion marker
last (readers trust ``_SUCCESS``, not the directory's existence), and there are no file locks, so
two runs must not write one output (a flow runs each stage once).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import IO, Any, Iterator


def location(value: "str | os.PathLike[str] | Path") -> Path:
    """A local :class:`Path` for a path, a :class:`upath.UPath` for a URI (``scheme://``)."""
    if isinstance(value, Path) or _is_upath(value):
        return value  # type: ignore[return-value]
    text = os.fspath(value)
    if "://" in text:
        from upath import UPath

        return UPath(text)  # type: ignore[return-value]
    return Path(text).expanduser()


def _is_upath(value: Any) -> bool:
    return type(value).__module__.startswith("upath")


def is_uri(path: Path) -> bool:
    """True for a URI location (its I/O goes through fsspec), False for a local path."""
    return not isinstance(path, Path)


def absolute(path: Path) -> Path:
    """The location made absolute (local paths resolved; URIs are absolute already)."""
    return path if is_uri(path) else path.resolve()


def open_binary(where: "str | Path", mode: str = "rb") -> IO[bytes]:
    """Open a file for reading or writing bytes, wherever it is (on a driver or an executor)."""
    path = location(where)
    if is_uri(path):
        return path.open(mode)  # type: ignore[return-value]
    return open(path, mode)


def walk_files(root: Path) -> Iterator[tuple[str, int, int]]:
    """(path relative to ``root``, size, modification time in ns) of every file below ``root``,
    in a stable order. On object stores the time is the object's last-modified time."""
    if is_uri(root):
        fs, base = root.fs, root.path.rstrip("/")  # type: ignore[attr-defined]
        for name, info in sorted(fs.find(base, detail=True).items()):
            if info.get("type") == "directory":
                continue
            mtime = info.get("mtime") or info.get("LastModified") or info.get("updated") or 0
            if hasattr(mtime, "timestamp"):
                mtime = mtime.timestamp()
            yield name[len(base) + 1 :], int(info.get("size") or 0), int(float(mtime) * 1e9)
        return
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            full = Path(dirpath, name)
            try:
                st = full.stat()
            except OSError:
                continue
            yield str(full.relative_to(root)), st.st_size, st.st_mtime_ns


def write_text(path: Path, text: str) -> None:
    """Write a small file so that readers see the old content or the new, never a part.

    Local: a temporary file, fsync, rename. Object stores: one put (atomic by itself)."""
    if is_uri(path):
        path.write_text(text)
        return
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def remove_tree(path: Path) -> None:
    """Remove a directory (or file) and everything below it; nothing if it does not exist."""
    if is_uri(path):
        fs, where = path.fs, path.path  # type: ignore[attr-defined]
        if fs.exists(where):
            fs.rm(where, recursive=True)
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def move_tree(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` (a rename locally; copy and delete on object stores)."""
    if not is_uri(source):
        os.rename(source, target)
        return
    # File by file: a directory move's meaning (into or onto the target) differs between fsspec
    # backends; one file's move is a rename locally and a server-side copy + delete on S3/GCS.
    fs = source.fs  # type: ignore[attr-defined]
    base, dest = source.path.rstrip("/"), target.path.rstrip("/")  # type: ignore[attr-defined]
    # ``_``-prefixed entries (``_rejects/``) first: a move cut short then leaves a directory that
    # readers recognise as an unfinished stage output (pipelines.schema.unfinished_output).
    def underscore_first(item: tuple[str, Any]) -> tuple[bool, str]:
        return not item[0][len(base) + 1 :].startswith("_"), item[0]

    for name, info in sorted(fs.find(base, detail=True).items(), key=underscore_first):
        if info.get("type") != "directory":
            destination = dest + name[len(base) :]
            fs.makedirs(destination.rsplit("/", 1)[0], exist_ok=True)
            fs.mv(name, destination)
    if fs.exists(base):
        fs.rm(base, recursive=True)


def arrow_filesystem(path: Path) -> tuple[Any, str]:
    """(pyarrow filesystem or None, path) for pyarrow's readers (``ds.dataset``, ``pq``)."""
    if not is_uri(path):
        return None, str(path)
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    return PyFileSystem(FSSpecHandler(path.fs)), path.path  # type: ignore[attr-defined]
