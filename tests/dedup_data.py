"""A near-duplicate test corpus built from real text on this machine, and its exact ground truth.

Why: the MinHash-LSH near-duplicate stage promises precision >= 0.98 and recall >= 0.95 at a
Jaccard threshold of 0.8 (word 5-gram shingle sets). That can only be *measured* against a
corpus whose true pairs are known exactly, and whose near-duplicates look like real ones.

Where the text comes from (nothing invented, no lorem ipsum):

* ``licence``: the licence texts of ``/usr/share/common-licenses`` (GPL-2, GPL-3, LGPL-2.1,
  Apache-2.0, GFDL-1.2/1.3, MPL, ...; symlinks such as ``GPL -> GPL-3`` are read once).
  Some versions are natural near-duplicates of each other.
* ``copyright``: every ``/usr/share/doc/*/copyright``. Hundreds of packages ship the same file,
  or the same licence with a different header: *natural* exact and near-duplicates.
* ``pydoc``: the reStructuredText sources of the Python documentation
  (``/usr/share/doc/python3.11/html/_sources/**/*.rst.txt``): distinct prose, hard negatives.

Files longer than ``max_words`` are cut, at blank lines, into consecutive parts of at most
``max_words`` words; each part is one base document (so a 27,000-word file does not dominate).

Controlled near-duplicates: a *variant* is a real document with one edit applied; its parent
is an original or (``chain_fraction`` of the time) another variant, which makes chains
(A~B, B~C, A!~C) that test transitive clustering. Edits (:data:`EDITS`), with the Jaccard
similarity of word 5-gram sets they lead to for a long document (``expected_jaccard``):

========================  ===========================================  =======================
edit                      rate                                         expected J to parent
========================  ===========================================  =======================
``exact``                 -                                            1
``substitute``            share of words replaced by corpus words      q/(2-q), q=(1-r)^5
``delete``                share of words deleted                       s/(2-r-s), s=(1-r)^5
``insert``                words inserted per word                      s/(2+r-s), s=e^(-4r)
``mixed``                 r/3 substituted + r/3 deleted + r/3 inserted  same model, combined
``shuffle_paragraphs``    share of paragraphs moved                    (N-4c)/(N+4c), c = new
                                                                       paragraph junctions
``truncate``              share of words cut from the end              ~1-r
``prepend_boilerplate``   boilerplate words per document word          ~1/(1+r)
``append_boilerplate``    same, at the end                             ~1/(1+r)
========================  ===========================================  =======================

Word rates include 0.5%, 1%, 2%, 3%, 5%, 10%, 20% and 40%: with 5-grams one edited word breaks
up to five shingles, so J crosses 0.8 at only ~2% of words edited; the rates are dense there.
The boilerplate is real: paragraphs that recur in several Debian copyright files (the MIT
permission notice, the "AS IS" warranty disclaimer, ...), so boilerplate also makes
unrelated short documents look alike (a precision hazard, as on the web).

Each row follows the corpusforge document schema (``pipelines.schema.DOCUMENT_SCHEMA``);
``metadata`` records its origin for analysis: ``origin_kind``, ``origin_file``,
``origin_part``, ``edit``, ``rate``, ``parent_id``, ``depth``, ``expected_jaccard``.
Everything is deterministic given ``seed`` (and the files on the machine).

Ground truth (:func:`exact_duplicate_pairs`) is exact: the true Jaccard of the shingle sets of
*all* pairs, computed with a sparse document x shingle matrix (64-bit blake2b hashes of the
shingles), intersections by sparse matrix products over row chunks, union = |A|+|B|-|A n B|.
A length filter (J >= t needs t*|A| <= |B| <= |A|/t) limits each chunk to the documents of a
compatible size. Two documents are near-duplicates when J >= threshold (compared exactly, in
integers).

The shingle function is a parameter everywhere (``shingle_fn(text) -> iterable of str``).
:func:`shingles` is the reference definition until ``filters.minhash.shingles(text, lang,
config)`` exists; :func:`from_filters_minhash` adapts that one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
import re
import sys
import time
import unicodedata
from bisect import bisect_right
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from itertools import accumulate
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

ShingleFn = Callable[[str], Iterable[str]]

SHINGLE_WORDS = 5
DEFAULT_THRESHOLD = 0.8

LICENCE_DIR = Path("/usr/share/common-licenses")
COPYRIGHT_GLOB = ("/usr/share/doc", "*/copyright")
PYDOC_DIR = Path("/usr/share/doc/python3.11/html/_sources")

# --------------------------------------------------------------------------------------------
# Shingles (reference definition)
# --------------------------------------------------------------------------------------------


@functools.cache
def _punctuation_table() -> dict[int, str]:
    """Every Unicode punctuation code point (general category P*) -> a space."""
    return {cp: " " for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp))[0] == "P"}


@functools.cache
def _ascii_punctuation_table() -> bytes:
    table = bytearray(range(256))
    for cp in _punctuation_table():
        if cp < 128:
            table[cp] = 0x20
    return bytes(table)


def normalize_words(text: str) -> list[str]:
    """NFKC, lowercase, punctuation (Unicode category P*) -> space, split on whitespace."""
    text = unicodedata.normalize("NFKC", text).lower()
    if text.isascii():
        return text.encode("ascii").translate(_ascii_punctuation_table()).decode("ascii").split()
    table = _punctuation_table()
    words: list[str] = []
    for word in text.split():
        if word.isalnum():  # no punctuation inside: the common case, skip the translation
            words.append(word)
        else:
            words.extend(word.translate(table).split())
    return words


def normalize(text: str) -> str:
    """NFKC, lowercase, punctuation (Unicode category P*) -> space, whitespace collapsed."""
    return " ".join(normalize_words(text))


def shingles(text: str, n: int = SHINGLE_WORDS) -> set[str]:
    """Word ``n``-grams of the normalized text, joined by single spaces.

    A text of fewer than ``n`` words is one shingle: its whole normalized text; an empty text
    has no shingles.
    """
    words = normalize_words(text)
    if not words:
        return set()
    if len(words) < n:
        return {" ".join(words)}
    return set(map(" ".join, zip(*(words[i:] for i in range(n)))))


def from_filters_minhash(lang: str | None = "en", config=None) -> ShingleFn:
    """The colleague's ``filters.minhash.shingles(text, lang, config)`` as a ``shingle_fn``."""
    from filters import minhash  # noqa: PLC0415 - optional, may not exist yet

    return lambda text: minhash.shingles(text, lang, config)


