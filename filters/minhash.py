"""MinHash signatures and LSH banding for near-duplicate detection (pure Python + numpy).

This is the per-document core of the Spark near-duplicate stage: the stage calls
:meth:`MinHasher.signature_matrix` (or :meth:`MinHasher.signatures`) on the texts of an Arrow
batch, then :func:`band_hash_matrix` to get one 64-bit bucket key per band, and groups
documents that share a ``(band, key)`` pair. No Spark here.

Pipeline per document
---------------------
1. :func:`normalize` — NFKC, lowercase, optionally digit runs → ``0``, punctuation and symbols
   (Unicode categories ``P*`` and ``S*``) → space, whitespace collapsed to single spaces.
2. :func:`shingles` — the set of word ``ngram``-grams (words from
   :func:`filters.text.split_words`, joined by one space), or, for languages written without
   spaces (:func:`filters.text.is_spaceless`), the set of character ``char_ngram``-grams of the
   normalized text with its whitespace removed. A text with fewer words (characters) than one
   shingle gives one shingle, the whole normalized text; a text that normalizes to nothing gives
   the empty set.
3. Signature — exactly ``datasketch.MinHash(num_perm=..., seed=..., scheme=...)`` updated with
   the shingles encoded as UTF-8: same SHA-1 input hash, same permutations (drawn from
   ``np.random.RandomState(seed)``), same arithmetic, same dtype. Vectorized: the shingles of a
   whole batch are hashed into one buffer, permuted in bounded blocks
   (``shingles × num_perm ≤ 2**17`` values, i.e. 1,024 shingles at 128 permutations, ≤ 1 MiB),
   and reduced per document with ``np.minimum.reduceat``: beyond ~28 bytes of hash per
   shingle, memory does not grow with the document or batch length.

Empty documents
---------------
A document with no shingle has no MinHash signature. :meth:`MinHasher.signature` returns
``None`` (:data:`EMPTY`) for it, and :meth:`MinHasher.signature_matrix` returns a ``False``
in its validity mask (its row holds datasketch's "empty" value, the scheme's maximum hash).
The stage keeps such documents and never buckets them: two empty documents are not
"near duplicates" of each other here (exact-duplicate removal is a different stage).

Permutation schemes
-------------------
datasketch 2.0 changed its default permutations from ``"legacy"`` (``(a·h + b) mod (2**61 − 1)``
truncated to 32 bits, uint64 storage; every datasketch before 2.0 and the tools built on it)
to ``"affine32"`` (MurmurHash3 32-bit finalizer on the input hash, then ``a·h + b mod 2**32``
with odd ``a``: a bijection, unbiased on large sets, uint32 storage, a ~2× cheaper permutation
step). All three
datasketch schemes are implemented; the default follows datasketch's default, ``affine32``.
Set ``scheme="legacy"`` to interoperate with signatures made by older tools.

LSH
---
:func:`optimal_bands_rows` picks ``(bands, rows)`` with ``bands · rows ≤ num_perm`` minimizing
``fp_weight · ∫₀ᵗ P(s) ds + fn_weight · ∫ₜ¹ (1 − P(s)) ds`` with ``P(s) = 1 − (1 − sʳ)ᵇ``, the
same objective and tie-breaking as datasketch's ``MinHashLSH`` (its private ``_optimal_param``).
The integrands are polynomials of degree ``b·r ≤ num_perm``, so a Gauss–Legendre rule with
``num_perm // 2 + 2`` nodes integrates them exactly; all candidates are evaluated at once.

:func:`band_hashes` turns a signature into one signed 64-bit key per band (fits Spark's
``LongType``): BLAKE2b (8-byte digest) of the band index (4 bytes, little-endian) followed by
the band's ``rows`` values as little-endian uint64. It depends only on the values, never on
the process (no ``hash()``), the machine's byte order or the signature's dtype.
"""

from __future__ import annotations

import hashlib
import re
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import chain
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from filters.text import is_spaceless, split_words

__all__ = [
    "EMPTY",
    "MinHashConfig",
    "MinHasher",
    "band_hash_matrix",
    "band_hashes",
    "estimated_jaccard",
    "jaccard",
    "normalize",
    "optimal_bands_rows",
    "shingles",
]

#: What :meth:`MinHasher.signature` returns for a document without shingles.
EMPTY = None

Scheme = Literal["affine32", "affine64", "legacy"]


# --- configuration -------------------------------------------------------------------------


