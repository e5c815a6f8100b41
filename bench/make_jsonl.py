"""Generate a synthetic JSONL corpus of real English sentences for the ingest benchmark.

Usage::

    python -m bench.make_jsonl --out /tmp/corpusforge-bench/jsonl [--lines 200000] [--shards 8]

Why not lorem ipsum: text statistics (word lengths, punctuation, non-ASCII characters) affect
JSON parsing and later stages (language id, quality filters), so the records are built from
sentences of the Python documentation's reStructuredText sources (Debian package python3-doc),
with the markup stripped. Sampling is seeded, so the same arguments give the same files.

Why shards: real corpora come as many files, and the ingest stage spreads *files* over Spark
tasks, so one big file would be read by one task on one core.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path
from typing import Iterator, Sequence

DEFAULT_SOURCES = Path("/usr/share/doc/python3.11/html/_sources")

_ROLE = re.compile(r":[\w:.-]+:`(?:[^`<]*<)?([^`>]+)>?`")  # :func:`name` / :ref:`text <target>` -> name / target text
_LITERAL = re.compile(r"``([^`]+)``")
_LINK = re.compile(r"`([^`<]+?)\s*(?:<[^`>]*>)?`_{1,2}")
_EMPHASIS = re.compile(r"\*{1,2}([^*]+)\*{1,2}")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+<>_:.])\1{2,}\s*$")


def paragraphs(text: str) -> Iterator[str]:
    """Prose paragraphs of a reST file: no directives, code blocks, tables, headings or lists."""
    block: list[str] = []
    in_literal = False
    for line in text.splitlines() + [""]:
        stripped = line.strip()
        if in_literal:
            if stripped and not line[:1].isspace():
                in_literal = False
            else:
                continue
        if not stripped:
            if block:
                yield " ".join(block)
                block = []
            continue
        if line[:1].isspace() or stripped.startswith(("..", "|", "+", "*", "-", "#.", ">>>")) or _UNDERLINE.match(stripped):
            if block:
                yield " ".join(block)
                block = []
            continue
        block.append(stripped)
        if stripped.endswith("::"):  # the indented block after it is code
            yield " ".join(block)[:-1]
            block = []
            in_literal = True


def clean(sentence: str) -> str:
    sentence = _ROLE.sub(lambda m: m.group(1).lstrip("~!"), sentence)  # ~ and ! are Sphinx display flags
    sentence = _LITERAL.sub(r"\1", sentence)
    sentence = _LINK.sub(r"\1", sentence)
    sentence = _EMPHASIS.sub(r"\1", sentence)
    return re.sub(r"\s+", " ", sentence).strip()


def is_prose(sentence: str) -> bool:
    """Reasonably long, mostly letters and spaces, ends like a sentence, no leftover markup."""
    if not 40 <= len(sentence) <= 400 or sentence[-1] not in ".!?" or not sentence[0].isupper():
        return False
    if any(mark in sentence for mark in ("`", "::", "|", "\\")):
        return False
    letters = sum(c.isalpha() or c == " " for c in sentence)
    return letters / len(sentence) > 0.85 and len(sentence.split()) >= 7


def load_sentences(sources: Path) -> list[str]:
    sentences: list[str] = []
    for path in sorted(sources.rglob("*.txt")):
        text = path.read_text(encoding="utf-8", errors="replace")
        for paragraph in paragraphs(text):
            for sentence in _SENTENCE_END.split(clean(paragraph)):
                if is_prose(sentence):
                    sentences.append(sentence)
    return sentences


def records(sentences: list[str], count: int, rng: random.Random, min_chars: int, max_chars: int) -> Iterator[dict[str, str]]:
    """Documents of a few hundred characters: a run of consecutive sentences from a random start."""
    for number in range(count):
        target = rng.randint(min_chars, max_chars)
        start = rng.randrange(len(sentences))
        parts: list[str] = []
        size = 0
        while size < target:
            sentence = sentences[(start + len(parts)) % len(sentences)]
            parts.append(sentence)
            size += len(sentence) + 1
        yield {
            "id": f"synth-{number:07d}",
            "url": f"https://example.org/doc/{number}",
            "title": parts[0][:60].rsplit(" ", 1)[0],
            "text": " ".join(parts),
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.make_jsonl", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the shards (created)")
    parser.add_argument("--lines", type=int, default=200_000, help="records in total (default 200000)")
    parser.add_argument("--shards", type=int, default=8, help="number of .jsonl files (default 8)")
    parser.add_argument("--min-chars", type=int, default=200)
    parser.add_argument("--max-chars", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sources", type=Path, default=DEFAULT_SOURCES, help="directory of .rst.txt files")
    args = parser.parse_args(argv)

    sentences = load_sentences(args.sources)
    if not sentences:
        parser.error(f"no sentences found under {args.sources}")
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    per_shard = -(-args.lines // args.shards)
    stream = records(sentences, args.lines, rng, args.min_chars, args.max_chars)
    total = 0
    for shard in range(args.shards):
        path = args.out / f"part-{shard:03d}.jsonl"
        with open(path, "w", encoding="utf-8") as handle:
            for record in (r for _, r in zip(range(per_shard), stream)):
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                total += 1
    print(f"{total} records from {len(sentences)} distinct sentences in {args.shards} files under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