# --------------------------------------------------------------------------------------------
# The real documents
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaseDoc:
    kind: str  # licence | copyright | pydoc
    path: str
    part: int  # 0-based part of the file (files over max_words are cut at blank lines)
    text: str

    @property
    def url(self) -> str:
        return f"file://{self.path}" + (f"#part{self.part}" if self.part else "")


_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")


def _cut(text: str, max_words: int) -> list[str]:
    """Consecutive pieces of at most ~max_words words, cut at blank lines (or line ends)."""
    if len(text.split()) <= max_words:
        return [text]
    units: list[str] = []
    for para in _PARAGRAPH_BREAK.split(text):
        if len(para.split()) > max_words:
            units.extend(para.split("\n"))
        else:
            units.append(para)
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for unit in units:
        words = len(unit.split())
        if current and size + words > max_words:
            pieces.append("\n\n".join(current))
            current, size = [], 0
        current.append(unit)
        size += words
    if current:
        pieces.append("\n\n".join(current))
    return pieces


def _source_files() -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    seen: set[Path] = set()
    if LICENCE_DIR.is_dir():
        for path in sorted(LICENCE_DIR.iterdir()):
            real = path.resolve()
            if real.is_file() and real not in seen:
                seen.add(real)
                files.append(("licence", real))
    root, pattern = COPYRIGHT_GLOB
    for path in sorted(Path(root).glob(pattern)):
        if path.is_file():  # a real copy each: identical files are natural exact duplicates
            files.append(("copyright", path))
    if PYDOC_DIR.is_dir():
        files.extend(("pydoc", path) for path in sorted(PYDOC_DIR.rglob("*.rst.txt")))
    return files


