"""Stage ``self-instruct``: grow instruction data from a few seed tasks (Self-Instruct, Alpaca).

Each partition is one round:

1. ``prompts_per_round`` prompts, each listing ``human_examples`` sampled seed tasks and
   ``machine_examples`` tasks generated in earlier rounds, ask the model for
   ``new_per_prompt`` new tasks as a numbered list;
2. the list is parsed (:func:`filters.instructions.parse_numbered_tasks`) and every
   candidate must pass, in order: the instruction rules (length bounds, a blacklist of
   things a text model cannot do, no leading punctuation, no "write a program"), language
   and repetition (:mod:`synth.checks`), decontamination against the user's eval sets, and
   ROUGE-L below ``rouge_threshold`` against every task in the pool (seeds, earlier rounds
   and this round's accepted tasks; :class:`filters.rouge.RougePool`);
3. accepted tasks are classified (few-shot from the labelled seeds: "is this a
   classification task?") and get ``instances_per_task`` instances: input then output, or
   for classification tasks the label first and then an input for it, so labels are not
   all the same;
4. each instance must parse, not be truncated, empty, a refusal, repetitive, in another
   language or contaminated, and not repeat an earlier instance of its task.

The pool grows round by round, so rounds run in order; a finished round is kept and, on a
rerun, replayed into the pool without generating it again. The stage stops after
``max_rounds`` or once ``target_instructions`` tasks were accepted.

Output: one conversation per instance (user: the instruction and its input, assistant: the
output), ``metadata`` holding the provenance: model, backend, seed, the prompt that
produced the instruction, the parent tasks shown in it, round, task id, instruction,
input, whether it is a classification task and its highest ROUGE-L to the pool.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from filters.instructions import (
    InstructionFilter,
    InstructionFilterConfig,
    TurnFilter,
    parse_instance,
    parse_numbered_tasks,
)
from filters.rouge import RougePool, Tokenizer
from pipelines.errors import StageInputError
from synth.backends import GenerationConfig, Message
from synth.checks import SynthFilterConfig, TextChecks
from synth.runner import MeteredBackend, Partition, SynthStage, stable_seed
from synth.seeds import BUNDLED_SEEDS, Task, read_seed_file, task_id

SOURCE = "synth:self-instruct"


class SelfInstructConfig(BaseModel):
    """Recipe section ``self_instruct``."""

    model_config = ConfigDict(extra="forbid")

    seeds: str | None = Field(None, description="seed tasks file (JSONL, docs/synth.md); default: the bundled 175 tasks")
    max_rounds: int = Field(4, ge=1, description="rounds (partitions) at most")
    target_instructions: int = Field(32, ge=1, description="stop once this many new tasks were accepted")
    prompts_per_round: int = Field(8, ge=1)
    human_examples: int = Field(6, ge=0, description="seed tasks shown per prompt")
    machine_examples: int = Field(2, ge=0, description="generated tasks shown per prompt (once there are some)")
    new_per_prompt: int = Field(8, ge=1, description="new tasks asked for per prompt")
    rouge_threshold: float = Field(0.7, gt=0, le=1, description="keep a task only if ROUGE-L to every pooled task is below")
    rouge_tokenizer: Tokenizer = Field(
        "rouge_score", description="rouge_score (the paper's; ASCII words only) or unicode (words of any script)"
    )
    instruction: InstructionFilterConfig = Field(
        default_factory=InstructionFilterConfig, description="instruction rules (filters.instructions)"
    )
    classify: bool = Field(True, description="ask the model whether each task is a classification task")
    instances_per_task: int = Field(1, ge=1, le=8)
    instance_examples: int = Field(3, ge=0, description="seed tasks shown as examples when generating an instance")
    filters: SynthFilterConfig = Field(default_factory=SynthFilterConfig)
    generation: GenerationConfig = Field(default_factory=lambda: GenerationConfig(max_new_tokens=256))
    source: str = Field(SOURCE, description="value of the `source` column")


def _numbered(tasks: list[Task]) -> str:
    return "\n".join(f"{i}. {t.instruction}" for i, t in enumerate(tasks, 1))


def instruction_prompt(examples: list[Task], wanted: int) -> str:
    first = len(examples) + 1
    return (
        f"Here are {len(examples)} example tasks:\n{_numbered(examples)}\n\n"
        f"Write {wanted} new tasks like these, each different from the examples. "
        f"Number them {first} to {first + wanted - 1}, one per line."
    )


# Few-shot examples are earlier turns of the conversation, not a list inside one prompt: chat
# models, small ones most of all, then answer in the examples' format. Measured on SmolLM2-135M
# (16 seed tasks, 8 shots): "is it a classification task?" 0.19 accuracy with the examples in
# one prompt (it answered Yes to all) vs 0.88 as turns; instances in Input/Output form 2 of 8 vs 5 of 8.
CLASSIFY_QUESTION = "Is this task a classification task, whose answer is one of a few labels? Answer Yes or No."


def classification_messages(examples: list[Task], instruction: str) -> list[Message]:
    messages: list[Message] = []
    for task in examples:
        messages.append({"role": "user", "content": f"{CLASSIFY_QUESTION}\nTask: {task.instruction}"})
        messages.append({"role": "assistant", "content": "Yes" if task.is_classification else "No"})
    messages.append({"role": "user", "content": f"{CLASSIFY_QUESTION}\nTask: {instruction}"})
    return messages


def _show_input(value: str) -> str:
    return value if value else "<noinput>"


def _instance_request(instruction: str, classification: bool) -> str:
    if classification:
        return f"Task: {instruction}\nWrite a Class label, then an Input that has this label."
    return f"Task: {instruction}\nWrite an Input (or <noinput>), then the Output for this task."


def instance_messages(examples: list[Task], instruction: str, classification: bool) -> list[Message]:
    """Seed tasks with an instance as earlier turns, then the new task: label first for a
    classification task (Self-Instruct's output-first order, so labels vary)."""
    messages: list[Message] = []
    for task in examples:
        example = task.instances[0]
        answer = (
            f"Class label: {example.output}\nInput: {_show_input(example.input)}"
            if classification
            else f"Input: {_show_input(example.input)}\nOutput: {example.output}"
        )
        messages.append({"role": "user", "content": _instance_request(task.instruction, classification)})
        messages.append({"role": "assistant", "content": answer})
    messages.append({"role": "user", "content": _instance_request(instruction, classification)})
    return messages


def user_message(instruction: str, value: str) -> str:
    return f"{instruction}\n\n{value}" if value else instruction


class SelfInstructStage(SynthStage):
    name = "self-instruct"
    summary = "seed tasks -> new instructions + instances (Self-Instruct), filtered -> conversations"
    Config = SelfInstructConfig
    reads_raw_files = True
    code_modules = ("synth.checks", "synth.seeds", "filters.instructions", "filters.rouge", "filters.decontam")

    def prepare(self, inputs: list[Path], config: Any) -> None:
        assert isinstance(config, SelfInstructConfig)
        if len(inputs) > 1:
            raise StageInputError("self-instruct: give one seed file (--in or self_instruct.seeds)")
        path = inputs[0] if inputs else Path(config.seeds) if config.seeds else BUNDLED_SEEDS
        seeds = read_seed_file(path)
        self.seeds = seeds.tasks
        self.extra_stats["seeds"] = {"file": str(path), "tasks": len(seeds.tasks), "skipped_lines": seeds.skipped[:20]}
        self.extra_stats["seeds"]["skipped"] = len(seeds.skipped)
        self.with_instances = [t for t in self.seeds if t.instances]
        self.pool = RougePool(config.rouge_tokenizer)
        for task in self.seeds:
            self.pool.add(task.instruction, task.id)
        self.machine: list[Task] = []
        self.checks = TextChecks(config.filters)
        decontamination = self.checks.decontamination_stats()  # a bad eval set fails now, before the model loads
        if decontamination:
            self.extra_stats["decontamination"] = decontamination
        self.instruction_filter = InstructionFilter(config.instruction)
        self.turn_filter = TurnFilter()

    def fingerprint_inputs(self, inputs: list[Path], config: Any) -> list[Path]:
        return [] if inputs else [Path(config.seeds) if config.seeds else BUNDLED_SEEDS]

    def wants_partition(self, index: int, config: Any) -> bool:
        return index < config.max_rounds and len(self.machine) < config.target_instructions

    def restore(self, index: int, state: dict[str, Any]) -> None:
        for item in state.get("tasks", []):
            task = Task(id=item["id"], instruction=item["instruction"], is_classification=item["is_classification"], origin="machine")
            self.machine.append(task)
            self.pool.add(task.instruction, task.id)

    def run_partition(self, index: int, backend: MeteredBackend, config: Any) -> Partition:
        assert isinstance(config, SelfInstructConfig)
        seed = stable_seed(config.generation.seed, self.name, index)
        rng = random.Random(seed)
        part = Partition()
        provenance = {"model": backend.model, "backend": config.generation.backend, "round": str(index)}

        prompts, parents = [], []
        for _ in range(config.prompts_per_round):
            machine = rng.sample(self.machine, min(config.machine_examples, len(self.machine)))
            human_count = min(config.human_examples + config.machine_examples - len(machine), len(self.seeds))
            examples = rng.sample(self.seeds, human_count) + machine
            rng.shuffle(examples)
            prompts.append(instruction_prompt(examples, config.new_per_prompt))
            parents.append([t.id for t in examples])
        replies = backend.generate([[{"role": "user", "content": p}] for p in prompts], seed)
        part.count("prompts", len(prompts))

        wanted = config.new_per_prompt
        round_pool = RougePool(config.rouge_tokenizer)
        accepted: list[tuple[Task, str, list[str], float]] = []  # task, prompt, parents, rouge
        for number, (prompt, reply, parent_ids) in enumerate(zip(prompts, replies, parents)):
            prompt_id = f"round{index}-prompt{number}"
            if not reply.ok:
                part.reject(prompt_id, config.source, "generation:error", f"{prompt_id}: {reply.error}", "")
                continue
            candidates = parse_numbered_tasks(reply.text, len(parent_ids) + 1)[:wanted]
            if not candidates:
                part.reject(prompt_id, config.source, "parse:no_instructions", f"{prompt_id}: no numbered task found", reply.text)
                continue
            part.count("candidates", len(candidates))
            for instruction in candidates:
                cid = task_id(instruction, "task")
                drop, score = self._check_instruction(instruction, round_pool, config)
                if drop is not None:
                    part.reject(cid, config.source, drop[0], f"{prompt_id}: {drop[1]}", instruction)
                    continue
                accepted.append((Task(cid, instruction, origin="machine"), prompt, parent_ids, score))
                round_pool.add(instruction, cid)
        part.count("accepted_instructions", len(accepted))

        if config.classify and accepted:
            yes = [t for t in self.with_instances if t.is_classification]
            no = [t for t in self.with_instances if not t.is_classification]
            shots = rng.sample(yes, min(4, len(yes))) + rng.sample(no, min(4, len(no)))
            rng.shuffle(shots)
            questions = [classification_messages(shots, t.instruction) for t, *_ in accepted]
            answers = backend.generate(questions, seed + 1, max_new_tokens=4, temperature=0.0)
            accepted = [
                (Task(t.id, t.instruction, is_classification=a.ok and a.text.strip().lower().startswith("yes"), origin="machine"), p, ids, s)
                for (t, p, ids, s), a in zip(accepted, answers)
            ]
            part.count("classification_tasks", sum(1 for t, *_ in accepted if t.is_classification))

        jobs = []
        for task, prompt, parent_ids, score in accepted:
            pool = [t for t in self.with_instances if t.is_classification == task.is_classification] or self.with_instances
            for copy in range(config.instances_per_task):
                examples = rng.sample(pool, min(config.instance_examples, len(pool)))
                jobs.append((task, prompt, parent_ids, score, copy, instance_messages(examples, task.instruction, task.is_classification)))
        instance_seed = seed + 2
        outputs = backend.generate([job[-1] for job in jobs], instance_seed)
        part.count("instances_generated", len(jobs))
        seen: set[tuple[str, str, str]] = set()
        for offset, ((task, prompt, parent_ids, score, copy, _), reply) in enumerate(zip(jobs, outputs)):
            iid = f"{task.id}-{copy}"
            if not reply.ok:
                part.reject(iid, config.source, "generation:error", f"{iid}: {reply.error}", "")
                continue
            verdict = self.turn_filter.check(reply.text, reply.finish_reason)
            if not verdict.keep:
                part.reject(iid, config.source, str(verdict.reason), f"{iid}: instance reply", reply.text)
                continue
            parsed = parse_instance(reply.text, task.is_classification)
            if parsed is None or not parsed[1].strip():
                part.reject(iid, config.source, "parse:bad_instance", f"{iid}: no Input/Output found", reply.text)
                continue
            value, output = parsed
            drop = self.checks.text(output) or self.checks.contamination(f"{task.instruction}\n{value}\n{output}")
            if drop is not None:
                part.reject(iid, config.source, drop[0], f"{iid}: {drop[1]}", output)
                continue
            key = (task.id, value.strip().lower(), output.strip().lower())
            if key in seen:
                part.reject(iid, config.source, "instance:duplicate", f"{iid}: same input and output as another instance", output)
                continue
            seen.add(key)
            part.records.append(
                {
                    "id": iid,
                    "messages": [
                        {"role": "user", "content": user_message(task.instruction, value)},
                        {"role": "assistant", "content": output},
                    ],
                    "source": config.source,
                    "metadata": {
                        **provenance,
                        "seed": str(instance_seed),
                        "prompt": prompt,
                        "parent_tasks": json.dumps(parent_ids),
                        "task_id": task.id,
                        "instruction": task.instruction,
                        "input": value,
                        "is_classification": str(task.is_classification).lower(),
                        "rouge_l_max": f"{score:.4f}",
                    },
                }
            )
        part.count("instances_kept", len(part.records))
        part.state = {
            "tasks": [{"id": t.id, "instruction": t.instruction, "is_classification": t.is_classification} for t, *_ in accepted]
        }
        return part

    def _check_instruction(
        self, instruction: str, round_pool: RougePool, config: SelfInstructConfig
    ) -> tuple[tuple[str, str] | None, float]:
        """(drop reason and detail, or None; the highest ROUGE-L to the pool and this round)."""
        verdict = self.instruction_filter(instruction)
        if not verdict.keep:
            found = self.instruction_filter.blacklisted(instruction)
            detail = f"{instruction[:120]} (blacklisted: {', '.join(found)})" if found else instruction[:120]
            return (str(verdict.reason), detail), 0.0
        drop = self.checks.text(instruction, refusal=False) or self.checks.contamination(instruction)
        if drop is not None:
            return drop, 0.0
        best = 0.0
        for pool in (self.pool, round_pool):
            # Below the threshold the search runs to the end, so `score` is the exact maximum.
            score, similar = pool.max_similarity(instruction, stop_at=config.rouge_threshold)
            if score >= config.rouge_threshold:
                return ("rouge:similar", f"ROUGE-L {score:.2f} to {similar}"), score
            best = max(best, score)
        return None, best

    def summarize(self, counters: dict[str, int], stats: dict[str, Any], config: Any) -> dict[str, Any]:
        candidates = counters.get("candidates", 0)
        generated = counters.get("instances_generated", 0)
        return {
            "acceptance": {
                "instructions": round(counters.get("accepted_instructions", 0) / candidates, 4) if candidates else None,
                "instances": round(counters.get("instances_kept", 0) / generated, 4) if generated else None,
            },
            "pool": {"seed_tasks": len(self.seeds), "machine_tasks": len(self.machine)},
        }
