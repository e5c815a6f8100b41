"""Text helpers shared by the document filters: words, lines, paragraphs, sentences, n-grams.

Everything here runs once or more per document on millions of documents, so the regular
expressions are compiled once at import and the hot paths use ``str`` methods where they can.

Words
-----
``split_words`` is language-aware. Languages written with spaces (English, Russian, Korean, …)
are split on whitespace and each token is stripped of surrounding punctuation; tokens that are
punctuation only are dropped. Languages written *without* spaces between words (Chinese,
Japanese, Thai, Lao, Khmer, Burmese, Tibetan) have no cheap exact word segmentation, so:

* each Han, Hiragana or Katakana character counts as one word (a common convention for
  CJK word-count heuristics: a Chinese word averages ~1.5 characters);
* a run of Thai / Lao / Khmer / Myanmar / Tibetan script characters between spaces or
  punctuation counts as one word. This is an *approximation*: such a run is usually a phrase
  or clause, not a word (real segmentation needs a dictionary model such as PyThaiNLP);
* runs of other letters or digits (Latin words, numbers, Hangul) count as words, with inner
  apostrophes, hyphens and dots kept (``don't``, ``e-mail``, ``3.14``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from itertools import filterfalse, repeat

import numpy as np

# --- languages ---------------------------------------------------------------------------

#: Primary language subtags of languages written without spaces between words.
SPACELESS_LANGS: frozenset[str] = frozenset(
    {"zh", "ja", "th", "lo", "km", "my", "bo", "yue", "wuu", "lzh", "gan", "hak", "cjy", "hsn"}
)

# A few ISO 639-3 / 639-2 codes (GlotLID, Flores, NLLB labels) mapped to ISO 639-1.
_LANG_ALIASES = {
    "eng": "en", "zho": "zh", "chi": "zh", "cmn": "zh", "jpn": "ja", "tha": "th", "lao": "lo",
    "khm": "km", "mya": "my", "bur": "my", "bod": "bo", "tib": "bo", "kor": "ko", "rus": "ru",
    "deu": "de", "ger": "de", "fra": "fr", "fre": "fr", "spa": "es", "por": "pt", "ita": "it",
}
_LANG_SEP = re.compile(r"[-_]")


def normalize_lang(lang: str | None) -> str | None:
    """``"zh-Hans"``, ``"__label__zh"``, ``"zho_Hans"``, ``"ZH"`` → ``"zh"``; None/empty → None."""
    if not lang:
        return None
    if lang.startswith("__label__"):
        lang = lang[9:]
    primary = _LANG_SEP.split(lang, 1)[0].lower()
    if not primary:
        return None
    return _LANG_ALIASES.get(primary, primary)


# --- scripts -----------------------------------------------------------------------------

# Han ideographs (+ 々 and 〇), Hiragana, Katakana (minus the ・ middle dot), half-width Katakana.
_HAN_KANA = (
    "\u3005\u3007\u3021-\u3029\u3038-\u303b\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0003134f"
    "\u3041-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff\uff66-\uff9f"
)
# Thai, Lao, Khmer, Myanmar and Tibetan letters, vowel signs and digits (punctuation left out:
# Thai ๏ ๚ ๛, Khmer ។ ៕ …, Myanmar ၊ ။, Tibetan tsheg/shad, so those split runs).
_SE_ASIAN = (
    "\u0e01-\u0e3a\u0e40-\u0e4e\u0e50-\u0e59"  # Thai
    "\u0e81-\u0eff"  # Lao
    "\u1780-\u17d3\u17d7\u17dc\u17dd\u17e0-\u17e9"  # Khmer
    "\u1000-\u1049\u104c-\u109f\uaa60-\uaa7f\ua9e0-\ua9ff"  # Myanmar (+ extensions)
    "\u0f18\u0f19\u0f20-\u0f33\u0f35\u0f37\u0f39\u0f3e-\u0fbc"  # Tibetan
)
_SPACELESS_CHARS = _HAN_KANA + _SE_ASIAN
# other "word" characters: letters and digits of every other script
_OTHER_WORD = rf"[^\W_{_SPACELESS_CHARS}]"

_SPACELESS_WORD_RE = re.compile(
    rf"[{_HAN_KANA}]"
    rf"|[{_SE_ASIAN}]+"
    rf"|{_OTHER_WORD}+(?:['’.\-]{_OTHER_WORD}+)*"
)
_SPACELESS_CHAR_RE = re.compile(rf"[{_SPACELESS_CHARS}]")
_LETTER_RE = re.compile(r"[^\W\d_]")  # a letter of any script
_HAS_WORD_CHAR_RE = re.compile(r"[^\W_]")  # a letter or digit

#: Characters stripped from both ends of whitespace-separated tokens.
PUNCTUATION = (
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
    "¡¦§¨«¬®¯°±´¶·¸»¿×÷‐‑‒–—―‖‘’‚‛“”„‟†‡•‣․‥…‧′″‹›※‼⁇⁈⁉⁎⁏"
    "、。〃〈〉《》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟・！＂＃＄％＆＇（）＊＋，－．／：；＜＝＞？＠［＼］＾＿｀｛｜｝～｡｢｣､･"
    "।॥؟،؛۔"
)

# How much of a document the script detector looks at (lang=None). The start of a document
# is representative enough and this keeps the check O(1) in document size.
_DETECT_SAMPLE = 4096


def is_spaceless(lang: str | None, text: str | None = None) -> bool:
    """Whether ``lang`` is written without spaces between words.

    With ``lang=None`` the text decides: True when at least half of the letters in its first
    4 KiB are Han, Kana, Thai, Lao, Khmer, Myanmar or Tibetan characters.
    """
    code = normalize_lang(lang)
    if code is not None:
        return code in SPACELESS_LANGS
    if not text:
        return False
    sample = text[:_DETECT_SAMPLE]
    n_spaceless = len(_SPACELESS_CHAR_RE.findall(sample))
    if n_spaceless == 0:
        return False
    # spaceless chars that are not \w (Thai vowel signs …) are counted on both sides
    n_letters = len(_LETTER_RE.findall(sample))
    return n_spaceless * 2 >= max(n_letters, n_spaceless)


# The last document split, by identity: the filters of a chain split the same text object
# one after the other, so each long document is split once, not once per filter.
_last_split: tuple[str, bool, list[str]] | None = None


def split_words(
    text: str, lang: str | None = None, *, spaceless: bool | None = None, cache: bool = True
) -> list[str]:
    """Words of ``text`` (see the module docstring for the rules). Do not mutate the result:
    it may be shared with the previous caller that split the same text object.

    ``spaceless`` overrides the language decision; pass it when calling this per line of one
    document, so that the script detection runs once per document and not once per line.
    ``cache=False`` for such per-line calls keeps the document's split in the cache.
    """
    global _last_split
    if spaceless is None:
        spaceless = is_spaceless(lang, text)
    last = _last_split
    if last is not None and last[0] is text and last[1] == spaceless:
        return last[2]
    if spaceless:
        words = _SPACELESS_WORD_RE.findall(text)
    else:  # split, strip, drop empties: all in C (map/filter), no Python-level loop
        tokens = text.split()
        words = list(filter(None, map(str.strip, tokens, repeat(PUNCTUATION, len(tokens)))))
    if cache and len(text) >= 256:  # short texts are cheaper to split again
        _last_split = (text, spaceless, words)
    return words


def has_alpha(word: str) -> bool:
    """Whether ``word`` contains at least one letter (any script)."""
    return _LETTER_RE.search(word) is not None


def count_alpha_words(words: Sequence[str]) -> int:
    """How many of ``words`` contain at least one letter."""
    # all-letter words (most of them) are counted in C; only the rest go through the regex
    search = _LETTER_RE.search
    n = sum(map(str.isalpha, words))
    return n + sum(1 for w in filterfalse(str.isalpha, words) if search(w) is not None)


# --- lines, paragraphs, sentences --------------------------------------------------------

_PARAGRAPH_SPLIT_RE = re.compile(r"\n[ \t\r\f\v\u00a0\u3000]*\n\s*")
_NEWLINE_RUN_RE = re.compile(r"\n(?:[ \t\r\f\v\u00a0\u3000]*\n)*")


def split_lines(text: str) -> list[str]:
    """Non-blank lines of ``text``, stripped of surrounding whitespace."""
    return list(filter(None, map(str.strip, text.splitlines())))


def split_paragraphs(text: str) -> list[str]:
    """Paragraphs (blocks separated by one or more blank lines), stripped, non-empty."""
    return list(filter(None, map(str.strip, _PARAGRAPH_SPLIT_RE.split(text))))


def count_line_breaks(text: str) -> int:
    """Line breaks between content; a run of newlines (a blank line) counts as one break."""
    return len(_NEWLINE_RUN_RE.findall(text.strip()))


#: Line endings that count as terminal punctuation (C4 and FineWeb use ``. ! ? " '``; the
#: closing quotes and the CJK, Devanagari, Arabic, Myanmar, Khmer and Tibetan sentence ends
#: are added so that those languages are not penalized for using their own full stop).
TERMINAL_PUNCT: tuple[str, ...] = (
    ".", "!", "?", '"', "'", "”", "’", "»",
    "。", "！", "？", "｡", "．", "」", "』",
    "।", "॥", "؟", "۔", "။", "។", "៕", "།",
)
ELLIPSES: tuple[str, ...] = ("...", "…")


def ends_with_terminal_punct(line: str) -> bool:
    """Whether the (right-stripped) line ends in terminal punctuation; an ellipsis counts."""
    return line.rstrip().endswith(TERMINAL_PUNCT)


def ends_with_ellipsis(line: str) -> bool:
    return line.rstrip().endswith(ELLIPSES)


# A sentence ends at . ! ? … (followed by optional closing quotes/brackets, then the end of
# the line or whitespace and a word that does not start in lower case: "e.g. this" and
# '"Stop!" he said' do not split), at a CJK / Indic / Arabic / SE-Asian full stop, or at a
# line break.
_SENTENCE_SPLIT_RE = re.compile(
    r"[.!?…]+[\"'”’»)\]]*(?:(?=[^\S\n]+(?![a-z\s]))|(?=[^\S\n]*(?:\n|$)))"
    r"|[。！？｡]+[」』”’）)]*"
    r"|[।॥؟۔။។៕།]+"
    r"|\n"
)


def count_sentences(text: str) -> int:
    """Approximate sentence count: sentence-ending punctuation, plus a final unterminated
    sentence per line (``"A b c. D e f"`` → 2; a line without punctuation → 1); pieces
    without a letter or digit do not count.

    Abbreviations before a capital (``Mr. Smith``) over-count; it is a heuristic.
    """
    if not text:
        return 0
    has_word = _HAS_WORD_CHAR_RE.search
    return sum(map(bool, map(has_word, _SENTENCE_SPLIT_RE.split(text))))


# --- n-grams -----------------------------------------------------------------------------


def ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """All word n-grams as tuples (tuples hash fast and are compared without joining strings)."""
    if n <= 0 or len(words) < n:
        return []
    if n == 1:
        return [(w,) for w in words]
    return list(zip(*(words[i:] for i in range(n))))


def prefix_lengths(words: Sequence[str]) -> list[int]:
    """``out[i]`` = total characters of ``words[:i]`` (so ``out[-1]`` is all of them)."""
    out = [0] * (len(words) + 1)
    acc = 0
    for i, w in enumerate(words, 1):
        acc += len(w)
        out[i] = acc
    return out


def covered_chars(starts: Iterable[int], n: int, prefix: Sequence[int]) -> int:
    """Characters of the words covered by the n-grams starting at ``starts`` (ascending),
    each word counted once however many of the n-grams overlap it. O(len(starts))."""
    total = 0
    end = 0  # first word index not yet covered
    for i in starts:
        stop = i + n
        if stop <= end:
            continue
        total += prefix[stop] - prefix[i if i > end else end]
        end = stop
    return total


# --- repeated n-grams, vectorized ----------------------------------------------------------
#
# Word n-grams are identified by 64-bit hashes built incrementally (hash of the (n-1)-gram at
# i combined with the hash of word i+n-1) and counted by sorting (numpy), never by building
# n-gram tuples. Pruning keeps it near-linear: an n-gram at i can only repeat if the
# (n-1)-grams at i and at i+1 both repeat, so each n only hashes the positions that survived
# n-1 (for ordinary prose, almost nothing survives n = 3).
#
# Word hashes come from Python's str hash (salted per process unless PYTHONHASHSEED is set);
# a result can only depend on the salt through a 64-bit collision between distinct words or
# n-grams (probability ~ N² / 2**64, about 1e-8 for a million-word document).

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_K = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer, elementwise on uint64 (wrapping arithmetic)."""
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def _repeated(h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For hashes ``h``: (mask of elements whose hash occurs more than once, inverse index
    into the unique hashes, count of each unique hash, first position of each unique hash)."""
    _, first, inverse, counts = np.unique(h, return_index=True, return_inverse=True, return_counts=True)
    return counts[inverse] > 1, inverse, counts, first


def _repeated_mask(h: np.ndarray) -> np.ndarray:
    """Mask of the elements of ``h`` that occur more than once (cheaper than np.unique)."""
    order = np.argsort(h)
    sorted_h = h[order]
    eq = sorted_h[1:] == sorted_h[:-1]
    mask = np.zeros(h.size, dtype=bool)
    mask[1:] = eq
    mask[:-1] |= eq
    out = np.empty(h.size, dtype=bool)
    out[order] = mask
    return out


def _covered(starts: np.ndarray, n: int, prefix: np.ndarray) -> int:
    """Vectorized :func:`covered_chars` for ascending ``starts``."""
    if starts.size == 0:
        return 0
    begin = starts.copy()
    if starts.size > 1:
        np.maximum(starts[1:], starts[:-1] + n, out=begin[1:])
    return int((prefix[starts + n] - prefix[begin]).sum())


def ngram_repetition(
    words: Sequence[str], top_ns: Iterable[int] = (), dup_ns: Iterable[int] = ()
) -> tuple[dict[int, int], dict[int, int], int]:
    """Gopher's n-gram repetition measures, in characters of words.

    Returns ``(top, dup, total)``:

    * ``top[n]`` (n in ``top_ns``): characters of the words covered by the occurrences of the
      most frequent n-gram, if it occurs at least twice, else 0. Ties: the n-gram with more
      characters, then the one that occurs first.
    * ``dup[n]`` (n in ``dup_ns``): characters of the words covered by any n-gram that
      occurs at least twice.
    * ``total``: characters of all words.

    Each word's characters count once however many counted n-grams overlap it.
    """
    top_set, dup_set = set(top_ns), set(dup_ns)
    top = dict.fromkeys(top_set, 0)
    dup = dict.fromkeys(dup_set, 0)
    n_words = len(words)
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=n_words)
    prefix = np.zeros(n_words + 1, dtype=np.int64)
    np.cumsum(lengths, out=prefix[1:])
    total = int(prefix[-1])
    max_n = max(top_set | dup_set, default=0)
    if n_words < 2 or max_n < 1:
        return top, dup, total

    word_hash = _mix64(np.fromiter(map(hash, words), dtype=np.int64, count=n_words).view(np.uint64))
    prev_hash = word_hash  # hash of the (n-1)-gram at each position (valid where it repeats)
    idx = np.arange(n_words)
    h = word_hash
    prev_rep = np.ones(n_words, dtype=bool)  # positions whose (n-1)-gram repeats; reset every round
    for n in range(1, max_n + 1):
        if n > 1:
            span = n_words - n + 1
            if span < 2:
                break
            idx = np.flatnonzero(prev_rep[:span] & prev_rep[1 : span + 1])
            if idx.size < 2:
                break
            h = _mix64(prev_hash[idx] * _K + word_hash[idx + (n - 1)])
            prev_hash = np.zeros(span, dtype=np.uint64)
            prev_hash[idx] = h
        if n in top_set:
            rep, inverse, counts, first = _repeated(h)
        else:
            rep = _repeated_mask(h)
        prev_rep = np.zeros(n_words - n + 1, dtype=bool)
        prev_rep[idx[rep]] = True
        if n in top_set and counts.max() > 1:
            # one representative length per unique n-gram (all its occurrences are equal);
            # order: most occurrences, then most characters, then earliest first occurrence
            gram_len = prefix[idx[first] + n] - prefix[idx[first]]
            best = np.lexsort((-first, gram_len, counts))[-1]
            top[n] = _covered(idx[inverse == best], n, prefix)
        if n in dup_set:
            dup[n] = _covered(idx[rep], n, prefix)
    return top, dup, total