@functools.cache
def load_base_pool(max_words: int = 2000, min_words: int = 20) -> tuple[BaseDoc, ...]:
    """All real base documents on this machine, in a fixed order."""
    pool: list[BaseDoc] = []
    for kind, path in _source_files():
        text = _read(path)
        for part, piece in enumerate(_cut(text, max_words)):
            if len(piece.split()) >= min_words:
                pool.append(BaseDoc(kind, str(path), part, piece.strip("\n")))
    if not pool:
        raise RuntimeError("no source documents found under /usr/share (licences, copyright files, python3-doc)")
    return tuple(pool)


@functools.cache
def boilerplate_blocks(min_files: int = 3) -> tuple[str, ...]:
    """Real boilerplate: paragraphs (15-200 words) found in >= min_files distinct copyright files."""
    holders: dict[str, set[str]] = defaultdict(set)
    root, pattern = COPYRIGHT_GLOB
    for path in sorted(Path(root).glob(pattern)):
        if not path.is_file():
            continue
        text = _read(path)
        digest = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
        for para in _PARAGRAPH_BREAK.split(text):
            words = para.split()
            if 15 <= len(words) <= 200:
                holders[" ".join(words)].add(digest)
    blocks = sorted((-len(files), para) for para, files in holders.items() if len(files) >= min_files)
    if not blocks:  # fall back to the licence texts' paragraphs
        blocks = [(0, " ".join(p.split())) for d in load_base_pool() if d.kind == "licence" for p in _PARAGRAPH_BREAK.split(d.text)]
    return tuple(para for _, para in blocks)


@functools.cache
def _vocabulary(max_words: int = 2000) -> tuple[list[str], list[int]]:
    """Words of the real documents (with a letter or digit) and their cumulative frequencies."""
    counts: Counter[str] = Counter()
    for doc in load_base_pool(max_words):
        counts.update(doc.text.split())
    words = sorted(w for w in counts if _is_word(w))
    return words, list(accumulate(counts[w] for w in words))


# --------------------------------------------------------------------------------------------
# Controlled edits
# --------------------------------------------------------------------------------------------

WORD_RATES = (0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.4)

#: (edit, rate) pairs a variant is drawn from, uniformly.
EDITS: tuple[tuple[str, float], ...] = (
    (("exact", 0.0),)
    + tuple(("substitute", r) for r in WORD_RATES)
    + tuple(("delete", r) for r in WORD_RATES)
    + tuple(("insert", r) for r in WORD_RATES)
    + tuple(("mixed", r) for r in WORD_RATES)
    + tuple(("shuffle_paragraphs", r) for r in (0.1, 0.3, 1.0))
    + tuple(("truncate", r) for r in (0.05, 0.1, 0.15, 0.2, 0.3, 0.5))
    + tuple(("prepend_boilerplate", r) for r in (0.02, 0.05, 0.1, 0.25, 0.5))
    + tuple(("append_boilerplate", r) for r in (0.02, 0.05, 0.1, 0.25, 0.5))
)

_TOKEN = re.compile(r"\S+\s*")


_WORD_CHAR = re.compile(r"[^\W_]")


def _is_word(token: str) -> bool:
    """Whether a whitespace-delimited token holds a letter or digit (else it is punctuation)."""
    return token.rstrip().isalnum() or _WORD_CHAR.search(token) is not None


def _word_model(n: int, sub: float, dele: float, ins: float) -> float:
    """Expected J of 5-gram sets after word edits (independent positions, long document)."""
    if n <= 0:
        return 1.0
    kept = (1.0 - sub - dele) ** SHINGLE_WORDS * math.exp(-(SHINGLE_WORDS - 1) * ins)
    size_b = 1.0 - dele + ins
    return kept / (1.0 + size_b - kept)


