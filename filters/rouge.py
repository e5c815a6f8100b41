"""ROUGE-L similarity of a new text to every text in a growing pool, fast.

Self-Instruct keeps a generated instruction only if its ROUGE-L F-measure to every
instruction already in the pool is below 0.7. Scored naively that is one LCS per pooled
task per candidate: quadratic in the pool, hours for a pool of 50k tasks.

:class:`RougePool` gives the same answer (the exact maximum F-measure, tested against the
``rouge-score`` package's ``RougeScorer``) with few LCS computations:

* every text is tokenized once, when it joins the pool;
* an inverted index (token -> tasks holding it, with counts) gives, for each pooled task,
  the size of the multiset intersection ``common`` with the candidate. The LCS can be no
  longer than that, so ``2 * common / (len(a) + len(b))`` bounds the F-measure from above;
* tasks are scored exactly in order of falling bound, stopping as soon as the bound can no
  longer beat the best score so far (or, with ``stop_at``, once the best reaches it).

Tokens: by default the ``rouge-score`` package's own tokenizer (lower case, runs of
``[a-z0-9]``), the scorer the Self-Instruct paper used. It sees no token in non-Latin text,
so every such pair scores 0; ``tokenizer="unicode"`` uses lower-cased words of any script
(:func:`filters.text.split_words`; characters for Chinese and Japanese) instead.

Why not ``rouge_score.rouge_scorer.RougeScorer.score``: it tokenizes both texts on every
call; here the pool's tokens are kept, and the LCS is a one-row dynamic program.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Literal

import numpy as np

Tokenizer = Literal["rouge_score", "unicode"]


def rouge_score_tokens(text: str) -> list[str]:
    """Tokens exactly as ``rouge_score.rouge_scorer.RougeScorer(['rougeL'])`` makes them."""
    from rouge_score.tokenize import tokenize

    return tokenize(text, None)


def unicode_tokens(text: str) -> list[str]:
    from filters.text import split_words

    return [w.lower() for w in split_words(text)]


def tokenizer_for(name: Tokenizer) -> Callable[[str], list[str]]:
    if name == "rouge_score":
        return rouge_score_tokens
    if name == "unicode":
        return unicode_tokens
    raise ValueError(f"unknown ROUGE tokenizer {name!r}; use 'rouge_score' or 'unicode'")


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for token in a:
        diagonal = 0
        for j, other in enumerate(b, 1):
            above = row[j]
            row[j] = diagonal + 1 if token == other else (above if above > row[j - 1] else row[j - 1])
            diagonal = above
    return row[-1]


def rouge_l(a: list[str], b: list[str]) -> float:
    """ROUGE-L F-measure of two token lists, computed as ``rouge-score`` does."""
    if not a or not b:
        return 0.0
    lcs = lcs_length(a, b)
    precision, recall = lcs / len(b), lcs / len(a)
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


class _Postings:
    """Task indices and token counts for one token, in growable numpy arrays."""

    __slots__ = ("ids", "counts", "size")

    def __init__(self) -> None:
        self.ids = np.empty(4, dtype=np.int64)
        self.counts = np.empty(4, dtype=np.int32)
        self.size = 0

    def append(self, task: int, count: int) -> None:
        if self.size == len(self.ids):
            self.ids = np.resize(self.ids, 2 * self.size)
            self.counts = np.resize(self.counts, 2 * self.size)
        self.ids[self.size] = task
        self.counts[self.size] = count
        self.size += 1


class RougePool:
    """Texts and their tokens; :meth:`max_similarity` finds the most similar one to a new text."""

    def __init__(self, tokenizer: Tokenizer = "rouge_score") -> None:
        self.tokenize = tokenizer_for(tokenizer)
        self.ids: list[str] = []
        self.tokens: list[list[str]] = []
        self._lengths = np.empty(16, dtype=np.int64)
        self._index: dict[str, _Postings] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, text: str, task_id: str) -> None:
        tokens = self.tokenize(text)
        position = len(self.ids)
        self.ids.append(task_id)
        self.tokens.append(tokens)
        if position == len(self._lengths):
            self._lengths = np.resize(self._lengths, 2 * position)
        self._lengths[position] = len(tokens)
        for token, count in Counter(tokens).items():
            self._index.setdefault(token, _Postings()).append(position, count)

    def max_similarity(self, text: str, stop_at: float | None = None) -> tuple[float, str | None]:
        """The highest ROUGE-L F-measure of ``text`` to a pooled text, and that text's id
        (``(0.0, None)`` when nothing shares a token). With ``stop_at``, the search ends as
        soon as a score of at least ``stop_at`` is found (enough to reject a candidate)."""
        tokens = self.tokenize(text)
        size = len(self.ids)
        if not tokens or not size:
            return 0.0, None
        common = np.zeros(size, dtype=np.int64)
        for token, count in Counter(tokens).items():
            postings = self._index.get(token)
            if postings is not None:
                n = postings.size
                common[postings.ids[:n]] += np.minimum(postings.counts[:n], count)
        candidates = np.flatnonzero(common)
        if not len(candidates):
            return 0.0, None
        bounds = 2.0 * common[candidates] / (len(tokens) + self._lengths[candidates])
        order = np.argsort(-bounds, kind="stable")
        best, best_id = 0.0, None
        for position, bound in zip(candidates[order].tolist(), bounds[order].tolist()):
            # The bound is exact arithmetic on integers; allow for the float rounding of rouge_l.
            if bound <= best - 1e-12:
                break
            score = rouge_l(tokens, self.tokens[position])
            if score > best:
                best, best_id = score, self.ids[position]
                if stop_at is not None and best >= stop_at:
                    break
        return best, best_id
