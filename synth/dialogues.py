"""Stage ``dialogues``: multi-turn conversations between a simulated user and an assistant
(UltraChat's recipe).

Every dialogue opens in one of three sectors, chosen by ``sectors`` weights:

- ``world``: the model writes a question about a subject (``topics.subjects``);
- ``creation``: the model writes a request to write something (``topics.forms``) about a subject;
- ``materials``: a task (summarize, explain, rewrite, ask questions…) on an excerpt of a
  document from the input corpus (``--in`` or ``dialogues.materials``: document datasets,
  i.e. the output of any corpus stage); without documents this sector is off.

Then the assistant replies, the user simulator (the same backend, prompted with the
conversation so far) writes the next user message, and so on until the dialogue has its
number of assistant turns (``min_turns``…``max_turns``). Every generated text must pass
:mod:`synth.checks` (language, repetition, refusals) and the turn rules (not empty, not
cut at ``max_new_tokens``, not a repeat of the previous message). On a bad turn the
dialogue ends at its last good exchange (``on_bad_turn: truncate``) or is dropped
(``drop``); a dialogue with no good exchange is dropped. Finished dialogues are checked
against the eval sets as a whole.

Each dialogue's sector, subject, material and seed derive from ``generation.seed`` and its
number alone, so partitions (``per_partition`` dialogues, generated turn by turn in
batches) resume exactly. Accounting: a unit is a kept dialogue or a dropped text (an
opening or a turn); a truncated dialogue counts once kept and once dropped.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

import pyarrow.dataset as ds
from pydantic import BaseModel, ConfigDict, Field, model_validator

from filters.instructions import TurnFilter
from pipelines.errors import StageInputError
from pipelines.schema import validate_dataset
from synth.backends import Generation, GenerationConfig
from synth.checks import SynthFilterConfig, TextChecks
from synth.runner import MeteredBackend, Partition, SynthStage, stable_seed

SOURCE = "synth:dialogues"
Sector = Literal["world", "creation", "materials"]

DEFAULT_SUBJECTS = [
    "the solar system", "climate and weather", "the human body", "healthy eating", "sleep", "ancient Rome",
    "the printing press", "electricity", "how computers work", "the internet", "bees and pollination",
    "volcanoes", "the ocean", "money and saving", "learning a new language", "music theory", "chess",
    "gardening", "cooking pasta", "bicycles", "photography", "public speaking", "time management",
    "friendship", "job interviews", "recycling", "trains", "mathematics puzzles", "the moon", "birds",
]
DEFAULT_FORMS = [
    "a short poem", "a short story", "an email to a colleague", "a product description", "a blog post introduction",
    "a haiku", "a thank-you note", "a short speech", "a limerick", "a diary entry", "a recipe", "a list of tips",
]
MATERIAL_TASKS = [
    "Summarize the following text in a few sentences.",
    "What are the main points of the following text?",
    "Explain the following text to a ten-year-old.",
    "Write three questions that the following text answers.",
    "Rewrite the following text in plain, simple language.",
    "What is the following text about, and who would find it useful?",
]


class TopicsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subjects: list[str] = Field(default_factory=lambda: list(DEFAULT_SUBJECTS), min_length=1)
    forms: list[str] = Field(default_factory=lambda: list(DEFAULT_FORMS), min_length=1)
    material_tasks: list[str] = Field(default_factory=lambda: list(MATERIAL_TASKS), min_length=1)


class DialoguesConfig(BaseModel):
    """Recipe section ``dialogues``."""

    model_config = ConfigDict(extra="forbid")

    materials: list[str] = Field(default_factory=list, description="document datasets for the materials sector (or --in)")
    num_dialogues: int = Field(16, ge=1)
    per_partition: int = Field(8, ge=1, description="dialogues per partition (the unit of resume)")
    sectors: dict[Sector, float] = Field(
        default_factory=lambda: {"world": 1.0, "creation": 1.0, "materials": 1.0},
        description="relative weight of each sector",
    )
    min_turns: int = Field(2, ge=1, description="assistant replies per dialogue, at least")
    max_turns: int = Field(3, ge=1, description="assistant replies per dialogue, at most")
    on_bad_turn: Literal["truncate", "drop"] = "truncate"
    material_chars: int = Field(1500, ge=100, description="excerpt length (cut at a paragraph or word boundary)")
    material_min_chars: int = Field(300, ge=1, description="shorter documents are not used as materials")
    max_materials: int = Field(10_000, ge=1, description="documents sampled from the input (reservoir)")
    topics: TopicsConfig = Field(default_factory=TopicsConfig)
    filters: SynthFilterConfig = Field(default_factory=SynthFilterConfig)
    generation: GenerationConfig = Field(default_factory=lambda: GenerationConfig(max_new_tokens=256))
    source: str = Field(SOURCE, description="value of the `source` column")

    @model_validator(mode="after")
    def _check(self) -> "DialoguesConfig":
        if self.min_turns > self.max_turns:
            raise ValueError("min_turns must not exceed max_turns")
        if not any(w > 0 for w in self.sectors.values()) or any(w < 0 for w in self.sectors.values()):
            raise ValueError("sectors: weights must be >= 0 with at least one > 0")
        return self


def excerpt(text: str, limit: int) -> str:
    """The start of ``text``, at most ``limit`` characters, cut at a paragraph or word boundary."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text.rfind("\n\n", 0, limit + 1)
    if cut < limit // 2:
        cut = text.rfind(" ", 0, limit + 1)
    return text[: cut if cut > 0 else limit].rstrip()


