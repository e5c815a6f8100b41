"""MinHash signatures and LSH banding (filters/minhash.py), checked against datasketch."""

from __future__ import annotations

import glob
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH
from datasketch.lsh import _optimal_param

from filters.minhash import (
    EMPTY,
    MinHashConfig,
    MinHasher,
    band_hash_matrix,
    band_hashes,
    estimated_jaccard,
    jaccard,
    normalize,
    optimal_bands_rows,
    shingles,
)
from filters.text import PUNCTUATION, split_words

REPO = Path(__file__).resolve().parents[1]

# --- real texts ----------------------------------------------------------------------------

_STDLIB_MODULES = (
    "argparse", "ast", "collections", "configparser", "copy", "csv", "dataclasses", "decimal",
    "difflib", "doctest", "getopt", "hashlib", "heapq", "http.cookies", "inspect", "json",
    "optparse", "pdb", "pickle", "pydoc", "random", "re", "sched", "socketserver", "sqlite3",
    "statistics", "string", "subprocess", "tempfile", "timeit", "tokenize", "typing",
    "urllib.parse", "uuid",
)


def _real_texts() -> list[str]:
    """Real English prose available on every Python install: stdlib module docstrings, plus
    a few Python documentation sources where the distribution ships them."""
    texts = []
    for name in _STDLIB_MODULES:
        try:
            doc = importlib.import_module(name).__doc__
        except ImportError:  # e.g. a Python built without sqlite3
            continue
        if doc and len(doc.split()) >= 20:
            texts.append(doc)
    for path in sorted(glob.glob("/usr/share/doc/python3*/html/_sources/library/*.rst.txt"))[:20]:
        texts.append(Path(path).read_text(encoding="utf-8")[:6000])
    return texts


TEXTS = _real_texts()
LONG_TEXT = "\n\n".join(TEXTS)  # thousands of shingles: spans several permutation blocks

CHINESE = (
    "自然语言处理是计算机科学领域与人工智能领域中的一个重要方向。它研究能实现人与计算机之间"
    "用自然语言进行有效通信的各种理论和方法。自然语言处理是一门融语言学、计算机科学、数学于"
    "一体的科学。因此，这一领域的研究将涉及自然语言，即人们日常使用的语言。"
)
JAPANESE = (
    "東京は日本の首都であり、世界で最も人口の多い都市圏の一つです。江戸時代には江戸と呼ばれ、"
    "徳川幕府が置かれました。明治維新の後、天皇が京都から移り住み、東京と改称されました。"
)


def _datasketch(items, num_perm=128, seed=1, scheme="affine32") -> np.ndarray:
    m = MinHash(num_perm=num_perm, seed=seed, scheme=scheme)
    m.update_batch([s.encode("utf-8") if isinstance(s, str) else s for s in items])
    return m.hashvalues


def test_real_texts_available():
    assert len(TEXTS) >= 20
    hasher = MinHasher()
    assert len(hasher.shingles(LONG_TEXT, "en")) > 4 * hasher.chunk_rows


# --- signatures == datasketch --------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["affine32", "legacy", "affine64"])
@pytest.mark.parametrize("num_perm,seed", [(128, 1), (64, 7), (256, 2024), (16, 0)])
def test_signatures_equal_datasketch(scheme, num_perm, seed):
    cfg = MinHashConfig(num_perm=num_perm, seed=seed, scheme=scheme)
    hasher = MinHasher(cfg)
    texts = [*TEXTS, LONG_TEXT, "Hello", "the quick brown"]
    batch = hasher.signatures(texts, "en")
    matrix, valid = hasher.signature_matrix(texts, "en")
    assert valid.all() and matrix.shape == (len(texts), num_perm)
    for text, from_batch, row in zip(texts, batch, matrix):
        expected = _datasketch(shingles(text, "en", cfg), num_perm, seed, scheme)
        single = hasher.signature(text, "en")
        assert single.dtype == expected.dtype
        np.testing.assert_array_equal(single, expected)
        np.testing.assert_array_equal(from_batch, expected)
        np.testing.assert_array_equal(row, expected)


