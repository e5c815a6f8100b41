"""Decontamination: does a generated text share a word n-gram with an evaluation set?

Generated training data must not contain the benchmarks it will be scored on. Following
GPT-3's and later models' practice, a text is contaminated when it shares one word n-gram
(``ngram`` = 13 by default) with any item of the user's evaluation sets; an eval item
shorter than ``ngram`` words but at least ``min_ngram`` words long (8) counts as one n-gram
of its own length, so short questions are caught whole; shorter items are ignored (a
handful of words is common language, not a leak).

Normalization, on both sides: lower case, then words of any script
(:func:`filters.text.split_words`, which strips punctuation; characters for Chinese and
Japanese), so punctuation and spacing differences do not hide a copy.

Eval sets (``eval_sets``), by suffix:

* ``.jsonl``: one JSON value per line; every string in it is an item (objects and lists
  are walked), or only the keys named in ``fields``;
* ``.json``: one JSON value (a list of records, usually), read the same way;
* ``.txt``: one item per non-blank line;
* ``.parquet``: every string column, or the ``fields`` columns.

A malformed line is skipped and listed (``file:line``) in :attr:`Decontaminator.skipped`;
a file that cannot be read at all, or yields no item, raises :class:`EvalSetError`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from pydantic import Field

from filters.base import FilterConfig
from filters.text import split_words


class EvalSetError(ValueError):
    """An evaluation set is missing, unreadable or empty; the message names the file."""


class DecontamConfig(FilterConfig):
    """``<stage>.filters.decontamination``."""

    eval_sets: list[str] = Field(default_factory=list, description=".jsonl / .json / .txt / .parquet files")
    fields: list[str] | None = Field(
        None, description="JSON keys / Parquet columns holding the eval text (default: every string)"
    )
    ngram: int = Field(13, ge=1, description="word n-gram length")
    min_ngram: int = Field(8, ge=1, description="eval items shorter than this many words are ignored")


def normalized_words(text: str) -> list[str]:
    return [w.lower() for w in split_words(text)]


def _strings(value: Any, fields: set[str] | None, inside: bool = False) -> Iterator[str]:
    """Every string in a JSON value; with ``fields``, only those under one of those keys."""
    if isinstance(value, str):
        if fields is None or inside:
            yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, fields, inside or (fields is not None and key in fields))
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, fields, inside)


class Decontaminator:
    """The n-grams of the eval sets, loaded once; :meth:`check` looks a text up."""

    def __init__(self, config: DecontamConfig) -> None:
        if config.min_ngram > config.ngram:
            raise EvalSetError(f"decontamination: min_ngram ({config.min_ngram}) is larger than ngram ({config.ngram})")
        self.config = config
        self.fields = set(config.fields) if config.fields else None
        self.skipped: list[str] = []
        self.items: dict[str, int] = {}  # eval set -> items used
        # length -> hash of the n-gram's words joined by spaces -> eval set. Hashes, not the
        # n-grams, take a fraction of the memory of 13-word tuples; a false match needs a
        # 64-bit collision (at 10^8 eval n-grams, about one lookup in 10^11).
        self._ngrams: dict[int, dict[int, str]] = {}
        paths = [Path(name) for name in config.eval_sets]
        names = [p.name for p in paths]
        for path in paths:
            # An eval set is named by its file name, or by its path when two share a name.
            label = path.name if names.count(path.name) == 1 else str(path)
            used = sum(self._add_item(text, label) for text in self._read(path))
            if not used:
                raise EvalSetError(
                    f"{path}: no evaluation item of at least {config.min_ngram} words "
                    f"(fields: {', '.join(sorted(self.fields)) if self.fields else 'every string'})"
                )
            self.items[label] = self.items.get(label, 0) + used

    def __reduce__(self) -> tuple[Any, tuple[DecontamConfig]]:
        # The table holds this process's str hashes (randomized per process): another process
        # rebuilds it from the files instead of receiving hashes that would never match there.
        return (type(self), (self.config,))

    def _add_item(self, text: str, eval_set: str) -> bool:
        words = normalized_words(text)
        n = self.config.ngram
        if len(words) < self.config.min_ngram:
            return False
        if len(words) < n:
            self._ngrams.setdefault(len(words), {}).setdefault(hash(" ".join(words)), eval_set)
            return True
        table = self._ngrams.setdefault(n, {})
        for start in range(len(words) - n + 1):
            table.setdefault(hash(" ".join(words[start : start + n])), eval_set)
        return True

    def _read(self, path: Path) -> Iterator[str]:
        if not path.is_file():
            raise EvalSetError(f"{path}: evaluation set not found")
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            yield from self._read_parquet(path)
            return
        if suffix not in (".jsonl", ".json", ".txt"):
            raise EvalSetError(f"{path}: unknown evaluation set format (use .jsonl, .json, .txt or .parquet)")
        try:
            handle = open(path, "rb")
        except OSError as exc:
            raise EvalSetError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        with handle:
            if suffix == ".json":
                try:
                    value = json.loads(handle.read().decode("utf-8", "replace"))
                except ValueError as exc:
                    raise EvalSetError(f"{path}: not valid JSON ({exc})") from None
                yield from _strings(value, self.fields)
                return
            for number, raw in enumerate(handle, 1):
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                if suffix == ".txt":
                    yield line
                    continue
                try:
                    value = json.loads(line)
                except ValueError as exc:
                    self.skipped.append(f"{path}:{number}: not valid JSON ({exc})")
                    continue
                yield from _strings(value, self.fields)

    def _read_parquet(self, path: Path) -> Iterator[str]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowException) as exc:
            raise EvalSetError(f"{path}: not a readable Parquet file ({exc})") from None
        if self.fields:
            missing = sorted(self.fields - set(schema.names))
            if missing:
                raise EvalSetError(f"{path}: no column {', '.join(missing)} (columns: {', '.join(schema.names)})")
            columns = sorted(self.fields)
        else:
            columns = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
            if not columns:
                raise EvalSetError(f"{path}: no string column; name the text columns in decontamination.fields")
        for batch in pq.ParquetFile(path).iter_batches(columns=columns, batch_size=4096):
            for column in batch.columns:
                for value in column.to_pylist():
                    yield from _strings(value, None)

    def check(self, text: str) -> tuple[str, str] | None:
        """``(eval set, the shared n-gram)`` for the first n-gram of ``text`` found in an eval
        set, else None."""
        words = normalized_words(text)
        for n, table in self._ngrams.items():
            for start in range(len(words) - n + 1):
                ngram = " ".join(words[start : start + n])
                found = table.get(hash(ngram))
                if found is not None:
                    return found, ngram
        return None
