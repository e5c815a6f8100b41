"""A labelled multilingual test set built from real translated text already on the machine.

Debian installs the translations of its programs as gettext catalogues,
``/usr/share/locale/<locale>/LC_MESSAGES/<domain>.mo``: thousands of strings written by
human translators in dozens of languages. That is the only multilingual text we can count
on offline, so the language-identification tests sample it.

The catalogues are read with a small parser of our own (``read_mo``), not
``gettext.GNUTranslations``: that one decodes the header as UTF-8 before it has read the
declared charset and raises on some real files (a Latin-1 ``Last-Translator`` line), and
one broken entry must cost one entry, not the file.

Strings are user-interface messages, so they are cleaned before use: format placeholders
(``%s``, ``%1$d``, ``%(name)s``, ``{0}``, ``${var}``), markup, entities, accelerator marks
(``&File``, ``_File``) and escapes are removed, whitespace collapsed; a string is kept if it
is still at least ``min_chars`` long, mostly letters, and differs from its English msgid.
"""

from __future__ import annotations

import functools
import random
import re
import struct
from collections import defaultdict
from pathlib import Path

LOCALE_ROOT = Path("/usr/share/locale")

# locale directory -> fastText lid.176 label. Several directories may share a label.
LOCALES: dict[str, str] = {
    "de": "de",
    "fr": "fr",
    "es": "es",
    "it": "it",
    "pt_BR": "pt",
    "pt": "pt",
    "ru": "ru",
    "uk": "uk",
    "pl": "pl",
    "cs": "cs",
    "nl": "nl",
    "sv": "sv",
    "fi": "fi",
    "hu": "hu",
    "tr": "tr",
    "el": "el",
    "ja": "ja",
    "zh_CN": "zh",
    "ko": "ko",
    "vi": "vi",
    "ar": "ar",
    "he": "he",
}

# Catalogues of names (ISO country, language, currency and script names; keyboard layouts):
# proper nouns carry little evidence of the language they are written in.
SKIP_DOMAINS = re.compile(r"^(iso_|xkeyboard-config)")

MIN_USABLE_LANGUAGES = 8

_MO_MAGIC_LE = 0x950412DE
_MO_MAGIC_BE = 0xDE120495

_PLACEHOLDER = re.compile(
    r"%(?:\d+\$)?[-+ #0']*(?:\*|\d+)?(?:\.(?:\*|\d+))?(?:hh|h|ll|l|L|q|j|z|t|I64|I32)?"
    r"[diouxXeEfFgGaAcspmn%]"  # printf, with positional arguments (%1$s)
    r"|%\([^)]*\)[-+ #0]*\d*(?:\.\d+)?[a-zA-Z]"  # Python %(name)s
    r"|%<[A-Za-z0-9]+>"  # gettext's %<PRId64>
    r"|\$\{[^}]*\}|\{[^{}]*\}"  # ${var}, {0}, {name}
)
_MARKUP = re.compile(r"</?[A-Za-z][^<>]*>")
_ENTITY = re.compile(r"&(?:[A-Za-z]+|#\d+|#x[0-9A-Fa-f]+);")
_ACCELERATOR = re.compile(r"(?<![\w&])[&_](?=\w)")  # "&File", "_Open" (not "snake_case")
_ESCAPES = re.compile(r"\\[ntr]|[\t\r\n\f\v]")
_SPACES = re.compile(r"\s+")
# Quotes left empty by a removed placeholder ("Datei » « nicht gefunden"): French-looking noise.
_EMPTY_QUOTES = re.compile(r"[«»“”„‟\"'‘’‚「」『』]\s*[«»“”„‟\"'‘’‚「」『』]")
_LETTER = re.compile(r"[^\W\d_]")
_OPTION = re.compile(r"(?<!\S)--?[A-Za-z0-9][\w-]*(?:\[?=\S*)?")  # "-j", "--jobs=NUM"