def test_default_config_matches_datasketch_default_minhash():
    """MinHashConfig() is datasketch's MinHash() — where datasketch's default scheme is ours."""
    default = MinHash()
    if getattr(default, "scheme", "legacy") != MinHashConfig().scheme:
        pytest.skip("this datasketch defaults to another permutation scheme")
    text = TEXTS[0]
    default.update_batch([s.encode() for s in shingles(text, "en")])
    np.testing.assert_array_equal(MinHasher().signature(text, "en"), default.hashvalues)


def test_permutations_equal_datasketch():
    for scheme in ("affine32", "legacy", "affine64"):
        hasher = MinHasher(MinHashConfig(num_perm=200, seed=5, scheme=scheme))
        a, b = MinHash(num_perm=200, seed=5, scheme=scheme).permutations
        np.testing.assert_array_equal(hasher.a, a)
        np.testing.assert_array_equal(hasher.b, b)


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
def test_documents_spanning_permutation_blocks(scheme):
    """Tiny blocks: most documents straddle block boundaries, some span many blocks."""
    hasher = MinHasher(MinHashConfig(num_perm=32, scheme=scheme))
    docs = [shingles(t, "en", hasher.config) for t in TEXTS[:12]] + [{"x"}, set(), {"a", "b"}]
    expected = [_datasketch(d, 32, 1, scheme) if d else None for d in docs]
    for rows in (1, 3, 7, 64, 10_000):
        hasher.chunk_rows = rows
        for got, want in zip(hasher.signatures_from_shingles(docs), expected):
            if want is None:
                assert got is None
            else:
                np.testing.assert_array_equal(got, want)


def test_long_text_single_signature():
    hasher = MinHasher()
    sh = hasher.shingles(LONG_TEXT, "en")
    assert len(sh) > hasher.chunk_rows
    np.testing.assert_array_equal(hasher.signature(LONG_TEXT, "en"), _datasketch(sh))


def test_one_word_and_short_texts():
    assert shingles("Hello!", "en") == {"hello"}
    assert shingles("The quick, brown fox.", "en") == {"the quick brown fox"}
    assert shingles("one two three four five", "en") == {"one two three four five"}
    assert len(shingles("one two three four five six", "en")) == 2
    hasher = MinHasher()
    np.testing.assert_array_equal(hasher.signature("Hello!", "en"), _datasketch([b"hello"]))


def test_bytes_and_iterator_shingles():
    hasher = MinHasher()
    items = ["alpha beta", "gamma delta", "ünïcödé"]
    want = _datasketch(items)
    np.testing.assert_array_equal(hasher.signature_from_shingles([s.encode() for s in items]), want)
    np.testing.assert_array_equal(hasher.signature_from_shingles(iter(items)), want)
    mixed = ["alpha beta", b"gamma delta", "ünïcödé"]
    np.testing.assert_array_equal(hasher.signature_from_shingles(mixed), want)


# --- spaceless languages -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,lang", [(CHINESE, "zh"), (CHINESE, None), (JAPANESE, "ja"), (JAPANESE, None)]
)
def test_cjk_uses_character_ngrams(text, lang):
    cfg = MinHashConfig()
    sh = shingles(text, lang, cfg)
    chars = normalize(text, cfg).replace(" ", "")
    assert sh == {chars[i : i + cfg.char_ngram] for i in range(len(chars) - cfg.char_ngram + 1)}
    assert all(len(s) == cfg.char_ngram and " " not in s for s in sh)
    np.testing.assert_array_equal(MinHasher(cfg).signature(text, lang), _datasketch(sh))