class MinHashConfig(BaseModel):
    """Settings of MinHash near-duplicate detection (a section of the recipe).

    ``char_ngram=5``: for Chinese and Japanese a character is ~0.6–0.7 of a word, so 5
    characters span ~3 words — short enough that a local edit only breaks a few shingles,
    long enough (thousands of distinct characters) that unrelated texts share almost none.
    Much longer character n-grams (NeMo uses 24 for every language) make CJK near-duplicate
    detection as strict as word 15-grams would be for English.
    """

    model_config = ConfigDict(extra="forbid")

    num_perm: int = Field(128, ge=1, le=1 << 16)
    seed: int = Field(1, ge=0, lt=1 << 32)  # np.random.RandomState accepts [0, 2**32)
    scheme: Scheme = "affine32"
    threshold: float = Field(0.8, gt=0.0, lt=1.0)
    ngram: int = Field(5, ge=1)  # word n-grams
    char_ngram: int = Field(5, ge=1)  # character n-grams for languages without spaces
    lowercase: bool = True
    normalize_punctuation: bool = True
    normalize_digits: bool = False
    false_positive_weight: float = Field(0.5, ge=0.0)
    false_negative_weight: float = Field(0.5, ge=0.0)
    bands: int | None = Field(None, ge=1)
    rows: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> MinHashConfig:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both `bands` and `rows`, or neither")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands * rows = {self.bands * self.rows} > num_perm = {self.num_perm}")
        if self.false_positive_weight + self.false_negative_weight <= 0:
            raise ValueError("false_positive_weight + false_negative_weight must be > 0")
        return self

    def lsh_params(self) -> tuple[int, int]:
        """``(bands, rows)``: the override if set, else :func:`optimal_bands_rows`."""
        if self.bands is not None:
            return self.bands, self.rows
        return optimal_bands_rows(
            self.threshold, self.num_perm, self.false_positive_weight, self.false_negative_weight
        )


# --- normalization and shingles ------------------------------------------------------------


@lru_cache(maxsize=1)
def _punct_table() -> dict[int, str]:
    """``str.translate`` table: every Unicode punctuation or symbol code point (categories
    P*, S*) → space. Built on first use (~0.2 s); ``translate`` is ~100× faster on this than a
    regular expression with the same character class."""
    return {cp: " " for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp))[0] in "PS"}


_DIGITS_RE = re.compile(r"\d+")  # Unicode decimal digits (after NFKC mostly ASCII)


def _prepare(text: str, cfg: MinHashConfig) -> str:
    """Steps 1–4 of :func:`normalize` (whitespace not yet collapsed)."""
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    if cfg.lowercase:
        text = text.lower()
    if cfg.normalize_digits:
        text = _DIGITS_RE.sub("0", text)
    if cfg.normalize_punctuation:
        text = text.translate(_punct_table())
    return text


def normalize(text: str, config: MinHashConfig | None = None) -> str:
    """The text MinHash sees. In order:

    1. Unicode NFKC (full-width forms, ligatures, compatibility characters folded);
    2. lowercase (``lowercase``);
    3. every run of decimal digits → ``0`` (``normalize_digits``; off by default);
    4. every punctuation or symbol character (Unicode categories ``P*``, ``S*``) → space
       (``normalize_punctuation``); combining marks (Thai, Devanagari vowel signs) are kept;
    5. whitespace runs → one space, stripped at both ends.
    """
    if not text:
        return ""
    return " ".join(_prepare(text, config or _DEFAULT_CONFIG).split())


def _shingle_list(text: str, lang: str | None, cfg: MinHashConfig) -> list[str]:
    """The shingles of :func:`shingles` in text order, repeats included. The signature path
    uses this: a repeated shingle costs one more SHA-1 (the minimum is unchanged), which is
    cheaper on ordinary prose than building a set of ~500 fresh strings."""
    if not text:
        return []
    prepared = _prepare(text, cfg)
    if is_spaceless(lang, text):
        chars = "".join(prepared.split())
        n = cfg.char_ngram
        if len(chars) <= n:
            return [chars] if chars else []
        return [chars[i : i + n] for i in range(len(chars) - n + 1)]
    if cfg.normalize_punctuation:
        # every character split_words strips (filters.text.PUNCTUATION) is P* or S*, so on
        # punctuation-normalized text split_words is str.split(): skip its per-token strip
        words = prepared.split()
    else:
        words = split_words(prepared, lang, spaceless=False, cache=False)
    n = cfg.ngram
    if len(words) <= n:
        return [" ".join(words)] if words else []
    if n == 1:
        return words
    return list(map(" ".join, zip(*(words[i:] for i in range(n)))))


