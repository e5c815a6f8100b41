"""Filters and parsers for generated instructions and chat turns (pure Python).

- :class:`InstructionFilter`: Self-Instruct's rules for a new task (word count, a keyword
  blacklist of things a text model cannot do, no leading punctuation, not "Write a
  program"), with Alpaca's additions to the blacklist.
- :class:`RefusalFilter`: refusals ("I'm sorry, but I can't…") and AI disclaimers ("As an
  AI language model…") near the start of a reply.
- :class:`TurnFilter`: a generated turn must have content and must not have been cut at
  the token limit.
- :func:`parse_numbered_tasks` and :func:`parse_instance`: read a model's numbered list of
  tasks and its ``Input:`` / ``Output:`` (or ``Class label:`` / ``Input:``) answer, in the
  shapes small and large models actually write (markdown bold, ``1)``, ``Task 9:``,
  continuation lines, chatter before and after).

Every drop is named ``<filter>:<rule>`` like the corpus filters (:mod:`filters.base`).
"""

from __future__ import annotations

import re
import string
from typing import ClassVar

from pydantic import Field

from filters.base import DocumentFilter, FilterConfig, Verdict

# Self-Instruct's list (bootstrap_instructions.py) plus Alpaca's (generate_instruction.py).
DEFAULT_BLACKLIST = [
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
]
DEFAULT_FORBIDDEN_PREFIXES = ["write a program"]


class InstructionFilterConfig(FilterConfig):
    """``self_instruct.instruction``: what a generated task must look like."""

    min_words: int = Field(4, ge=1, description="fewer words: dropped (Self-Instruct drops 3 words or fewer)")
    max_words: int = Field(150, ge=1, description="more words: dropped")
    blacklist: list[str] = Field(
        default_factory=lambda: list(DEFAULT_BLACKLIST),
        description="whole words or phrases (any case) naming what a text model cannot do",
    )
    forbidden_prefixes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_FORBIDDEN_PREFIXES),
        description="instructions starting with one of these (any case) are dropped",
    )
    leading_punctuation: bool = Field(True, description="drop instructions that start with punctuation")


class InstructionFilter(DocumentFilter[InstructionFilterConfig]):
    """Self-Instruct's heuristics for a newly generated instruction.

    Signals: ``word_count`` (white-space separated, as Self-Instruct counts),
    ``blacklisted`` (how many blacklist entries occur as whole words), ``leading_punct``
    and ``forbidden_prefix`` (0 or 1). Rules, in order: ``too_short``, ``too_long``,
    ``blacklist``, ``leading_punctuation``, ``forbidden_prefix``.
    """

    name: ClassVar[str] = "instruction"
    Config: ClassVar[type[FilterConfig]] = InstructionFilterConfig

    def __init__(self, config: InstructionFilterConfig | None = None) -> None:
        super().__init__(config)
        words = sorted({w.strip().lower() for w in self.config.blacklist if w.strip()}, key=len, reverse=True)
        self._blacklist = (
            re.compile(r"\b(?:" + "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in words) + r")\b", re.IGNORECASE)
            if words
            else None
        )
        self._prefixes = tuple(p.strip().lower() for p in self.config.forbidden_prefixes if p.strip())

    def blacklisted(self, text: str) -> list[str]:
        """The blacklist entries found in ``text`` (lower case, in order of appearance)."""
        if self._blacklist is None:
            return []
        return [" ".join(m.group(0).lower().split()) for m in self._blacklist.finditer(text)]

    def signals(self, text: str, lang: str | None = None) -> dict[str, float]:
        stripped = text.strip()
        return {
            "word_count": float(len(stripped.split())),
            "blacklisted": float(len(self.blacklisted(stripped))),
            "leading_punct": float(bool(stripped) and stripped[0] in string.punctuation),
            "forbidden_prefix": float(stripped.lower().startswith(self._prefixes) if self._prefixes else False),
        }

    def decide(self, signals: dict[str, float], lang: str | None = None) -> str | None:
        config = self.config
        if signals["word_count"] < config.min_words:
            return "too_short"
        if signals["word_count"] > config.max_words:
            return "too_long"
        if signals["blacklisted"]:
            return "blacklist"
        if config.leading_punctuation and signals["leading_punct"]:
            return "leading_punctuation"
        if signals["forbidden_prefix"]:
            return "forbidden_prefix"
        return None


class RefusalFilterConfig(FilterConfig):
    window_chars: int = Field(300, ge=1, description="only the start of a reply is searched")