def test_cjk_rewrapped_text_has_same_shingles():
    rewrapped = CHINESE[:30] + "\n" + CHINESE[30:61] + " \n " + CHINESE[61:]
    assert shingles(rewrapped, "zh") == shingles(CHINESE, "zh")


def test_short_cjk_text_is_one_shingle():
    assert shingles("你好", "zh") == {"你好"}
    assert shingles("你好！", "zh") == {"你好"}


def test_language_decides_word_or_character_shingles():
    # an English text labeled Chinese is shingled by characters
    assert all(len(s) == 5 for s in shingles("Hello wonderful world of text", "zh"))
    assert shingles("Hello wonderful world of text", "en") == {"hello wonderful world of text"}


# --- empty documents -----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   \n\t ", "!!! ... ---", "“”—…"])
def test_empty_text_has_no_signature(text):
    assert shingles(text, "en") == set()
    assert MinHasher().signature(text, "en") is EMPTY is None


def test_batch_marks_empty_documents():
    hasher = MinHasher()
    texts = ["", TEXTS[0], "?!", TEXTS[1]]
    sigs = hasher.signatures(texts)
    assert sigs[0] is None and sigs[2] is None
    np.testing.assert_array_equal(sigs[1], hasher.signature(TEXTS[0]))
    matrix, valid = hasher.signature_matrix(texts)
    assert valid.tolist() == [False, True, False, True]
    assert (matrix[~valid] == np.iinfo(np.uint32).max).all()  # datasketch's "empty" value
    np.testing.assert_array_equal(matrix[3], sigs[3])
    empty, none_valid = hasher.signature_matrix(["", ""])
    assert not none_valid.any() and empty.shape == (2, 128)
    assert hasher.signatures([]) == []


def test_langs_argument_forms():
    hasher = MinHasher()
    texts = [TEXTS[0], CHINESE]
    per_text = hasher.signatures(texts, ["en", "zh"])
    detected = hasher.signatures(texts)
    for a, b in zip(per_text, detected):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        hasher.signatures(texts, ["en"])


# --- normalization -------------------------------------------------------------------------


def test_normalize():
    assert normalize("Hello,   World!\n“Quoted” — text…") == "hello world quoted text"
    assert normalize("ＦＵＬＬ－ｗｉｄｔｈ １２３") == "full width 123"  # NFKC
    assert normalize("ﬁne ligature") == "fine ligature"
    assert normalize("snake_case a+b=c $5 ©2024 😀 ok") == "snake case a b c 5 2024 ok"
    assert normalize("ภาษาไทย เป็น ภาษา") == "ภาษาไทย เป็น ภาษา"  # combining marks kept
    assert normalize("नमस्ते दुनिया।") == "नमस्ते दुनिया"
    digits = MinHashConfig(normalize_digits=True)
    assert normalize("Pi is 3.14159, year 2024", digits) == "pi is 0 0 year 0"
    raw = MinHashConfig(lowercase=False, normalize_punctuation=False)
    assert normalize("Hello,  World!", raw) == "Hello, World!"
    assert normalize("") == ""


def test_word_shingles_follow_split_words():
    """The str.split shortcut on punctuation-normalized text equals split_words."""
    cfg = MinHashConfig()
    for text in TEXTS:
        words = split_words(normalize(text, cfg), "en", spaceless=False, cache=False)
        expected = {" ".join(words[i : i + 5]) for i in range(len(words) - 4)}
        assert shingles(text, "en", cfg) == expected
    for ch in PUNCTUATION:  # nothing split_words would strip survives normalization
        norm = normalize(f"a{ch}b {ch}c{ch} {ch}", cfg)
        assert split_words(norm, "en", spaceless=False, cache=False) == norm.split()


def test_shingles_without_punctuation_normalization_use_split_words():
    cfg = MinHashConfig(normalize_punctuation=False, ngram=2)
    expected = {"hello world", "world again", "again here"}
    assert shingles("Hello, world! (Again) here.", "en", cfg) == expected


