"""Heuristic quality filters: Gopher quality, Gopher repetition, C4 and FineWeb.

The rules and default thresholds follow the de-facto standards (Gopher, Rae et al. 2021, table
A1 and section A.1.1; C4, Raffel et al. 2020; FineWeb, Penedo et al. 2024) as implemented by
datatrove, with the differences noted in each class docstring. Every filter splits words with
:func:`filters.text.split_words`, so Chinese, Japanese, Thai … are counted sensibly.

Naming: a rule is named after the signal it tests (``gopher_quality:word_count`` is decided
from ``gopher_quality.word_count``); boolean signals are ``has_<x>`` and their rule is ``<x>``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import repeat
from typing import ClassVar

from pydantic import Field

from filters.base import DocumentFilter, FilterConfig, Verdict
from filters.text import (
    ELLIPSES,
    PUNCTUATION,
    TERMINAL_PUNCT,
    count_alpha_words,
    count_line_breaks,
    count_sentences,
    is_spaceless,
    ngram_repetition,
    normalize_lang,
    split_lines,
    split_paragraphs,
    split_words,
)

__all__ = [
    "C4Filter",
    "FILTERS",
    "FilterChain",
    "FineWebFilter",
    "GopherQuality",
    "GopherRepetition",
]


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


# ---------------------------------------------------------------------------------------
# Gopher quality
# ---------------------------------------------------------------------------------------

GOPHER_STOP_WORDS_EN = ["the", "be", "to", "of", "and", "that", "have", "with"]


class GopherQualityConfig(FilterConfig):
    """Thresholds of :class:`GopherQuality`; ``None`` turns a rule off."""

    min_words: int | None = 50
    max_words: int | None = 100_000
    min_mean_word_length: float | None = 3.0
    max_mean_word_length: float | None = 10.0
    max_symbol_word_ratio: float | None = 0.1  # for '#', and for '...'/'…', each separately
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    min_alpha_words_ratio: float | None = 0.8
    min_stop_words: int | None = 2  # distinct stop words of the document's language
    stop_words: dict[str, list[str]] = Field(default_factory=lambda: {"en": list(GOPHER_STOP_WORDS_EN)})
    # language assumed for the stop-word rule when a document has no lang (None: skip the rule)
    default_lang: str | None = "en"
    # a line "starts with a bullet" when its first non-space character is one of these
    bullets: str = "•‣⁃◦▪▫●○■□►▸▹➢➤✓✔-*–·"


class GopherQuality(DocumentFilter[GopherQualityConfig]):
    """Gopher's quality rules (Rae et al. 2021, A.1.1).

    Drops a document with fewer than 50 or more than 100,000 words (rule ``word_count``); a
    mean word length outside 3..10 characters (``mean_word_length``); more than 0.1 ``#`` per
    word (``hash_word_ratio``) or ellipses (``...``/``…``) per word (``ellipsis_word_ratio``);
    more than 90% of its lines starting with a bullet (``bullet_lines_ratio``) or 30% ending in
    an ellipsis (``ellipsis_lines_ratio``); fewer than 80% of words containing a letter
    (``alpha_words_ratio``); fewer than 2 distinct stop words (``stop_words``).

    Languages written without spaces (zh, ja, th, …; see :func:`filters.text.is_spaceless`,
    which also detects them from the script when ``lang`` is None): words are counted with
    :func:`filters.text.split_words` (one Han/Kana character = one word), and the
    ``mean_word_length`` and ``stop_words`` rules are skipped — a "word" there is a character
    or a script run, so its length means nothing, and the English stop words cannot occur.
    The stop-word rule is also skipped for a language that has no list in ``stop_words``
    (a document without lang uses ``default_lang``). Stop words match case-insensitively.
    Lines are the non-blank lines.

    Differences from datatrove: words are whitespace tokens stripped of punctuation rather
    than NLTK tokens; stop words are counted distinct, as the paper says ("at least two of").
    """

    name: ClassVar[str] = "gopher_quality"
    Config: ClassVar[type[FilterConfig]] = GopherQualityConfig

    def __init__(self, config: GopherQualityConfig | None = None) -> None:
        super().__init__(config)
        self._stop_words = {
            normalize_lang(lang): frozenset(w.lower() for w in words)
            for lang, words in self.config.stop_words.items()
        }
        self._bullets = tuple(self.config.bullets)

    def _stop_list(self, lang: str | None) -> frozenset[str] | None:
        code = normalize_lang(lang) if lang else normalize_lang(self.config.default_lang)
        return self._stop_words.get(code) if code else None

    def signals(self, text: str, lang: str | None = None) -> dict[str, float]:
        spaceless = is_spaceless(lang, text)
        words = split_words(text, lang, spaceless=spaceless)
        n_words = len(words)
        lines = split_lines(text)
        n_lines = len(lines)
        out = {
            "word_count": float(n_words),
            "spaceless": 1.0 if spaceless else 0.0,
            "mean_word_length": _ratio(sum(map(len, words)), n_words),
            "hash_word_ratio": _ratio(text.count("#"), n_words),
            "ellipsis_word_ratio": _ratio(text.count("...") + text.count("…"), n_words),
            "bullet_lines_ratio": _ratio(sum(map(str.startswith, lines, repeat(self._bullets, n_lines))), n_lines),
            "ellipsis_lines_ratio": _ratio(sum(map(str.endswith, lines, repeat(ELLIPSES, n_lines))), n_lines),
            "alpha_words_ratio": _ratio(count_alpha_words(words), n_words),
        }
        stop = None if spaceless else self._stop_list(lang)
        if stop is not None:
            # distinct stop words present; only present in the signals when a list applies
            out["stop_words"] = float(len(stop.intersection(map(str.lower, words))))
        return out

    def decide(self, signals: dict[str, float], lang: str | None = None) -> str | None:
        c = self.config
        n = signals["word_count"]
        if (c.min_words is not None and n < c.min_words) or (c.max_words is not None and n > c.max_words):
            return "word_count"
        if not signals.get("spaceless", 0.0):
            mwl = signals["mean_word_length"]
            if (c.min_mean_word_length is not None and mwl < c.min_mean_word_length) or (
                c.max_mean_word_length is not None and mwl > c.max_mean_word_length
            ):
                return "mean_word_length"
        if c.max_symbol_word_ratio is not None:
            if signals["hash_word_ratio"] > c.max_symbol_word_ratio:
                return "hash_word_ratio"
            if signals["ellipsis_word_ratio"] > c.max_symbol_word_ratio:
                return "ellipsis_word_ratio"
        if c.max_bullet_lines_ratio is not None and signals["bullet_lines_ratio"] > c.max_bullet_lines_ratio:
            return "bullet_lines_ratio"
        if c.max_ellipsis_lines_ratio is not None and signals["ellipsis_lines_ratio"] > c.max_ellipsis_lines_ratio:
            return "ellipsis_lines_ratio"
        if c.min_alpha_words_ratio is not None and signals["alpha_words_ratio"] < c.min_alpha_words_ratio:
            return "alpha_words_ratio"
        if c.min_stop_words is not None and "stop_words" in signals and signals["stop_words"] < c.min_stop_words:
            return "stop_words"
        return None


# ---------------------------------------------------------------------------------------
# Gopher repetition
# ---------------------------------------------------------------------------------------


def _duplicates(items: Sequence[str]) -> tuple[int, int]:
    """(number of items that repeat an earlier item, characters in those repeats)."""
    seen: set[str] = set()
    add = seen.add
    dup_items = dup_chars = 0
    for item in items:
        if item in seen:
            dup_items += 1
            dup_chars += len(item)
        else:
            add(item)
    return dup_items, dup_chars


class GopherRepetitionConfig(FilterConfig):
    """Thresholds of :class:`GopherRepetition` (Gopher table A1); ``None`` turns a rule off,
    and an n missing from ``top_n_grams`` / ``dup_n_grams`` is neither computed nor checked."""

    max_dup_line_frac: float | None = 0.30
    max_dup_para_frac: float | None = 0.30
    max_dup_line_char_frac: float | None = 0.20
    max_dup_para_char_frac: float | None = 0.20
    top_n_grams: dict[int, float] = Field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    dup_n_grams: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    )


class GopherRepetition(DocumentFilter[GopherRepetitionConfig]):
    """Gopher's repetition rules (Rae et al. 2021, A.1.1 and table A1).

    Signals (and rules, same names):

    * ``dup_line_frac`` / ``dup_para_frac``: fraction of lines / paragraphs that repeat an
      earlier one (the first occurrence is not counted as a duplicate). Lines are the non-blank
      lines, stripped; paragraphs are blocks separated by blank lines.
    * ``dup_line_char_frac`` / ``dup_para_char_frac``: characters in those repeats over all
      characters of the lines / paragraphs.
    * ``top_{n}_gram_char_frac`` (n = 2, 3, 4): characters of the words covered by the most
      frequent word n-gram over all word characters. Only an n-gram that occurs at least twice
      counts (a document made of one short n-gram is not "repetitive"; the word-count rule of
      Gopher quality deals with it). Overlapping occurrences count each word once.
    * ``dup_{n}_gram_char_frac`` (n = 5 … 10): characters of the words covered by any n-gram
      that occurs more than once, each word counted once, over all word characters — the
      paper's definition (datatrove approximates it with a greedy skip).

    Words come from :func:`filters.text.split_words` (punctuation stripped). For spaceless
    languages the "words" are characters, so the n-gram rules become character n-gram rules;
    the thresholds were set for English words and are looser there.
    """

    name: ClassVar[str] = "gopher_repetition"
    Config: ClassVar[type[FilterConfig]] = GopherRepetitionConfig

    def signals(self, text: str, lang: str | None = None) -> dict[str, float]:
        lines = split_lines(text)
        paragraphs = split_paragraphs(text)
        line_dups, line_dup_chars = _duplicates(lines)
        para_dups, para_dup_chars = _duplicates(paragraphs)
        out = {
            "dup_line_frac": _ratio(line_dups, len(lines)),
            "dup_para_frac": _ratio(para_dups, len(paragraphs)),
            "dup_line_char_frac": _ratio(line_dup_chars, sum(map(len, lines))),
            "dup_para_char_frac": _ratio(para_dup_chars, sum(map(len, paragraphs))),
        }
        words = split_words(text, lang)
        top, dup, total = ngram_repetition(words, self.config.top_n_grams, self.config.dup_n_grams)
        for n in sorted(top):
            out[f"top_{n}_gram_char_frac"] = _ratio(top[n], total)
        for n in sorted(dup):
            out[f"dup_{n}_gram_char_frac"] = _ratio(dup[n], total)
        return out

    def decide(self, signals: dict[str, float], lang: str | None = None) -> str | None:
        c = self.config
        for key, limit in (
            ("dup_line_frac", c.max_dup_line_frac),
            ("dup_para_frac", c.max_dup_para_frac),
            ("dup_line_char_frac", c.max_dup_line_char_frac),
            ("dup_para_char_frac", c.max_dup_para_char_frac),
        ):
            if limit is not None and signals[key] > limit:
                return key
        for n, limit in sorted(c.top_n_grams.items()):
            key = f"top_{n}_gram_char_frac"
            if signals.get(key, 0.0) > limit:
                return key
        for n, limit in sorted(c.dup_n_grams.items()):
            key = f"dup_{n}_gram_char_frac"
            if signals.get(key, 0.0) > limit:
                return key
        return None


# ---------------------------------------------------------------------------------------
# C4
# ---------------------------------------------------------------------------------------

C4_POLICY_PHRASES = [
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
]

# Wikipedia-style citation markers: [1], [23], [edit], [citation needed]
_CITATION_RE = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", re.IGNORECASE)

_C4_LINE_REASONS = ("long_word", "no_terminal_punct", "too_few_words", "javascript", "policy")


def _has_n_words(tokens: list[str], n: int) -> bool:
    """Whether at least ``n`` of the whitespace tokens are words (not punctuation only)."""
    if len(tokens) < n:
        return False
    found = 0
    for token in tokens:
        if token.strip(PUNCTUATION):
            found += 1
            if found >= n:
                return True
    return found >= n


class C4Config(FilterConfig):
    """Settings of :class:`C4Filter`. Defaults are FineWeb's use of C4's rules."""

    # line rules (the line is removed)
    min_words_per_line: int | None = 3
    max_word_length: int | None = 1000
    filter_javascript: bool = True
    filter_policy: bool = True
    policy_phrases: list[str] = Field(default_factory=lambda: list(C4_POLICY_PHRASES))
    # C4 kept only lines ending in terminal punctuation; FineWeb turned this off because it
    # removed ~30% of all tokens (too aggressive for lists, headings, code-free prose without
    # final periods), so it is off by default here as well.
    filter_no_terminal_punct: bool = False
    remove_citations: bool = True
    # document rules (decided on the cleaned text)
    filter_lorem_ipsum: bool = True
    filter_curly_bracket: bool = True
    min_num_sentences: int | None = 5


class C4Filter(DocumentFilter[C4Config]):
    """C4's cleaning rules (Raffel et al. 2020, section 2.2; tfds ``c4_utils``).

    ``rewrite`` removes lines (each removed line counted under its first matching reason):
    a word longer than ``max_word_length`` (``long_word``); no terminal punctuation, when
    ``filter_no_terminal_punct`` (``no_terminal_punct``; an ellipsis is not terminal); fewer
    than ``min_words_per_line`` words (``too_few_words``); "javascript" (``javascript``); a
    cookie / terms-of-use phrase (``policy``). Wikipedia citation marks (``[1]``, ``[edit]``)
    are deleted first. Blank lines are kept as paragraph breaks (runs collapsed to one), unlike
    C4, so that later filters still see paragraphs. An unchanged document is returned as the
    same object (``Verdict.text`` stays None).

    ``decide`` drops the cleaned document when it contains "lorem ipsum" (``lorem_ipsum``),
    a ``{`` (``curly_bracket``; C4's way to remove code), or has fewer than
    ``min_num_sentences`` sentences (``sentence_count``, counted approximately by
    :func:`filters.text.count_sentences`).

    Signals: ``has_lorem_ipsum``, ``has_curly_bracket``, ``sentence_count`` (of the cleaned
    text), ``lines`` (non-blank input lines), ``lines_removed``, ``lines_removed_fraction``,
    ``chars_removed_fraction`` and ``lines_removed_<reason>`` per reason above.
    :meth:`signals` cleans its input first, so ``signals(raw)`` equals the signals of
    ``__call__(raw)``. Words are counted with :func:`filters.text.split_words`, so a Chinese
    line of ten characters has ten words.
    """

    name: ClassVar[str] = "c4"
    Config: ClassVar[type[FilterConfig]] = C4Config

    def __init__(self, config: C4Config | None = None) -> None:
        super().__init__(config)
        self._policy = tuple(p.lower() for p in self.config.policy_phrases)

    # -- line cleaning -----------------------------------------------------------------

    def _line_reason(self, line: str, spaceless: bool, javascript: bool, policy: tuple[str, ...]) -> str | None:
        c = self.config
        if spaceless:
            words = split_words(line, spaceless=True, cache=False)
            long_word = c.max_word_length is not None and bool(words) and max(map(len, words)) > c.max_word_length
            few_words = c.min_words_per_line is not None and len(words) < c.min_words_per_line
        else:
            # same answers as split_words, without stripping every token: a raw token is never
            # shorter than its stripped word, and counting stops once there are enough words
            tokens = line.split()
            long_word = (
                c.max_word_length is not None
                and max(map(len, tokens)) > c.max_word_length
                and max(len(t.strip(PUNCTUATION)) for t in tokens) > c.max_word_length
            )
            few_words = c.min_words_per_line is not None and not _has_n_words(tokens, c.min_words_per_line)
        if long_word:
            return "long_word"
        if c.filter_no_terminal_punct and (not line.endswith(TERMINAL_PUNCT) or line.endswith(ELLIPSES)):
            return "no_terminal_punct"
        if few_words:
            return "too_few_words"
        if javascript or policy:
            low = line.lower()
            if javascript and "javascript" in low:
                return "javascript"
            if policy and any(p in low for p in policy):
                return "policy"
        return None

    def _clean(self, text: str, lang: str | None) -> tuple[str, dict[str, float]]:
        spaceless = is_spaceless(lang, text)
        # phrase rules: look per line only for the phrases the document contains at all
        low_doc = text.lower() if (self.config.filter_javascript or self.config.filter_policy) else ""
        javascript = self.config.filter_javascript and "javascript" in low_doc
        policy = tuple(p for p in self._policy if p in low_doc) if self.config.filter_policy else ()
        removed = dict.fromkeys(_C4_LINE_REASONS, 0)
        kept: list[str] = []
        n_lines = 0
        changed = False
        removed_chars = 0
        for raw in text.splitlines():
            line = raw.strip()
            if not line:
                if kept and kept[-1]:
                    kept.append("")
                continue
            n_lines += 1
            if self.config.remove_citations and "[" in line:
                cleaned = _CITATION_RE.sub("", line).strip()
                if cleaned != line:
                    changed = True
                    removed_chars += len(line) - len(cleaned)
                    line = cleaned
                    if not line:
                        removed["too_few_words"] += 1
                        continue
            reason = self._line_reason(line, spaceless, javascript, policy)
            if reason is None:
                kept.append(line)
            else:
                removed[reason] += 1
                removed_chars += len(line)
        while kept and not kept[-1]:
            kept.pop()
        n_removed = sum(removed.values())
        stats: dict[str, float] = {
            "lines": float(n_lines),
            "lines_removed": float(n_removed),
            "lines_removed_fraction": _ratio(n_removed, n_lines),
            "chars_removed_fraction": _ratio(removed_chars, len(text)),
        }
        for reason, count in removed.items():
            stats[f"lines_removed_{reason}"] = float(count)
        if n_removed == 0 and not changed:
            return text, stats
        return "\n".join(kept), stats

    def rewrite(self, text: str, lang: str | None = None) -> str:
        return self._clean(text, lang)[0]

    # -- signals / decision ------------------------------------------------------------

    @staticmethod
    def _doc_signals(clean: str) -> dict[str, float]:
        return {
            "has_lorem_ipsum": 1.0 if "lorem ipsum" in clean.lower() else 0.0,
            "has_curly_bracket": 1.0 if "{" in clean else 0.0,
            "sentence_count": float(count_sentences(clean)),
        }

    def signals(self, text: str, lang: str | None = None) -> dict[str, float]:
        clean, stats = self._clean(text, lang)
        return self._doc_signals(clean) | stats

    def decide(self, signals: dict[str, float], lang: str | None = None) -> str | None:
        c = self.config
        if c.filter_lorem_ipsum and signals["has_lorem_ipsum"]:
            return "lorem_ipsum"
        if c.filter_curly_bracket and signals["has_curly_bracket"]:
            return "curly_bracket"
        if c.min_num_sentences is not None and signals["sentence_count"] < c.min_num_sentences:
            return "sentence_count"
        return None

    def __call__(self, text: str, lang: str | None = None) -> Verdict:
        # one cleaning pass gives both the new text and the removal counts
        clean, stats = self._clean(text, lang)
        raw = self._doc_signals(clean) | stats
        rule = self.decide(raw, lang)
        return Verdict(
            reason=None if rule is None else f"{self.name}:{rule}",
            signals={f"{self.name}.{k}": float(v) for k, v in raw.items()},
            text=None if clean is text else clean,
        )


# ---------------------------------------------------------------------------------------
# FineWeb
# ---------------------------------------------------------------------------------------


class FineWebConfig(FilterConfig):
    """Thresholds of :class:`FineWebFilter` (datatrove's FineWebQualityFilter defaults)."""

    min_line_punct_ratio: float | None = 0.12
    # documents whose every line lacks punctuation still fail unless this is set
    line_punct_exclude_zero: bool = False
    # languages that do not end sentences with punctuation: the line_punct rule is skipped
    skip_line_punct_langs: list[str] = Field(default_factory=lambda: ["th", "lo"])
    max_short_line_ratio: float | None = 0.67
    short_line_length: int = 30
    # the FineWeb paper's text says 0.1; its code (and its released data) used 0.01
    max_char_dup_ratio: float | None = 0.01
    max_newline_ratio: float | None = 0.3


class FineWebFilter(DocumentFilter[FineWebConfig]):
    """FineWeb's extra rules (Penedo et al. 2024), on the non-blank, stripped lines.

    * ``line_punct_ratio``: fraction of lines ending in terminal punctuation
      (:data:`filters.text.TERMINAL_PUNCT`: ``. ! ? " '`` plus other scripts' full stops);
      drop below 0.12. Skipped for Thai and Lao (``skip_line_punct_langs``), which do not mark
      sentence ends with punctuation.
    * ``short_line_ratio``: fraction of lines of at most 30 characters; drop above 0.67.
    * ``char_dup_ratio``: characters in lines that repeat an earlier line, over all
      characters of the lines; drop above 0.01.
    * ``newline_ratio``: line breaks per word (a blank line between paragraphs is one break);
      drop above 0.3.

    Differences from datatrove: blank lines are ignored (datatrove counts them as short lines
    without punctuation, which penalizes blank-line-separated paragraphs); a value exactly at
    a threshold is kept; words come from :func:`filters.text.split_words`.
    """

    name: ClassVar[str] = "fineweb"
    Config: ClassVar[type[FilterConfig]] = FineWebConfig

    def __init__(self, config: FineWebConfig | None = None) -> None:
        super().__init__(config)
        self._skip_punct = frozenset(normalize_lang(x) for x in self.config.skip_line_punct_langs)

    def signals(self, text: str, lang: str | None = None) -> dict[str, float]:
        lines = split_lines(text)
        n_lines = len(lines)
        short = self.config.short_line_length
        _, dup_chars = _duplicates(lines)
        n_words = len(split_words(text, lang))
        return {
            "line_punct_ratio": _ratio(sum(map(str.endswith, lines, repeat(TERMINAL_PUNCT, n_lines))), n_lines),
            "short_line_ratio": _ratio(sum(1 for n in map(len, lines) if n <= short), n_lines),
            "char_dup_ratio": _ratio(dup_chars, sum(map(len, lines))),
            "newline_ratio": count_line_breaks(text) / max(n_words, 1),
            "line_count": float(n_lines),
        }

    def decide(self, signals: dict[str, float], lang: str | None = None) -> str | None:
        c = self.config
        punct = signals["line_punct_ratio"]
        if (
            c.min_line_punct_ratio is not None
            and punct < c.min_line_punct_ratio
            and not (punct == 0.0 and c.line_punct_exclude_zero)
            and normalize_lang(lang) not in self._skip_punct
        ):
            return "line_punct_ratio"
        if c.max_short_line_ratio is not None and signals["short_line_ratio"] > c.max_short_line_ratio:
            return "short_line_ratio"
        if c.max_char_dup_ratio is not None and signals["char_dup_ratio"] > c.max_char_dup_ratio:
            return "char_dup_ratio"
        if c.max_newline_ratio is not None and signals["newline_ratio"] > c.max_newline_ratio:
            return "newline_ratio"
        return None


# ---------------------------------------------------------------------------------------
# registry and chain
# ---------------------------------------------------------------------------------------

#: Every quality filter by name, in the default order: the order of datatrove's FineWeb
#: pipeline (Gopher repetition, Gopher quality, C4, FineWeb). C4 rewrites text, so the
#: filters after it see the cleaned document.
FILTERS: dict[str, type[DocumentFilter]] = {
    GopherRepetition.name: GopherRepetition,
    GopherQuality.name: GopherQuality,
    C4Filter.name: C4Filter,
    FineWebFilter.name: FineWebFilter,
}


class FilterChain:
    """Filters run in order on one document.

    Each filter sees the text as rewritten by the filters before it. The chain stops at the
    first drop, unless ``annotate_all``: then every filter runs (rewrites still apply) so that
    every signal is stored, and the reason is still the *first* failing filter's. The verdict
    carries all signals computed, and the final text when any filter rewrote it.
    """

    def __init__(self, filters: Sequence[DocumentFilter]) -> None:
        names = [f.name for f in filters]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate filters in chain: {names}")
        self.filters: list[DocumentFilter] = list(filters)

    @classmethod
    def from_names(
        cls, names: Sequence[str] | None = None, configs: dict[str, dict] | None = None
    ) -> FilterChain:
        """A chain of registered filters (default: all of :data:`FILTERS`, in order), each
        with its settings from ``configs[name]`` (a recipe section) or its defaults."""
        configs = configs or {}
        unknown = set(configs) - set(FILTERS)
        if unknown:
            raise ValueError(f"settings for unknown filters: {sorted(unknown)}")
        chosen = list(FILTERS) if names is None else list(names)
        filters = []
        for name in chosen:
            if name not in FILTERS:
                raise ValueError(f"unknown filter {name!r}; known: {list(FILTERS)}")
            klass = FILTERS[name]
            filters.append(klass(klass.Config.model_validate(configs.get(name, {}))))
        return cls(filters)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.filters]

    def __call__(self, text: str, lang: str | None = None, annotate_all: bool = False) -> Verdict:
        current = text
        reason: str | None = None
        signals: dict[str, float] = {}
        for flt in self.filters:
            verdict = flt(current, lang)
            signals.update(verdict.signals)
            if verdict.text is not None:
                current = verdict.text
            if verdict.reason is not None and reason is None:
                reason = verdict.reason
                if not annotate_all:
                    break
        return Verdict(reason=reason, signals=signals, text=None if current is text else current)