# What a refusal declines to do; "I can't wait", "I can't stress enough" are not refusals.
_REFUSED = (
    r"(?: be able to)? (?:help|assist|provide|fulfil|fulfill|comply|do|answer|create|generate|write|engage|support"
    r"|continue|complete|produce|share|give|offer|discuss|make|access|browse|perform|take part)\b(?! but\b)"
)
_CANNOT = r"(?: can ?not| can't| won't| will not| am unable to|'m unable to| am not able to|'m not able to)"
# after an apology any verb makes a refusal, but for these idioms
_IDIOM = r"(?:(?: be able to)? (?:stress|emphasi[sz]e|wait|believe|agree|thank|tell you how)\b|(?: help)? but\b)"
_REFUSAL = re.compile(
    # an apology straight before the inability, anywhere in the window: "I'm sorry, but I can't read it"
    rf"\bI(?:'m| am)(?: really| very| so| truly)? (?:sorry|afraid),? (?:but )?I{_CANNOT}(?!{_IDIOM})"
    # an inability opening the reply or a sentence or clause of it: "I cannot fulfil…",
    # "Unfortunately, I can't…", "As an AI language model, I cannot help…"
    rf"|(?:^|[.!?:;,]\s)\W*(?:(?:sorry|unfortunately|regrettably|i apologi[sz]e)[,.!]?\s*(?:but\s*)?)?I(?:{_CANNOT}{_REFUSED}"
    r"|(?: am|'m) not (?:capable of|allowed to|permitted to)\b|(?: must| have to| need to) (?:decline|refuse)\b)"
    r"|\bnot something I(?: can| am able to|'m able to| could) (?:help|assist)"
    r"|\b(?:against|violates?|violating) (?:my|our|openai's) (?:guidelines|policy|policies|content policy|programming"
    r"|principles|ethical guidelines)",
    re.IGNORECASE,
)
_AI = r"(?:ai|artificial intelligence|(?:large )?language model|chatbot|(?:ai|virtual|digital) assistant)"
_DISCLAIMER = re.compile(
    # "As an AI language model, I…", "As a chatbot, I…": not "As an AI researcher, Dr. Lee…"
    rf"\bas an? {_AI}(?: (?:language )?model| assistant)?(?=\s*[,.;:!]|\s+(?:I|my)\b)"
    # "I'm just an AI, so…", "I'm a helpful AI.": not "I'm an AI enthusiast"
    rf"|\bI(?:'m| am)(?: just| only| simply| merely)? an? (?:\w+ )?{_AI}(?: (?:language )?model| assistant)?"
    r"(?=\s*[,.;:!]|\s*$|\s+(?:and|so|that|designed|created|trained|developed|programmed|here|with|without|who|which)\b)"
    r"|\bI (?:do not|don't) have (?:personal )?(?:opinions|feelings|emotions|beliefs|preferences|a body"
    r"|access to real-time|the ability to)",
    re.IGNORECASE,
)
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


class RefusalFilter(DocumentFilter[RefusalFilterConfig]):
    """Refusals and AI disclaimers in the first ``window_chars`` of a reply (English phrases).

    Signals ``refusal`` and ``ai_disclaimer`` (0 or 1); rules of the same names. A synthetic
    assistant that refuses or talks about being an AI teaches the trained model to do the same.
    """

    name: ClassVar[str] = "refusal"
    Config: ClassVar[type[FilterConfig]] = RefusalFilterConfig

    def signals(self, text: str, lang: str | None = None) -> dict[str, float]:
        head = text[: self.config.window_chars].translate(_APOSTROPHES)
        return {"refusal": float(bool(_REFUSAL.search(head))), "ai_disclaimer": float(bool(_DISCLAIMER.search(head)))}

    def decide(self, signals: dict[str, float], lang: str | None = None) -> str | None:
        if signals["refusal"]:
            return "refusal"
        if signals["ai_disclaimer"]:
            return "ai_disclaimer"
        return None


_WORD_CHAR = re.compile(r"[^\W_]")


class TurnFilter:
    """A generated turn: ``turn:empty`` (no letter or digit at all), ``turn:truncated``
    (the backend stopped at ``max_new_tokens``: the reply is cut mid-thought)."""

    name = "turn"

    def check(self, text: str, finish_reason: str) -> Verdict:
        if not _WORD_CHAR.search(text):
            return Verdict(reason="turn:empty")
        if finish_reason == "length":
            return Verdict(reason="turn:truncated")
        return Verdict(reason=None)


# --- parsing -------------------------------------------------------------------------------

# "9. Task", "9) Task", "**9.** Task", "- 9. Task", "Task 9: Task", "#9 - Task", "9 - Task"
_ITEM = re.compile(
    r"^\s*(?:[-*\u2022]\s+)?(?:\*\*|__)?(?:(?:task|instruction|question)\s*)?#?(\d{1,3})\s*(?:[.):\]](?=\s|\*|_|$|[A-Z\"'])|\s-)"
    r"\s*(?:\*\*|__)?\s*(.*)$",
    re.IGNORECASE,
)
# "Task:", "Instruction:", "**Instruction 9:**" at the start of an item's text
_ITEM_LABEL = re.compile(r"^(?:\*\*|__)?(?:new )?(?:task|instruction|prompt|question)(?:\s*\d{1,3})?\s*:\s*(?:\*\*|__)?\s*", re.IGNORECASE)
# a line that starts a field of an example ("Input:", "Output:", "Answer:"), not more of the task
_FIELD_LINE = re.compile(r"^\s*(?:[-*]\s*)?(?:\*\*)?(?:input|output|answer|example|response|solution|class label)s?\b\s*:", re.IGNORECASE)


_CLOSING = {"\"": "\"", "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019"}