def test_digit_normalization_merges_numbered_variants():
    a = "Invoice 1234 due on 2024-05-01 for order 998877"
    b = "Invoice 5678 due on 2023-11-30 for order 112233"
    cfg = MinHashConfig(normalize_digits=True)
    assert shingles(a, "en", cfg) == shingles(b, "en", cfg)
    assert shingles(a, "en") != shingles(b, "en")


# --- LSH parameters ------------------------------------------------------------------------


@pytest.mark.parametrize("num_perm", [64, 128, 256])
def test_bands_rows_equal_datasketch(num_perm):
    for threshold in np.round(np.arange(0.5, 0.951, 0.05), 2):
        expected = _optimal_param(threshold, num_perm, 0.5, 0.5)
        assert optimal_bands_rows(float(threshold), num_perm) == expected


@pytest.mark.parametrize("fp,fn", [(0.3, 0.7), (0.8, 0.2)])
def test_bands_rows_equal_datasketch_weighted(fp, fn):
    for threshold in (0.5, 0.7, 0.85, 0.95):
        assert optimal_bands_rows(threshold, 128, fp, fn) == _optimal_param(threshold, 128, fp, fn)


def test_config_lsh_params():
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    assert MinHashConfig().lsh_params() == (lsh.b, lsh.r)
    assert MinHashConfig(bands=14, rows=8, num_perm=112).lsh_params() == (14, 8)
    hasher = MinHasher(MinHashConfig(threshold=0.7, num_perm=64))
    assert (hasher.bands, hasher.rows) == _optimal_param(0.7, 64, 0.5, 0.5)


def test_config_validation():
    with pytest.raises(ValueError):
        MinHashConfig(bands=10)
    with pytest.raises(ValueError):
        MinHashConfig(bands=20, rows=10, num_perm=128)
    with pytest.raises(ValueError):
        MinHashConfig(num_bands=3)  # extra fields are forbidden
    with pytest.raises(ValueError):
        MinHashConfig(threshold=1.0)
    with pytest.raises(ValueError):
        MinHashConfig(scheme="murmur")
    with pytest.raises(ValueError):
        MinHashConfig(false_positive_weight=0.0, false_negative_weight=0.0)


# --- band hashes ---------------------------------------------------------------------------


def test_band_hashes_shape_and_consistency():
    hasher = MinHasher()
    sig = hasher.signature(TEXTS[0])
    keys = hasher.band_hashes(sig)
    assert keys.dtype == np.int64 and keys.shape == (hasher.bands,)
    # an independent computation: a fresh hasher, the batch function, other dtypes
    again = MinHasher(MinHashConfig()).band_hashes(MinHasher().signature(TEXTS[0]))
    np.testing.assert_array_equal(keys, again)
    matrix, _ = hasher.signature_matrix(TEXTS[:5])
    batch = band_hash_matrix(matrix, hasher.bands, hasher.rows)
    assert batch.shape == (5, hasher.bands)
    np.testing.assert_array_equal(batch[0], keys)
    np.testing.assert_array_equal(band_hashes(sig.astype(np.uint64), hasher.bands, hasher.rows), keys)
    np.testing.assert_array_equal(band_hashes(sig.astype(">u4"), hasher.bands, hasher.rows), keys)
    assert len(set(batch.ravel().tolist())) == batch.size  # different docs, different buckets


def test_band_hashes_include_band_index():
    sig = np.full(20, 7, dtype=np.uint32)  # every band holds the same values
    keys = band_hashes(sig, 4, 5)
    assert len(set(keys.tolist())) == 4
    with pytest.raises(ValueError):
        band_hashes(sig, 5, 5)