def shingles(text: str, lang: str | None = None, config: MinHashConfig | None = None) -> set[str]:
    """The shingle set of ``text`` (see the module docstring).

    * Languages with spaces: word ``ngram``-grams of :func:`normalize`'s text, the words
      (:func:`filters.text.split_words`) joined by one space.
    * Languages without spaces (``is_spaceless(lang, text)``; ``lang=None`` detects the script
      of the text): character ``char_ngram``-grams of the normalized text with its whitespace
      removed (so a re-wrapped copy of a Chinese text has the same shingles).
    * At most one shingle's worth of words (characters): one shingle, all of them — with the
      default punctuation normalization, the whole normalized text (without spaces for
      spaceless languages). Nothing left after normalization: ``set()`` → no signature
      (:data:`EMPTY`).
    """
    return set(_shingle_list(text, lang, config or _DEFAULT_CONFIG))


# --- hashing -------------------------------------------------------------------------------

_MERSENNE = np.uint64((1 << 61) - 1)
_U32_MAX = np.uint64((1 << 32) - 1)
_SHIFT61 = np.uint64(61)
_SHIFT32 = np.uint64(32)
_DTYPES = {
    "legacy": np.dtype(np.uint64),
    "affine32": np.dtype(np.uint32),
    "affine64": np.dtype(np.uint64),
}
#: Datasketch's initial ("empty") hash value per scheme.
_MAX_HASH = {"legacy": (1 << 32) - 1, "affine32": (1 << 32) - 1, "affine64": (1 << 64) - 1}
#: Bound on ``shingles × num_perm`` values permuted at once: 1,024 shingles at 128
#: permutations, 1 MiB of uint64 (L2-sized; 4x larger blocks measured ~5% slower).
_CHUNK_ELEMENTS = 1 << 17

try:  # CPython's built-in SHA-1: same digest, ~40% less per-call overhead than OpenSSL's
    from _sha1 import sha1 as _sha1
except ImportError:  # builds without the built-in hashes (FIPS)
    _sha1 = hashlib.sha1
_sha1_digest = type(_sha1()).digest
_SHA1_WORDS = 5  # a SHA-1 digest is five 32-bit words
_COLLECTIONS = (list, tuple, set, frozenset)


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (uint32, wrapping)."""
    h = h ^ (h >> np.uint32(16))
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer (uint64, wrapping)."""
    h = h ^ (h >> np.uint64(33))
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


def _to_bytes(s: str | bytes) -> bytes:
    return s.encode("utf-8") if isinstance(s, str) else bytes(s)


def _sha1_words(docs: Sequence[Iterable[str | bytes]]) -> np.ndarray:
    """SHA-1 of every shingle of ``docs`` (in order) as an ``(n, 5)`` array of little-endian
    uint32 words; str shingles are UTF-8 encoded, bytes hashed as they are.

    Word 0 is datasketch's ``sha1_hash32`` (``struct.unpack('<I', digest[:4])``); words 0–1
    make ``sha1_hash64`` (``'<Q'`` of ``digest[:8]``). One chain of C-level ``map``s and one
    bytes join for the whole batch: no per-shingle Python frame or ``int`` conversion.
    """
    items = chain.from_iterable(docs)
    try:
        buf = b"".join(map(_sha1_digest, map(_sha1, map(str.encode, items))))
    except TypeError:  # some shingles are bytes
        buf = b"".join(map(_sha1_digest, map(_sha1, map(_to_bytes, chain.from_iterable(docs)))))
    return np.frombuffer(buf, dtype="<u4").reshape(-1, _SHA1_WORDS)