def world_prompt(subject: str) -> str:
    return f"Write one question that a curious person might ask an AI assistant about {subject}. Write only the question."


def creation_prompt(form: str, subject: str) -> str:
    return (
        f"Write one request that a person might give to an AI assistant, asking it to write {form} about {subject}. "
        "Write only the request."
    )


# Worked examples shown as earlier turns before an opening prompt: small chat models then write
# a question or a request instead of answering the instruction (SmolLM2-135M: 8 of 8 openings
# were a question or request with them, 3 of 8 without).
WORLD_EXAMPLES = [
    ("the ocean", "Why is the ocean salty, and has it always been?"),
    ("sleep", "How many hours of sleep does a teenager need, and why?"),
    ("electricity", "What is the difference between AC and DC electricity?"),
]
CREATION_EXAMPLES = [
    ("a thank-you note", "recycling", "Please write a short thank-you note to my neighbour for helping me sort our recycling."),
    ("a product description", "bicycles", "Write a product description for a light city bicycle with three gears."),
]


def opening_messages(subject: str, form: str | None) -> list[dict[str, str]]:
    """The conversation that asks for a dialogue's first user message (examples on other subjects first)."""
    messages: list[dict[str, str]] = []
    if form is None:
        for example_subject, question in WORLD_EXAMPLES:
            if example_subject != subject:
                messages += [{"role": "user", "content": world_prompt(example_subject)}, {"role": "assistant", "content": question}]
        return messages + [{"role": "user", "content": world_prompt(subject)}]
    for example_form, example_subject, request in CREATION_EXAMPLES:
        if example_subject != subject:
            messages += [
                {"role": "user", "content": creation_prompt(example_form, example_subject)},
                {"role": "assistant", "content": request},
            ]
    return messages + [{"role": "user", "content": creation_prompt(form, subject)}]


