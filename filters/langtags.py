"""One language-code system for every language-ID model and for the labelled test set.

fastText's lid.176 and CLD2 name languages differently: CLD2 says ``iw`` and ``jw`` (old
codes for Hebrew and Javanese), lid.176 says ``als`` for Alemannic (ISO's ``als`` is Tosk
Albanian) and ``sh`` for Serbo-Croatian; both say ``tl`` where CLDR says ``fil``. Every label
goes through :func:`canonical` before it is compared, stored or written:

- the tag is standardised with ``langcodes`` (CLDR's aliases, macrolanguages folded:
  ``cmn`` → ``zh``, ``zsm`` → ``ms``, ``iw`` → ``he``), which gives ISO 639-1 where a code
  exists and ISO 639-3 otherwise;
- region subtags are dropped (``pt-BR`` → ``pt``): no model here tells regions apart;
- scripts are kept only where they matter and a model can tell them apart:
  Chinese is ``zh-Hans`` or ``zh-Hant`` (CLD2 tells them apart; lid.176 cannot and says
  ``zh``), Serbian is ``sr-Cyrl`` or ``sr-Latn`` (decided from the text's letters by
  :func:`with_script`, whichever model spoke). Every other script subtag is dropped;
- Norwegian ``no`` is ``nb`` (Bokmål, what both models mean by it; ``nn`` stays ``nn``), and
  ``zlm`` (Malay, the individual language) is ``ms``, as CLDR already folds ``zsm``.

A recipe's ``keep:`` keys go through the same function, and a key without a script matches
every script of its language (``zh`` keeps ``zh-Hans`` and ``zh-Hant``): see :func:`by_language`.
"""

from __future__ import annotations

import functools
import unicodedata

# Labels whose model meaning differs from their ISO/CLDR meaning.
_MODEL_OVERRIDES = {
    "fasttext": {"als": "gsw", "sh": "sh"},
    "cld2": {"zh": "zh-Hans"},
}
_SCRIPTED = {"zh", "sr"}
_FOLD = {"no": "nb", "zlm": "ms"}  # zlm: Malay, the individual language inside macrolanguage ms


@functools.lru_cache(maxsize=4096)
def canonical(tag: str, model: str | None = None) -> str:
    """The project's code for ``tag`` (a model label, a BCP 47 tag or an ISO 639 code)."""
    override = _MODEL_OVERRIDES.get(model or "", {}).get(tag)
    if override is not None:
        return override
    import langcodes

    try:
        parsed = langcodes.Language.get(langcodes.standardize_tag(tag, macro=True))
    except (ValueError, LookupError):  # not a tag langcodes can parse: keep it, lower-cased
        return tag.lower()
    language = parsed.language or tag.lower()
    language = _FOLD.get(language, language)
    if language == "zh" and parsed.script in ("Hans", "Hant"):
        return f"zh-{parsed.script}"
    if language == "zh" and parsed.territory in ("TW", "HK", "MO"):
        return "zh-Hant"
    if language == "sr" and parsed.script in ("Cyrl", "Latn"):
        return f"sr-{parsed.script}"
    return language


def base(code: str) -> str:
    """The language without its script: ``zh-Hant`` → ``zh``."""
    return code.split("-", 1)[0]


def by_language(code: str, table: dict[str, float]) -> float | None:
    """``table``'s value for ``code``: its own key, else its language's key without script
    (``zh`` for ``zh-Hant``); ``None`` when neither is there."""
    if code in table:
        return table[code]
    return table.get(base(code))


def dominant_script(text: str, sample: int = 2000) -> str | None:
    """``Cyrl`` or ``Latn``, whichever has more letters in the first ``sample`` characters."""
    cyrillic = latin = 0
    for ch in text[:sample]:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            if name.startswith("CYRILLIC"):
                cyrillic += 1
            elif name.startswith("LATIN"):
                latin += 1
    if not cyrillic and not latin:
        return None
    return "Cyrl" if cyrillic >= latin else "Latn"


def with_script(code: str, text: str) -> str:
    """Serbian gets the script its text is written in (``sr`` → ``sr-Cyrl`` or ``sr-Latn``)."""
    if not code.startswith("sr") or (len(code) > 2 and code[2] != "-"):  # hot path: not Serbian
        return code
    script = dominant_script(text)
    return f"sr-{script}" if script else code