def _permutations(num_perm: int, seed: int, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's permutation parameters ``(a, b)`` for ``MinHash(num_perm, seed, scheme)``."""
    rng = np.random.RandomState(seed)
    if scheme == "legacy":
        # one (a, b) pair per permutation, drawn in that order: a ∈ [1, p), b ∈ [0, p)
        p = int(_MERSENNE)
        pairs = [
            (rng.randint(1, p, dtype=np.uint64), rng.randint(0, p, dtype=np.uint64))
            for _ in range(num_perm)
        ]
        a, b = np.array(pairs, dtype=np.uint64).T
    else:
        width = 32 if scheme == "affine32" else 64
        dtype = _DTYPES[scheme].type
        a = rng.randint(0, 1 << (width - 1), num_perm, dtype=dtype) * dtype(2) + dtype(1)  # odd
        b = rng.randint(0, 1 << width, num_perm, dtype=dtype)
    return np.ascontiguousarray(a), np.ascontiguousarray(b)


class MinHasher:
    """Computes MinHash signatures for one :class:`MinHashConfig`; permutations are drawn once.

    Signatures equal ``datasketch.MinHash(num_perm, seed, scheme=...).hashvalues`` after
    ``update_batch([s.encode() for s in shingles])`` — values and dtype (uint32 for
    ``affine32``, uint64 otherwise).
    """

    def __init__(self, config: MinHashConfig | None = None) -> None:
        self.config = config or MinHashConfig()
        c = self.config
        self.num_perm = c.num_perm
        self.scheme = c.scheme
        self.dtype = _DTYPES[c.scheme]
        self.a, self.b = _permutations(c.num_perm, c.seed, c.scheme)
        self._a_row = self.a[None, :]
        self._b_row = self.b[None, :]
        self.empty_value = self.dtype.type(_MAX_HASH[c.scheme])
        self.chunk_rows = max(1, _CHUNK_ELEMENTS // c.num_perm)
        self.bands, self.rows = c.lsh_params()

    # -- shingles -----------------------------------------------------------------------

    def shingles(self, text: str, lang: str | None = None) -> set[str]:
        return shingles(text, lang, self.config)

    # -- signatures ---------------------------------------------------------------------

    def signature(self, text: str, lang: str | None = None) -> np.ndarray | None:
        """The signature of one document, or ``None`` (:data:`EMPTY`) if it has no shingle."""
        return self.signature_from_shingles(_shingle_list(text, lang, self.config))

    def signatures(
        self, texts: Sequence[str], langs: str | Sequence[str | None] | None = None
    ) -> list[np.ndarray | None]:
        """Signatures of a batch (``None`` for documents without shingles). ``langs``: one
        language for all, one per text, or None (script detection per text)."""
        sigs, valid = self.signature_matrix(texts, langs)
        return [sig if ok else EMPTY for sig, ok in zip(sigs, valid.tolist())]

    def signature_matrix(
        self, texts: Sequence[str], langs: str | Sequence[str | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(signatures, valid)``: a ``(len(texts), num_perm)`` array and a boolean mask;
        rows of documents without shingles hold the scheme's maximum hash and ``valid=False``.
        The form an Arrow batch wants (one ``FixedSizeList`` column from the flat array)."""
        if langs is None or isinstance(langs, str):
            langs = [langs] * len(texts)
        elif len(langs) != len(texts):
            raise ValueError(f"{len(langs)} languages for {len(texts)} texts")
        cfg = self.config
        docs = [_shingle_list(text, lang, cfg) for text, lang in zip(texts, langs)]
        return self.signature_matrix_from_shingles(docs)

    def signature_from_shingles(self, items: Iterable[str | bytes]) -> np.ndarray | None:
        """Signature of one shingle collection (str shingles are UTF-8 encoded; bytes as is)."""
        sigs, valid = self.signature_matrix_from_shingles([items])
        return sigs[0] if valid[0] else EMPTY

    def signatures_from_shingles(
        self, docs: Sequence[Iterable[str | bytes]]
    ) -> list[np.ndarray | None]:
        sigs, valid = self.signature_matrix_from_shingles(docs)
        return [sig if ok else EMPTY for sig, ok in zip(sigs, valid.tolist())]

    def signatures_and_shingle_hashes(
        self, texts: Sequence[str], langs: Sequence[str | None] | str | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """:meth:`signature_matrix` plus each document's distinct 64-bit shingle hashes, sorted.

        The hashes are the first 8 bytes of each shingle's SHA-1 (already computed for the
        signature), so the exact Jaccard of two documents is the Jaccard of these arrays, up to
        64-bit collisions: what candidate verification needs, without shingling twice.
        """
        lang_list = langs if isinstance(langs, (list, tuple)) else [langs] * len(texts)
        docs = [list(self.shingles(text, lang)) for text, lang in zip(texts, lang_list)]
        words = _sha1_words(docs) if any(docs) else np.zeros((0, _SHA1_WORDS), dtype="<u4")
        matrix, valid = self.signature_matrix_from_shingles(docs, words=words)
        hashes64 = (words[:, 0].astype(np.uint64) | (words[:, 1].astype(np.uint64) << _SHIFT32)).view(np.int64)
        bounds = np.cumsum([0] + [len(d) for d in docs])
        per_doc = [np.unique(hashes64[bounds[i] : bounds[i + 1]]) for i in range(len(docs))]
        return matrix, valid, per_doc

    def signature_matrix_from_shingles(
        self, docs: Sequence[Iterable[str | bytes]], words: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The vectorized core: hash every shingle of the batch into one buffer, permute it in
        blocks of at most ``chunk_rows`` shingles and take per-document minima with
        ``np.minimum.reduceat`` (a document may span several blocks)."""
        docs = [d if isinstance(d, _COLLECTIONS) else list(d) for d in docs]
        counts = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))
        out = np.full((len(docs), self.num_perm), self.empty_value, dtype=self.dtype)
        valid = counts > 0
        total = int(counts.sum())
        if total == 0:
            return out, valid
        hv = self._input_hashes(words if words is not None else _sha1_words(docs))
        docs_idx = np.flatnonzero(valid)
        dense = np.empty((docs_idx.size, self.num_perm), dtype=self.dtype)
        offsets = np.zeros(docs_idx.size + 1, dtype=np.int64)
        np.cumsum(counts[docs_idx], out=offsets[1:])
        step = self.chunk_rows
        for start in range(0, total, step):
            stop = min(start + step, total)
            first = int(np.searchsorted(offsets, start, side="right")) - 1  # doc holding `start`
            end = int(np.searchsorted(offsets, stop, side="left"))  # docs starting before `stop`
            seg = offsets[first:end] - start
            seg[0] = 0
            mins = np.minimum.reduceat(self._permute(hv[start:stop]), seg, axis=0)
            if offsets[first] < start:  # continues a document from the previous block
                np.minimum(mins[0], dense[first], out=mins[0])
            dense[first:end] = mins
        out[docs_idx] = dense
        return out, valid

    def _input_hashes(self, words: np.ndarray) -> np.ndarray:
        """Per-shingle input hashes (1-D), pre-mixed as the scheme wants."""
        if self.scheme == "legacy":
            return words[:, 0].astype(np.uint64)  # sha1_hash32
        if self.scheme == "affine32":
            return _fmix32(words[:, 0].copy())  # sha1_hash32
        lo = words[:, 0].astype(np.uint64)
        hi = words[:, 1].astype(np.uint64)
        return _fmix64(lo | (hi << _SHIFT32))  # sha1_hash64

    def _permute(self, hv: np.ndarray) -> np.ndarray:
        """``(len(hv), num_perm)`` permuted hashes (in place on one temporary)."""
        x = hv[:, None] * self._a_row  # wraps modulo 2**w, exactly as datasketch's arrays do
        x += self._b_row
        if self.scheme == "legacy":
            # datasketch: ((a·h + b) mod 2**64) mod (2**61 − 1), then the low 32 bits.
            # Mersenne reduction: x ≡ (x >> 61) + (x & p) < p + 8; subtract p once if needed
            # (min(r, r − p) in wrapping unsigned arithmetic does exactly that).
            r = x >> _SHIFT61
            x &= _MERSENNE
            x += r
            np.subtract(x, _MERSENNE, out=r)
            np.minimum(x, r, out=x)
            x &= _U32_MAX
        return x

    # -- LSH ------------------------------------------------------------------------------

    def band_hashes(self, signature: np.ndarray) -> np.ndarray:
        """:func:`band_hashes` with this config's ``(bands, rows)``."""
        return band_hashes(signature, self.bands, self.rows)

    def band_hash_matrix(self, signatures: np.ndarray) -> np.ndarray:
        """:func:`band_hash_matrix` with this config's ``(bands, rows)``."""
        return band_hash_matrix(signatures, self.bands, self.rows)


_DEFAULT_CONFIG = MinHashConfig()


# --- LSH parameters ------------------------------------------------------------------------


@lru_cache(maxsize=256)
def optimal_bands_rows(
    threshold: float,
    num_perm: int,
    false_positive_weight: float = 0.5,
    false_negative_weight: float = 0.5,
) -> tuple[int, int]:
    """``(bands, rows)``, ``bands · rows ≤ num_perm``, minimizing
    ``fp_w · ∫₀ᵗ P(s) ds + fn_w · ∫ₜ¹ 1 − P(s) ds`` with ``P(s) = 1 − (1 − sʳ)ᵇ`` (the chance
    that two documents of Jaccard ``s`` share a bucket). Ties go to the smaller ``bands``, then
    the smaller ``rows`` (datasketch's loop order)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError("threshold must be in (0, 1)")
    if num_perm < 1:
        raise ValueError("num_perm must be positive")
    b_list, r_list = [], []
    for b in range(1, num_perm + 1):  # same order as datasketch, so argmin breaks ties alike
        for r in range(1, num_perm // b + 1):
            b_list.append(b)
            r_list.append(r)
    bands = np.array(b_list, dtype=np.float64)[:, None]
    rows = np.array(r_list, dtype=np.float64)[:, None]
    # Gauss–Legendre with n nodes is exact for polynomials up to degree 2n − 1 ≥ num_perm ≥ b·r
    x, w = np.polynomial.legendre.leggauss(num_perm // 2 + 2)
    lo_s, lo_w = (x + 1.0) * (threshold / 2), w * (threshold / 2)
    hi_s, hi_w = threshold + (x + 1.0) * ((1.0 - threshold) / 2), w * ((1.0 - threshold) / 2)
    fp = (1.0 - (1.0 - lo_s**rows) ** bands) @ lo_w  # collide although s < threshold
    fn = ((1.0 - hi_s**rows) ** bands) @ hi_w  # miss although s ≥ threshold
    err = false_positive_weight * fp + false_negative_weight * fn
    i = int(np.argmin(err))  # first minimum, like datasketch's strict `<`
    return b_list[i], r_list[i]


# --- band hashes ---------------------------------------------------------------------------


def _check_bands(n_values: int, bands: int, rows: int) -> None:
    if bands < 1 or rows < 1:
        raise ValueError("bands and rows must be positive")
    if bands * rows > n_values:
        raise ValueError(f"bands * rows = {bands * rows} > signature length {n_values}")


_BAND_PREFIXES = [i.to_bytes(4, "little") for i in range(1024)]


def _band_prefix(i: int) -> bytes:
    return _BAND_PREFIXES[i] if i < 1024 else i.to_bytes(4, "little")


def band_hashes(signature: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One signed 64-bit key per band (``int64``, fits Spark ``LongType``).

    Key of band ``i`` = BLAKE2b-64 of ``i`` as 4 little-endian bytes followed by the band's
    values ``signature[i·rows:(i+1)·rows]`` as little-endian uint64, read as a little-endian
    signed integer. Deterministic across processes, machines and signature dtypes; the band
    index is part of the key, so keys of different bands never collide by construction.
    """
    sig = np.asarray(signature)
    _check_bands(sig.shape[-1], bands, rows)
    data = np.ascontiguousarray(sig[: bands * rows], dtype="<u8").tobytes()
    width = rows * 8
    blake = hashlib.blake2b
    keys = [
        blake(_band_prefix(i) + data[i * width : (i + 1) * width], digest_size=8).digest()
        for i in range(bands)
    ]
    return np.frombuffer(b"".join(keys), dtype="<i8").astype(np.int64)


def band_hash_matrix(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """:func:`band_hashes` of every row of a ``(n, num_perm)`` array → ``(n, bands)`` int64."""
    sigs = np.asarray(signatures)
    if sigs.ndim != 2:
        raise ValueError("expected a 2-D array of signatures")
    _check_bands(sigs.shape[1], bands, rows)
    data = np.ascontiguousarray(sigs[:, : bands * rows], dtype="<u8").tobytes()
    width = rows * 8
    blake = hashlib.blake2b
    prefixes = [_band_prefix(i) for i in range(bands)]
    keys = [
        blake(prefixes[j] + data[off + j * width : off + (j + 1) * width], digest_size=8).digest()
        for off in range(0, len(data), bands * width)
        for j in range(bands)
    ]
    return np.frombuffer(b"".join(keys), dtype="<i8").astype(np.int64).reshape(sigs.shape[0], bands)


# --- similarity ----------------------------------------------------------------------------


def jaccard(a: set, b: set) -> float:
    """Exact Jaccard similarity ``|a ∩ b| / |a ∪ b|``; two empty sets → 1.0 (equal sets)."""
    if not a and not b:
        return 1.0
    inter = len(a & b) if len(a) <= len(b) else len(b & a)
    return inter / (len(a) + len(b) - inter)


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Fraction of equal positions of two signatures of the same config (datasketch's
    ``MinHash.jaccard``). Raises ``ValueError`` for a missing (:data:`EMPTY`) signature or
    different lengths."""
    if sig_a is None or sig_b is None:
        raise ValueError("a document without shingles has no signature")
    a, b = np.asarray(sig_a), np.asarray(sig_b)
    if a.shape != b.shape:
        raise ValueError(f"signature shapes differ: {a.shape} vs {b.shape}")
    return float(np.count_nonzero(a == b)) / a.size