def user_simulator_prompt(messages: list[dict[str, str]]) -> str:
    transcript = "\n\n".join(f"{'User' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in messages)
    return (
        f"Here is a conversation between a user and an AI assistant:\n\n{transcript}\n\n"
        "Write the user's next message: a natural follow-up question or request that continues this conversation. "
        "Write only the message."
    )


def strip_speaker(text: str) -> str:
    """Models playing the user often prefix their message with 'User:'."""
    stripped = text.strip()
    for prefix in ("User:", "user:", "**User:**", "USER:"):
        if stripped.startswith(prefix):
            return stripped[len(prefix) :].strip()
    return stripped


class _Dialogue:
    def __init__(self, number: int, seed: int, target: int, meta: dict[str, str]) -> None:
        self.number = number
        self.seed = seed
        self.id = f"dlg-{seed:016x}"[:20]
        self.target = target
        self.meta = meta
        self.messages: list[dict[str, str]] = []
        self.truncated = False
        self.done = False


class DialoguesStage(SynthStage):
    name = "dialogues"
    summary = "topics (world, creation, corpus materials) -> multi-turn user/assistant dialogues, filtered"
    Config = DialoguesConfig
    code_modules = ("synth.checks", "filters.instructions", "filters.decontam")

    def prepare(self, inputs: list[Path], config: Any) -> None:
        assert isinstance(config, DialoguesConfig)
        paths = inputs or [Path(p).resolve() for p in config.materials]
        self.materials = self._load_materials(paths, config) if paths else []
        self.extra_stats["materials"] = {"inputs": [str(p) for p in paths], "documents_sampled": len(self.materials)}
        weights = dict(config.sectors)
        if not self.materials and weights.get("materials", 0) > 0:
            weights["materials"] = 0.0
            self.extra_stats["materials"]["note"] = "no input documents: the materials sector is off"
        if not any(w > 0 for w in weights.values()):
            raise StageInputError("dialogues: only the materials sector is enabled, but no documents were given (--in)")
        self.sectors = [s for s, w in weights.items() if w > 0]
        self.weights = [weights[s] for s in self.sectors]
        self.checks = TextChecks(config.filters)
        decontamination = self.checks.decontamination_stats()  # a bad eval set fails now, before the model loads
        if decontamination:
            self.extra_stats["decontamination"] = decontamination
        self.turn_filter = TurnFilter()
        self.material_paths = paths

    def fingerprint_inputs(self, inputs: list[Path], config: Any) -> list[Path]:
        return [Path(p) for p in config.materials]

    def _load_materials(self, paths: list[Path], config: DialoguesConfig) -> list[dict[str, Any]]:
        """A reproducible reservoir sample of documents long enough to work on."""
        rng = random.Random(stable_seed(config.generation.seed, self.name, "materials"))
        sample: list[dict[str, Any]] = []
        seen = 0
        for path in paths:
            validate_dataset(path)
            dataset = ds.dataset(str(path), format="parquet", exclude_invalid_files=True, ignore_prefixes=["_", "."])
            for batch in dataset.to_batches(columns=["id", "url", "text"], batch_size=1024):
                for row in batch.to_pylist():
                    if len(row["text"] or "") < config.material_min_chars:
                        continue
                    item = {"id": row["id"], "url": row["url"] or "", "text": excerpt(row["text"], config.material_chars)}
                    if len(sample) < config.max_materials:
                        sample.append(item)
                    else:
                        slot = rng.randint(0, seen)
                        if slot < config.max_materials:
                            sample[slot] = item
                    seen += 1
        return sample

    def wants_partition(self, index: int, config: Any) -> bool:
        return index * config.per_partition < config.num_dialogues

    def planned_units(self, config: Any) -> int | None:
        return config.num_dialogues

    def _start(self, number: int, config: DialoguesConfig) -> tuple[_Dialogue, list[dict[str, str]] | None]:
        """A dialogue and the conversation that writes its opening (None: the opening is a material task)."""
        seed = stable_seed(config.generation.seed, self.name, number)
        rng = random.Random(seed)
        sector = rng.choices(self.sectors, weights=self.weights)[0]
        dialogue = _Dialogue(number, seed, rng.randint(config.min_turns, config.max_turns), {"sector": sector})
        topics = config.topics
        if sector == "materials":
            document = rng.choice(self.materials)
            task = rng.choice(topics.material_tasks)
            dialogue.meta.update(material_id=document["id"], material_url=document["url"], task=task)
            dialogue.messages.append({"role": "user", "content": f"{task}\n\n{document['text']}"})
            return dialogue, None
        subject = rng.choice(topics.subjects)
        dialogue.meta["subject"] = subject
        if sector == "world":
            return dialogue, opening_messages(subject, None)
        form = rng.choice(topics.forms)
        dialogue.meta["form"] = form
        return dialogue, opening_messages(subject, form)

    def _check_turn(self, reply: Generation, text: str, previous: str | None) -> tuple[str, str] | None:
        """Why the generated ``text`` of ``reply`` (after the message ``previous``) is a bad turn, or None."""
        if not reply.ok:
            return "generation:error", str(reply.error)
        finish_reason = reply.finish_reason
        verdict = self.turn_filter.check(text, finish_reason)
        if not verdict.keep:
            return str(verdict.reason), f"finish={finish_reason}"
        if previous is not None and text.strip().lower() == previous.strip().lower():
            return "turn:repeated", "same as the previous message"
        return self.checks.text(text)

    def _bad_turn(self, part: Partition, dialogue: _Dialogue, role: str, drop: tuple[str, str], text: str, config: DialoguesConfig) -> None:
        turn = sum(1 for m in dialogue.messages if m["role"] == "assistant") + (1 if role == "assistant" else 0)
        part.reject(f"{dialogue.id}-t{turn}-{role}", config.source, drop[0], f"{dialogue.id} turn {turn} ({role}): {drop[1]}", text)
        part.count(f"bad_{role}_turns")
        dialogue.done = True
        dialogue.truncated = True
        if role == "assistant":
            # The bad reply, and the user message it answered: a dialogue ends with a good reply.
            del dialogue.messages[-2:]
        if config.on_bad_turn == "drop":
            dialogue.messages.clear()

    def run_partition(self, index: int, backend: MeteredBackend, config: Any) -> Partition:
        assert isinstance(config, DialoguesConfig)
        part = Partition()
        first = index * config.per_partition
        numbers = range(first, min(first + config.per_partition, config.num_dialogues))
        dialogues, openers = [], []
        for number in numbers:
            dialogue, prompt = self._start(number, config)
            dialogues.append(dialogue)
            if prompt is not None:
                dialogue.meta["opening_prompt"] = prompt[-1]["content"]
                openers.append((dialogue, prompt))
        part.count("dialogues", len(dialogues))
        seed = stable_seed(config.generation.seed, self.name, "partition", index)
        replies = backend.generate([p for _, p in openers], seed)
        for (dialogue, _), reply in zip(openers, replies):
            text = strip_speaker(reply.text) if reply.ok else ""
            drop = self._check_turn(reply, text, None)
            if drop is not None:
                part.reject(f"{dialogue.id}-opening", config.source, drop[0], f"{dialogue.id} opening: {drop[1]}", text)
                part.count("bad_openings")
                dialogue.done = True
            else:
                dialogue.messages.append({"role": "user", "content": text})

        for turn in range(1, config.max_turns + 1):
            active = [d for d in dialogues if not d.done]
            if not active:
                break
            replies = backend.generate([d.messages for d in active], seed + 1000 * turn)
            for dialogue, reply in zip(active, replies):
                text = reply.text.strip() if reply.ok else ""
                dialogue.messages.append({"role": "assistant", "content": text})
                drop = self._check_turn(reply, text, dialogue.messages[-2]["content"])
                if drop is not None:
                    self._bad_turn(part, dialogue, "assistant", drop, text, config)
                elif turn >= dialogue.target:
                    dialogue.done = True
            asking = [d for d in dialogues if not d.done]
            if not asking:
                break
            prompts = [[{"role": "user", "content": user_simulator_prompt(d.messages)}] for d in asking]
            replies = backend.generate(prompts, seed + 1000 * turn + 500)
            for dialogue, reply in zip(asking, replies):
                text = strip_speaker(reply.text) if reply.ok else ""
                drop = self._check_turn(reply, text, dialogue.messages[-1]["content"])
                if drop is not None:
                    self._bad_turn(part, dialogue, "user", drop, text, config)
                else:
                    dialogue.messages.append({"role": "user", "content": text})

        for dialogue in dialogues:
            turns = sum(1 for m in dialogue.messages if m["role"] == "assistant")
            if turns == 0:
                continue  # its bad opening or first turn is already a reject
            whole = "\n".join(m["content"] for m in dialogue.messages)
            drop = self.checks.contamination(whole)
            if drop is not None:
                part.reject(dialogue.id, config.source, drop[0], f"{dialogue.id}: {drop[1]}", whole)
                continue
            part.records.append(
                {
                    "id": dialogue.id,
                    "messages": dialogue.messages,
                    "source": config.source,
                    "metadata": {
                        **dialogue.meta,
                        "model": backend.model,
                        "backend": config.generation.backend,
                        "seed": str(dialogue.seed),
                        "turns": str(turns),
                        "target_turns": str(dialogue.target),
                        "truncated": str(dialogue.truncated).lower(),
                    },
                }
            )
            part.count(f"kept_{dialogue.meta['sector']}")
            part.count("assistant_turns_kept", turns)
        return part

    def summarize(self, counters: dict[str, int], stats: dict[str, Any], config: Any) -> dict[str, Any]:
        started = counters.get("dialogues", 0)
        return {
            "acceptance": {"dialogues": round(stats["docs_out"] / started, 4) if started else None},
        }