class _Editor:
    """Applies one edit to a text, keeping its layout (line breaks, indentation) elsewhere."""

    def __init__(self, max_words: int) -> None:
        self.vocab, self.cumulative = _vocabulary(max_words)
        self.blocks = boilerplate_blocks()

    def word(self, rng: random.Random) -> str:
        return self.vocab[bisect_right(self.cumulative, rng.randrange(self.cumulative[-1]))]

    def apply(self, text: str, kind: str, rate: float, rng: random.Random) -> tuple[str, float, str, float]:
        """(new text, expected Jaccard to ``text``, edit and rate actually applied)."""
        lead = text[: len(text) - len(text.lstrip())]
        tokens = _TOKEN.findall(text)
        words = [i for i, t in enumerate(tokens) if _is_word(t)]
        n = len(words)
        if kind == "shuffle_paragraphs":
            paras = [p for p in _PARAGRAPH_BREAK.split(text) if p.strip()]
            if len(paras) < 3:
                kind, rate = "substitute", 0.01  # too few paragraphs to move: a mild edit instead
            else:
                return self._shuffle(paras, rate, rng, n)
        if kind == "exact" or n == 0:
            return text, 1.0, "exact", 0.0
        if kind in ("substitute", "delete", "insert", "mixed"):
            parts = {"substitute": (rate, 0, 0), "delete": (0, rate, 0), "insert": (0, 0, rate), "mixed": (rate / 3,) * 3}[kind]
            return lead + self._word_edits(tokens, words, parts, rng), _word_model(n, *parts), kind, rate
        if kind == "truncate":
            keep = max(1, round(n * (1 - rate)))
            cut = words[keep - 1] + 1
            new = lead + "".join(tokens[:cut]).rstrip()
            return new, max(keep - 4, 1) / max(n - 4, 1), kind, rate
        if kind in ("prepend_boilerplate", "append_boilerplate"):
            h = max(1, round(n * rate))
            start = rng.randrange(len(self.blocks))
            chunk: list[str] = []
            i = start
            while len(chunk) < h:
                chunk.extend(self.blocks[i % len(self.blocks)].split())
                i += 1
            boiler = " ".join(chunk[:h])
            new = f"{boiler}\n\n{text}" if kind.startswith("prepend") else f"{text.rstrip()}\n\n{boiler}\n"
            return new, max(n - 4, 1) / max(n - 4 + h, 1), kind, rate
        raise ValueError(f"unknown edit {kind!r}")

    def _word_edits(self, tokens: list[str], words: list[int], parts: tuple[float, float, float], rng: random.Random) -> str:
        sub, dele, ins = parts
        n = len(words)
        k_sub, k_del, k_ins = (round(n * r) for r in (sub, dele, ins))
        if k_sub + k_del + k_ins == 0:  # a short document still gets one edit
            k_sub = 1 if sub else 0
            k_del = 1 if dele and not k_sub else 0
            k_ins = 1 if ins and not (k_sub or k_del) else 0
        chosen = rng.sample(words, min(n, k_sub + k_del))
        out = list(tokens)
        for i in chosen[:k_sub]:
            old = tokens[i]
            body = old.rstrip()
            new = self.word(rng)
            for _ in range(10):
                if new.lower() != body.lower():
                    break
                new = self.word(rng)
            out[i] = new + old[len(body) :]
        for i in chosen[k_sub:]:
            space = tokens[i][len(tokens[i].rstrip()) :]
            out[i] = ""
            if "\n" in space:  # keep the line / paragraph break on the previous token
                j = i - 1
                while j >= 0 and out[j] == "":
                    j -= 1
                if j >= 0:
                    out[j] = out[j].rstrip() + space
        inserts: dict[int, list[str]] = defaultdict(list)
        for _ in range(k_ins):
            inserts[rng.randrange(len(tokens) + 1)].append(self.word(rng) + " ")
        if inserts:
            merged: list[str] = []
            for i, token in enumerate(out):
                merged.extend(inserts.get(i, ()))
                merged.append(token)
            tail = inserts.get(len(tokens))
            if tail:
                merged[-1] = merged[-1].rstrip() + " " if merged else ""
                merged.extend(tail)
            out = merged
        return "".join(out).rstrip()

    def _shuffle(self, paras: list[str], rate: float, rng: random.Random, n: int) -> tuple[str, float, str, float]:
        count = len(paras)
        moved = sorted(rng.sample(range(count), max(2, round(count * rate))))
        order = list(range(count))
        for _ in range(20):
            targets = moved[:]
            rng.shuffle(targets)
            if targets != moved:
                break
        for src, dst in zip(moved, targets):
            order[dst] = src
        old_pairs = {(i, i + 1) for i in range(count - 1)}
        new_junctions = sum((a, b) not in old_pairs for a, b in zip(order, order[1:]))
        shingles_n = max(n - 4, 1)
        broken = min(shingles_n, 4 * new_junctions)
        return "\n\n".join(paras[i] for i in order), (shingles_n - broken) / (shingles_n + broken), "shuffle_paragraphs", rate