_SUBPROCESS = """
import json, sys
from filters.minhash import MinHasher, MinHashConfig
texts = json.loads(sys.stdin.read())
out = {}
for scheme in ("affine32", "legacy"):
    h = MinHasher(MinHashConfig(scheme=scheme))
    m, _ = h.signature_matrix(texts)
    out[scheme] = h.band_hash_matrix(m).tolist()
print(json.dumps(out))
"""


def test_band_hashes_stable_across_processes():
    texts = [TEXTS[0], TEXTS[3], CHINESE]
    expected = {}
    for scheme in ("affine32", "legacy"):
        h = MinHasher(MinHashConfig(scheme=scheme))
        expected[scheme] = h.band_hash_matrix(h.signature_matrix(texts)[0]).tolist()
    results = []
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO)}
        proc = subprocess.run(
            [sys.executable, "-c", _SUBPROCESS], input=json.dumps(texts), capture_output=True,
            text=True, env=env, cwd=REPO, check=True, timeout=120,
        )
        results.append(json.loads(proc.stdout))
    assert results[0] == results[1] == expected


# --- similarity ----------------------------------------------------------------------------


def test_jaccard():
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert jaccard({1}, {2}) == 0.0
    assert jaccard(set(), set()) == 1.0
    assert jaccard({1, 2}, set()) == 0.0


def test_estimated_jaccard_basics():
    hasher = MinHasher()
    sig = hasher.signature(TEXTS[0])
    assert estimated_jaccard(sig, sig) == 1.0
    with pytest.raises(ValueError):
        estimated_jaccard(sig, None)
    with pytest.raises(ValueError):
        estimated_jaccard(sig, sig[:64])
    m = MinHash(num_perm=128, seed=1, scheme="affine32")
    m.update_batch([s.encode() for s in shingles(TEXTS[1], "en")])
    m0 = MinHash(num_perm=128, seed=1, scheme="affine32")
    m0.update_batch([s.encode() for s in shingles(TEXTS[0], "en")])
    assert estimated_jaccard(sig, hasher.signature(TEXTS[1])) == m0.jaccard(m)


def _edit(text: str, every: int, drop_sentence: bool) -> str:
    """An edited copy: every `every`-th word replaced, optionally the second sentence cut."""
    if drop_sentence:
        parts = re.split(r"(?<=[.!?])\s+", text)
        if len(parts) > 2:
            text = " ".join(parts[:1] + parts[2:])
    words = text.split()
    return " ".join("EDITED" if i % every == every - 1 else w for i, w in enumerate(words))


def test_estimated_jaccard_tracks_true_jaccard_on_near_duplicates():
    hasher = MinHasher(MinHashConfig(num_perm=256))
    errors = []
    long_texts = [t for t in TEXTS if len(t.split()) >= 200][:10]
    assert len(long_texts) >= 8
    edits = ((60, False), (25, True), (12, False))
    pairs = [(t, _edit(t, every, drop)) for t in long_texts for every, drop in edits]
    for original, edited in pairs:
        true = jaccard(shingles(original, "en"), shingles(edited, "en"))
        est = estimated_jaccard(hasher.signature(original, "en"), hasher.signature(edited, "en"))
        assert 0.0 < true < 1.0
        assert abs(est - true) < 0.12, (true, est)
        errors.append(abs(est - true))
    assert np.mean(errors) < 0.04


def test_lsh_buckets_near_duplicates_together():
    hasher = MinHasher()  # threshold 0.8
    for text in [t for t in TEXTS if len(t.split()) >= 200][:10]:
        copy = _edit(text, 100, False)
        assert jaccard(shingles(text), shingles(copy)) > 0.85
        a, b = hasher.band_hashes(hasher.signature(text)), hasher.band_hashes(hasher.signature(copy))
        assert (a == b).any()
    keys = hasher.band_hash_matrix(hasher.signature_matrix(TEXTS)[0])
    for i in range(len(TEXTS)):  # unrelated documents share no bucket
        for j in range(i + 1, len(TEXTS)):
            assert not (keys[i] == keys[j]).any()