def _clean_task(text: str) -> str:
    """The task of an item: labels and markdown removed; a quoted sentence followed by the
    model's commentary (``"Write a haiku." This task is fun``) is the quoted sentence."""
    text = _ITEM_LABEL.sub("", text.strip())
    text = text.replace("**", "").replace("__", "").strip()
    closing = _CLOSING.get(text[:1])
    if closing:
        end = text.find(closing, 1)
        while end > 0 and end + 1 < len(text) and text[end + 1].isalnum():  # an apostrophe: don't
            end = text.find(closing, end + 1)
        if end == 1 or (end > 1 and not text[1:end].strip()):
            return ""
        # A quoted sentence: the task. A quoted phrase ("Break a leg" is an idiom…) is part of it.
        if end > 1 and (end == len(text) - 1 or text[1:end].rstrip()[-1:] in (".", "?", "!")):
            text = text[1:end].strip()
    return " ".join(text.split())


def parse_numbered_tasks(text: str, first_number: int = 1) -> list[str]:
    """The tasks of a numbered list, in order.

    An item is a line starting with a number (``9.``, ``9)``, ``**9.**``, ``Task 9:``…) and
    the non-blank lines right after it, unless such a line starts an example field
    (``Input:``, ``Output:``…: the rest of the item is then ignored). A blank line ends an
    item; text before the first item and between items (chatter) is ignored. Models asked
    to continue a list at ``first_number`` sometimes restart at 1: if no item has a number
    of at least ``first_number``, every item is taken. Empty items are left out.
    """
    items: list[tuple[int, list[str]]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        match = _ITEM.match(line)
        if match:
            current = [match.group(2)]
            items.append((int(match.group(1)), current))
            continue
        if current is None:
            continue
        if not line.strip() or _FIELD_LINE.match(line):
            current = None
            continue
        current.append(line.strip())
    if any(number >= first_number for number, _ in items):
        items = [(number, lines) for number, lines in items if number >= first_number]
    tasks = [_clean_task(" ".join(lines)) for _, lines in items]
    return [t for t in tasks if t]


_NO_INPUT = {"<noinput>", "<no input>", "noinput", "no input", "none", "n/a", "na", "-", "null", "(none)", "<none>"}
# The "**" after the colon closes a bold label ("**Input:** x") only when white space follows;
# in "Input: **x**" it opens the value and stays for _field_value to strip with its pair.
# Small models also write "The Output is:" and "Input (or <noinput>):".
_MARKER = (
    r"^[ \t]*(?:[-*][ \t]*)?(?:\*\*|__)?(?:the[ \t]+)?{label}(?:[ \t]*\([^)\n]{{0,24}}\))?(?:[ \t]+is)?"
    r"(?:\*\*|__)?[ \t]*:[ \t]*(?:(?:\*\*|__)(?=\s|$))?[ \t]*"
)
_INPUT = re.compile(_MARKER.format(label=r"input"), re.IGNORECASE | re.MULTILINE)
_OUTPUT = re.compile(_MARKER.format(label=r"(?:output|answer|response)"), re.IGNORECASE | re.MULTILINE)
_LABEL = re.compile(_MARKER.format(label=r"(?:class[ \t]+)?label"), re.IGNORECASE | re.MULTILINE)
# the start of another example: the reply goes on with the next "Task:"
_NEXT_TASK = re.compile(_MARKER.format(label=r"task"), re.IGNORECASE | re.MULTILINE)


def _field_value(text: str, is_input: bool = False) -> str:
    value = text.strip()
    if value.startswith("**") and value.endswith("**") and len(value) > 4:
        value = value[2:-2].strip()
    return "" if is_input and value.lower() in _NO_INPUT else value


def _until(text: str, *ends: re.Pattern[str]) -> str:
    cut = min((m.start() for m in (e.search(text) for e in ends) if m), default=len(text))
    return text[:cut]


def parse_instance(text: str, is_classification: bool) -> tuple[str, str] | None:
    """``(input, output)`` from a model's instance, or None when it has no usable answer.

    Plain tasks: ``Input: …`` (optional; ``<noinput>`` and the like mean none) then
    ``Output: …`` (or ``Answer:``). Classification tasks, written label first:
    ``Class label: …`` then ``Input: …``; the label is the output. A field ends where the
    next field or a new ``Task:`` starts; anything before the first field is ignored.
    """
    if is_classification:
        label = _LABEL.search(text)
        if label is None:
            return None
        rest = text[label.end() :]
        given = _INPUT.search(rest)
        if given is None:
            return None
        output = _field_value(_until(rest[: given.start()], _NEXT_TASK))
        value = _field_value(_until(rest[given.end() :], _NEXT_TASK, _LABEL, _OUTPUT), is_input=True)
        if not output or not value:
            return None
        return value, output
    answer = _OUTPUT.search(text)
    if answer is None:
        return None
    given = _INPUT.search(text, 0, answer.start())
    value = _field_value(_until(text[given.end() : answer.start()], _NEXT_TASK), is_input=True) if given else ""
    output = _field_value(_until(text[answer.end() :], _NEXT_TASK, _INPUT, _OUTPUT))
    if not output:
        return None
    return value, output