# --------------------------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    base: int  # index into the base pool
    parent: int  # plan index of the parent, -1 for an original
    kind: str
    rate: float
    seed: int
    depth: int


def _make_plan(n_docs: int, seed: int, pool_size: int, originals_fraction: float, chain_fraction: float, max_depth: int) -> tuple[list[_Plan], list[int]]:
    rng = random.Random(seed)
    n_orig = max(1, min(pool_size, n_docs, round(n_docs * originals_fraction)))
    originals = sorted(rng.sample(range(pool_size), n_orig))
    plan = [_Plan(b, -1, "original", 0.0, 0, 0) for b in originals]
    variants: list[int] = []
    while len(plan) < n_docs:
        if variants and rng.random() < chain_fraction:
            parent = variants[rng.randrange(len(variants))]
            if plan[parent].depth >= max_depth:
                parent = plan[parent].parent
        else:
            parent = rng.randrange(n_orig)
        kind, rate = EDITS[rng.randrange(len(EDITS))]
        variants.append(len(plan))
        plan.append(_Plan(plan[parent].base, parent, kind, rate, rng.getrandbits(64), plan[parent].depth + 1))
    order = list(range(n_docs))  # output position -> plan index
    rng.shuffle(order)
    return plan, order


def iter_dedup_corpus(
    seed: int = 0,
    n_docs: int = 3000,
    *,
    originals_fraction: float = 0.35,
    chain_fraction: float = 0.15,
    max_depth: int = 3,
    max_words: int = 2000,
    id_prefix: str = "dd",
) -> Iterator[dict]:
    """Rows of the corpus in output order (streaming; see the module docstring).

    ``originals_fraction`` of ``n_docs`` (at most the whole pool) are unedited real documents,
    the rest are variants. For a corpus far larger than the pool (~2,000 documents) nearly all
    rows are variants, ~n_docs/pool of each original.
    """
    pool = load_base_pool(max_words)
    plan, order = _make_plan(n_docs, seed, len(pool), originals_fraction, chain_fraction, max_depth)
    position = [0] * n_docs
    for pos, index in enumerate(order):
        position[index] = pos
    width = max(7, len(str(n_docs - 1)))
    ids = [f"{id_prefix}{pos:0{width}d}" for pos in range(n_docs)]
    editor = _Editor(max_words)
    cache: OrderedDict[int, tuple[str, float, str, float]] = OrderedDict()

    def make(index: int) -> tuple[str, float, str, float]:
        step = plan[index]
        if step.parent < 0:
            return pool[step.base].text, 1.0, "original", 0.0
        if index in cache:
            cache.move_to_end(index)
            return cache[index]
        parent_text = make(step.parent)[0]
        result = editor.apply(parent_text, step.kind, step.rate, random.Random(step.seed))
        cache[index] = result
        if len(cache) > 4096:
            cache.popitem(last=False)
        return result

    epoch = datetime(2024, 1, 1, tzinfo=timezone.utc)
    for pos, index in enumerate(order):
        step = plan[index]
        base = pool[step.base]
        text, expected, applied, rate = make(index)
        when = epoch + timedelta(seconds=random.Random(seed * 1_000_003 + index).randrange(365 * 86400))
        metadata = {
            "origin_kind": base.kind,
            "origin_file": base.path,
            "origin_part": str(base.part),
            "edit": applied,
            "rate": "" if applied in ("original", "exact") else f"{rate:g}",
            "parent_id": "" if step.parent < 0 else ids[position[step.parent]],
            "depth": str(step.depth),
            "expected_jaccard": f"{expected:.4f}",
        }
        yield {
            "id": ids[pos],
            "url": base.url if step.parent < 0 else f"{base.url}?variant={pos}",
            "title": None,
            "text": text,
            "source": "dedup-bench",
            "fetched_at": when,
            "lang": "en",
            "lang_score": None,
            "annotations": None,
            "metadata": metadata,
        }


