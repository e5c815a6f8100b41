"""Paragraph-level language shares of a document (pure Python: no Spark, no model).

A document is cut into paragraphs (:func:`split_paragraphs`); the paragraphs of at least
``min_chars`` characters are identified on their own (by whatever identifier the caller
uses, in one batch), and :func:`paragraph_languages` turns those predictions into shares:
the share of a language is the characters of its paragraphs over the characters of all
identified paragraphs. Shorter paragraphs (headings, menu lines, signatures) are not
identified and count in no share.

:meth:`ParagraphLanguages.pieces` regroups the paragraphs by language for splitting a
mixed document: each language's paragraphs in document order. An unidentified paragraph
goes with the next identified paragraph (a heading belongs to the text under it), or with
the last one when none follows.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass

ANNOTATION_PREFIX = "lang_share."
PARAGRAPHS_KEY = ANNOTATION_PREFIX + "paragraphs"  # number of identified paragraphs
CHARS_KEY = ANNOTATION_PREFIX + "chars"  # characters of the identified paragraphs
COUNT_KEYS = frozenset({PARAGRAPHS_KEY, CHARS_KEY})

# A line break, then one or more lines holding only white space: a blank-line separator.
_BLANK_LINES = re.compile(r"\r?\n(?:[^\S\r\n]*\r?\n)+")
_NEWLINE = re.compile(r"\r?\n")


def split_paragraphs(text: str) -> list[str]:
    """Paragraphs: ``text`` cut at blank lines; at single line breaks when that gives one paragraph.

    Each paragraph is stripped of surrounding white space; empty ones are left out.
    """
    parts = [p.strip() for p in _BLANK_LINES.split(text)]
    parts = [p for p in parts if p]
    if len(parts) <= 1:
        lines = [line.strip() for line in _NEWLINE.split(text)]
        lines = [line for line in lines if line]
        if len(lines) > 1:
            return lines
    return parts


@dataclass(frozen=True)
class Paragraph:
    text: str
    lang: str | None  # None: not identified (shorter than min_chars, or no prediction)
    score: float = 0.0


@dataclass(frozen=True)
class Piece:
    """The paragraphs of one language, for a document of their own."""

    lang: str
    paragraphs: tuple[Paragraph, ...]

    @property
    def text(self) -> str:
        return "\n\n".join(p.text for p in self.paragraphs)

    @property
    def identified(self) -> tuple[Paragraph, ...]:
        return tuple(p for p in self.paragraphs if p.lang is not None)

    @property
    def score(self) -> float:
        """Mean score of the piece's identified paragraphs."""
        scores = [p.score for p in self.identified]
        return sum(scores) / len(scores) if scores else 0.0

    def annotations(self) -> dict[str, float]:
        """The piece's own shares: its language 1.0 (only its paragraphs are identified)."""
        return languages_annotations({self.lang: sum(len(p.text) for p in self.identified)}, len(self.identified))


@dataclass(frozen=True)
class ParagraphLanguages:
    """A document's paragraphs with their languages, and the shares that follow."""

    paragraphs: tuple[Paragraph, ...]

    @property
    def identified(self) -> tuple[Paragraph, ...]:
        return tuple(p for p in self.paragraphs if p.lang is not None)

    @property
    def chars(self) -> dict[str, int]:
        """Characters of identified paragraphs per language, most first (ties: first seen first)."""
        chars: dict[str, int] = {}
        for p in self.identified:
            assert p.lang is not None
            chars[p.lang] = chars.get(p.lang, 0) + len(p.text)
        return dict(sorted(chars.items(), key=lambda kv: -kv[1]))  # stable: first seen wins a tie

    @property
    def shares(self) -> dict[str, float]:
        chars = self.chars
        total = sum(chars.values())
        return {lang: n / total for lang, n in chars.items()} if total else {}

    @property
    def dominant(self) -> str | None:
        return next(iter(self.chars), None)

    @property
    def dominant_share(self) -> float:
        """Share of the dominant language; 1.0 when nothing was identified (nothing is mixed)."""
        shares = self.shares
        return next(iter(shares.values())) if shares else 1.0

    def is_mixed(self, min_dominant_share: float) -> bool:
        return bool(self.identified) and self.dominant_share < min_dominant_share

    def annotations(self) -> dict[str, float]:
        """``lang_share.<code>`` per language, ``lang_share.paragraphs`` and ``lang_share.chars``."""
        return languages_annotations(self.chars, len(self.identified))

    def pieces(self) -> list[Piece]:
        """The paragraphs regrouped by language, the dominant language first, then by size.

        Unidentified paragraphs go with the next identified one (else the previous one);
        without any identified paragraph there are no pieces.
        """
        identified = [i for i, p in enumerate(self.paragraphs) if p.lang is not None]
        if not identified:
            return []
        grouped: dict[str, list[Paragraph]] = {lang: [] for lang in self.chars}
        for i, paragraph in enumerate(self.paragraphs):
            at = bisect_left(identified, i)
            owner = identified[at] if at < len(identified) else identified[-1]
            lang = self.paragraphs[owner].lang
            assert lang is not None
            grouped[lang].append(paragraph)
        return [Piece(lang, tuple(paragraphs)) for lang, paragraphs in grouped.items()]


def languages_annotations(chars: dict[str, int], identified: int) -> dict[str, float]:
    total = sum(chars.values())
    signals = {ANNOTATION_PREFIX + lang: n / total for lang, n in chars.items()} if total else {}
    signals[PARAGRAPHS_KEY] = float(identified)
    signals[CHARS_KEY] = float(total)
    return signals


def paragraph_languages(
    paragraphs: Sequence[str], predictions: Sequence[tuple[str | None, float] | None]
) -> ParagraphLanguages:
    """Pair each paragraph with its prediction (``None``: not identified)."""
    if len(paragraphs) != len(predictions):
        raise ValueError(f"{len(paragraphs)} paragraphs but {len(predictions)} predictions")
    return ParagraphLanguages(
        tuple(Paragraph(text, *(pred if pred is not None else (None, 0.0))) for text, pred in zip(paragraphs, predictions))
    )


PredictFn = Callable[[Sequence[str]], Sequence[tuple[str | None, float]]]


def identify_paragraphs(texts: Sequence[str], predict: PredictFn, min_chars: int) -> list[ParagraphLanguages]:
    """:class:`ParagraphLanguages` of every text; one ``predict`` call for all their long paragraphs."""
    split = [split_paragraphs(text) for text in texts]
    todo = [p for paragraphs in split for p in paragraphs if len(p) >= min_chars]
    predicted = iter(predict(todo) if todo else [])
    out = []
    for paragraphs in split:
        predictions = [next(predicted) if len(p) >= min_chars else None for p in paragraphs]
        out.append(paragraph_languages(paragraphs, predictions))
    return out