def read_mo(path: str | Path, min_bytes: int = 0) -> list[tuple[str, str]]:
    """The ``(msgid, msgstr)`` pairs of a compiled gettext catalogue.

    Plural entries give their first forms; the header entry (empty msgid) is not returned.
    Each entry is decoded with the catalogue's declared charset; an entry that does not
    decode is skipped, and a file whose tables are broken gives what could be read.
    Entries whose encoded msgstr is shorter than ``min_bytes`` are not decoded at all (a
    string never has more characters than bytes).
    """
    data = Path(path).read_bytes()
    if len(data) < 28:
        return []
    (magic,) = struct.unpack("<I", data[:4])
    if magic == _MO_MAGIC_LE:
        endian = "<"
    elif magic == _MO_MAGIC_BE:
        endian = ">"
    else:
        return []
    _revision, count, orig_off, trans_off = struct.unpack(endian + "4I", data[4:20])

    def table(offset: int) -> list[tuple[int, int]]:
        """(length, offset) pairs; a table running past the end of the file is cut short."""
        room = max(0, min(count, (len(data) - offset) // 8))
        return list(struct.iter_unpack(endian + "2I", data[offset : offset + 8 * room]))

    raw: list[tuple[bytes, bytes]] = []
    charset = "utf-8"
    for (id_len, id_off), (str_len, str_off) in zip(table(orig_off), table(trans_off)):
        if id_off + id_len > len(data) or str_off + str_len > len(data):
            continue
        if id_len and str_len < min_bytes:
            continue
        msgid, msgstr = data[id_off : id_off + id_len], data[str_off : str_off + str_len]
        if msgid == b"":  # the header: "Content-Type: text/plain; charset=UTF-8\n..."
            m = re.search(rb"charset=\s*([A-Za-z0-9_.:-]+)", msgstr)
            if m:
                charset = m.group(1).decode("ascii")
            continue
        raw.append((msgid, msgstr))
    try:
        "".encode(charset)
    except LookupError:
        charset = "utf-8"

    pairs: list[tuple[str, str]] = []
    for msgid, msgstr in raw:
        try:
            mid = msgid.decode(charset)
            mstr = msgstr.decode(charset)
        except UnicodeDecodeError:
            continue
        mid = mid.split("\x04", 1)[-1].split("\x00", 1)[0]  # context prefix; plural form
        mstr = mstr.split("\x00", 1)[0]
        pairs.append((mid, mstr))
    return pairs


def clean_message(text: str) -> str:
    """A UI string with placeholders, markup, accelerators and escapes removed."""
    text = _ESCAPES.sub(" ", text)
    text = _MARKUP.sub(" ", text)
    text = _ENTITY.sub(" ", text)
    text = _PLACEHOLDER.sub(" ", text)
    text = _OPTION.sub(" ", text)
    text = _ACCELERATOR.sub("", text)
    text = _EMPTY_QUOTES.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def _usable(text: str, min_chars: int) -> bool:
    if len(text) < min_chars:
        return False
    letters = len(text) - len(_LETTER.sub("", text))
    return letters >= 0.6 * len(text)


@functools.lru_cache(maxsize=4)
def raw_pools(min_chars: int = 40, root: Path = LOCALE_ROOT) -> dict[str, list[tuple[str, str, str]]]:
    """Per label, every ``(msgstr, msgid, source_file)`` long enough before cleaning.

    Sorted and deduplicated on the translation. A translation found under two labels (a
    string copied between related languages, or left in English) is dropped from both:
    its label would be a guess. Cached (reading ~1,200 catalogues takes ~2 s); callers
    must not modify the lists.
    """
    pools: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)
    for locale, label in sorted(LOCALES.items()):
        folder = root / locale / "LC_MESSAGES"
        if not folder.is_dir():
            continue
        for mo in sorted(folder.glob("*.mo")):
            if SKIP_DOMAINS.match(mo.name):
                continue
            for msgid, msgstr in read_mo(mo, min_bytes=min_chars):
                if len(msgstr) >= min_chars and msgstr != msgid:  # cleaning never lengthens
                    pools[label].setdefault(msgstr, (msgid, str(mo)))
    labels_of: dict[str, int] = defaultdict(int)
    for pool in pools.values():
        for msgstr in pool:
            labels_of[msgstr] += 1
    return {
        label: [(m, mid, src) for m, (mid, src) in sorted(pool.items()) if labels_of[m] == 1]
        for label, pool in sorted(pools.items())
    }


def build_langid_set(
    per_language: int = 40, seed: int = 0, min_chars: int = 40, root: Path = LOCALE_ROOT
) -> list[dict[str, str]]:
    """``per_language`` samples per language with enough data: ``{"text", "label", "source_file"}``.

    Each language's pool is shuffled with a seeded generator and walked until
    ``per_language`` distinct cleaned strings are found (cleaning every one of the ~500,000
    long strings would take tens of seconds), so the same machine gives the same set.
    Languages without enough usable strings are left out; the caller checks how many remain
    (``MIN_USABLE_LANGUAGES``) and skips if too few.
    """
    rows: list[dict[str, str]] = []
    for label, pool in raw_pools(min_chars, root).items():
        order = list(range(len(pool)))
        random.Random(f"{seed}:{label}").shuffle(order)
        picked: dict[str, str] = {}
        for i in order:
            msgstr, msgid, src = pool[i]
            text = clean_message(msgstr)
            if _usable(text, min_chars) and text not in picked and text != clean_message(msgid):
                picked[text] = src
                if len(picked) == per_language:
                    break
        if len(picked) < per_language:
            continue
        rows.extend({"text": t, "label": label, "source_file": src} for t, src in picked.items())
    return rows


if __name__ == "__main__":  # a quick look: python tests/langid_data.py
    from collections import Counter

    for label, pool in raw_pools().items():
        print(f"{label}: {len(pool)} long translations")
    sample = build_langid_set()
    print(len(sample), dict(Counter(r["label"] for r in sample)))
    for row in sample[:: max(1, len(sample) // 21)]:
        print(row["label"], "|", row["text"][:100], "|", Path(row["source_file"]).name)