def build_dedup_corpus(seed: int = 0, n_docs: int = 3000, **options) -> list[dict]:
    """The whole corpus as a list of rows (``id``, ``text``, ``url``, ``fetched_at``, ``metadata``...)."""
    return list(iter_dedup_corpus(seed, n_docs, **options))


def write_dedup_corpus(path: str | Path, n_docs: int, seed: int = 0, *, batch_size: int = 2000, **options) -> dict:
    """Stream the corpus to ``path`` (``.parquet`` in the document schema, or ``.jsonl``).

    Returns a summary: rows, seconds, and counts per ``edit`` and ``origin_kind``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    edits: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    rows = 0
    stream = iter_dedup_corpus(seed, n_docs, **options)
    if path.suffix == ".jsonl":
        with open(path, "w", encoding="utf-8") as handle:
            for row in stream:
                edits[row["metadata"]["edit"]] += 1
                kinds[row["metadata"]["origin_kind"]] += 1
                rows += 1
                handle.write(json.dumps({**row, "fetched_at": row["fetched_at"].isoformat()}, ensure_ascii=False) + "\n")
    else:
        import pyarrow as pa  # noqa: PLC0415
        import pyarrow.parquet as pq  # noqa: PLC0415

        from pipelines.schema import DOCUMENT_SCHEMA  # noqa: PLC0415

        with pq.ParquetWriter(path, DOCUMENT_SCHEMA, compression="zstd") as writer:
            batch: list[dict] = []
            for row in stream:
                edits[row["metadata"]["edit"]] += 1
                kinds[row["metadata"]["origin_kind"]] += 1
                batch.append(row)
                if len(batch) >= batch_size:
                    writer.write_table(pa.Table.from_pylist(batch, schema=DOCUMENT_SCHEMA))
                    rows += len(batch)
                    batch = []
            if batch:
                writer.write_table(pa.Table.from_pylist(batch, schema=DOCUMENT_SCHEMA))
                rows += len(batch)
    return {"rows": rows, "seconds": time.perf_counter() - start, "edits": dict(edits), "origin_kinds": dict(kinds)}


def composition(docs: Sequence[dict]) -> dict:
    """Counts per origin kind, per edit and per (edit, rate), for reports."""
    meta = [d.get("metadata") or {} for d in docs]
    return {
        "docs": len(docs),
        "origin_kinds": dict(sorted(Counter(m.get("origin_kind", "?") for m in meta).items())),
        "edits": dict(sorted(Counter(m.get("edit", "?") for m in meta).items())),
        "edit_rates": dict(sorted(Counter(f"{m.get('edit', '?')}@{m.get('rate', '')}" for m in meta).items())),
        "words_mean": float(np.mean([len(d["text"].split()) for d in docs])) if docs else 0.0,
    }


# --------------------------------------------------------------------------------------------
# Exact ground truth
# --------------------------------------------------------------------------------------------


def stable_hash64(shingle: str | bytes | int) -> int:
    """The stable (process- and machine-independent) 64-bit hash of a shingle used for the matrix."""
    return int.from_bytes(hashlib.blake2b(_as_bytes(shingle), digest_size=8).digest(), "little")


def _as_bytes(shingle: str | bytes | int) -> bytes:
    if isinstance(shingle, str):
        return shingle.encode("utf-8", "surrogatepass")
    if isinstance(shingle, bytes):
        return shingle
    return str(shingle).encode()


def shingle_matrix(texts: Iterable[str], shingle_fn: ShingleFn = shingles):
    """(CSR document x shingle matrix of 0/1 int32, set sizes as int64 array)."""
    import scipy.sparse as sp  # noqa: PLC0415

    blake = hashlib.blake2b
    indptr = [0]
    chunks: list[np.ndarray] = []
    total = 0
    for text in texts:
        digests = b"".join([blake(_as_bytes(s), digest_size=8).digest() for s in shingle_fn(text)])
        hashes = np.unique(np.frombuffer(digests, dtype="<u8"))  # a list of shingles counts as a set
        chunks.append(hashes)
        total += len(hashes)
        indptr.append(total)
    flat = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint64)
    columns, inverse = np.unique(flat, return_inverse=True)
    matrix = sp.csr_matrix(
        (np.ones(len(flat), dtype=np.int32), inverse.astype(np.int64 if len(columns) > 2**31 - 1 else np.int32), np.asarray(indptr, dtype=np.int64)),
        shape=(len(chunks), len(columns)),
    )
    return matrix, np.diff(np.asarray(indptr, dtype=np.int64))


def similar_pairs(matrix, sizes: np.ndarray, threshold: float = DEFAULT_THRESHOLD, *, chunk_rows: int = 512) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All row pairs (i < j) with Jaccard >= threshold: (i, j, |A n B|, |A u B|) arrays.

    Exact: every pair is compared except those the length filter proves below the threshold
    (J <= min/max). The comparison is done in integers, ``|A n B| * den >= num * |A u B|`` with
    ``threshold = num/den``. Empty sets are never similar.
    """
    frac = Fraction(threshold).limit_denominator(1_000_000)
    num, den = frac.numerator, frac.denominator
    n = matrix.shape[0]
    order = np.argsort(sizes, kind="stable")
    sorted_sizes = sizes[order]
    m = matrix[order].tocsr()
    out_i, out_j, out_inter, out_union = [], [], [], []
    start = int(np.searchsorted(sorted_sizes, 1))  # skip empty sets
    for lo in range(start, n, chunk_rows):
        hi = min(n, lo + chunk_rows)
        # the largest set in this chunk can only match sets up to size / threshold
        end = int(np.searchsorted(sorted_sizes, sorted_sizes[hi - 1] * den // num, side="right"))
        block = (m[lo:hi] @ m[lo:end].T).tocoo()
        r = block.row.astype(np.int64) + lo
        c = block.col.astype(np.int64) + lo
        inter = block.data.astype(np.int64)
        keep = c > r
        r, c, inter = r[keep], c[keep], inter[keep]
        union = sorted_sizes[r] + sorted_sizes[c] - inter
        keep = inter * den >= num * union
        r, c, inter, union = r[keep], c[keep], inter[keep], union[keep]
        a, b = order[r], order[c]
        out_i.append(np.minimum(a, b))
        out_j.append(np.maximum(a, b))
        out_inter.append(inter)
        out_union.append(union)
    if not out_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_inter), np.concatenate(out_union)


def canonical_pair(a: str, b: str) -> tuple[str, str]:
    """Pairs are unordered; they are stored with the smaller id first."""
    return (a, b) if a < b else (b, a)


def exact_duplicate_pairs(
    docs: Sequence[dict],
    shingle_fn: ShingleFn = shingles,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    with_jaccard: bool = False,
    chunk_rows: int = 512,
):
    """Ground truth: every pair of documents whose shingle sets have Jaccard >= threshold.

    Returns ``{(id_a, id_b)}`` with ``id_a < id_b``, or ``{(id_a, id_b): jaccard}`` when
    ``with_jaccard``.
    """
    ids = [d["id"] for d in docs]
    if len(set(ids)) != len(ids):
        raise ValueError("document ids are not unique")
    matrix, sizes = shingle_matrix((d["text"] for d in docs), shingle_fn)
    i, j, inter, union = similar_pairs(matrix, sizes, threshold, chunk_rows=chunk_rows)
    if with_jaccard:
        return {canonical_pair(ids[a], ids[b]): x / u for a, b, x, u in zip(i.tolist(), j.tolist(), inter.tolist(), union.tolist())}
    return {canonical_pair(ids[a], ids[b]) for a, b in zip(i.tolist(), j.tolist())}


def brute_force_pairs(docs: Sequence[dict], shingle_fn: ShingleFn = shingles, threshold: float = DEFAULT_THRESHOLD) -> dict[tuple[str, str], float]:
    """Plain-Python reference: set Jaccard over all pairs (quadratic; small samples only)."""
    sets = [(d["id"], set(shingle_fn(d["text"]))) for d in docs]
    frac = Fraction(threshold).limit_denominator(1_000_000)
    found: dict[tuple[str, str], float] = {}
    for x in range(len(sets)):
        id_a, a = sets[x]
        for y in range(x + 1, len(sets)):
            id_b, b = sets[y]
            if not a or not b:
                continue
            inter = len(a & b)
            union = len(a) + len(b) - inter
            if inter * frac.denominator >= frac.numerator * union:
                found[canonical_pair(id_a, id_b)] = inter / union
    return found
