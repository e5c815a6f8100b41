"""Generation throughput through a synth stage vs the same backend called directly.

    python -m bench.synth [--stage dialogues|self-instruct] [--size N] [--max-new-tokens 128]
                          [--backend transformers|vllm] [--repeat 1] [--record]

One backend is loaded once (SmolLM2-135M-Instruct from the wheel by default). Then, in the
same process:

- **stage**: the stage runs through ``run_synth_stage`` (prompts, filters, Parquet output,
  stats) with a recording wrapper that keeps every batch it hands to the backend;
- **direct**: the recorded batches (same conversations, sampling and seeds, so the same
  tokens) are sent to ``backend.generate`` in a plain loop.

The ratio is completion tokens/s of the stage (over its whole wall time) over completion
tokens/s of the direct calls: what the stage costs on top of generation (goal >= 0.9x).
The stage's acceptance rates and drop reasons come from its ``_stats.json``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from synth.backends import Backend, Generation, GenerationConfig, SamplingParams, make_backend
from synth.dialogues import DialoguesConfig, DialoguesStage
from synth.runner import run_synth_stage
from bench.harness import RESULTS_FILE, append_section, git_commit, machine_description
from synth.self_instruct import SelfInstructConfig, SelfInstructStage



class Recorder(Backend):
    """Passes batches through to the real backend and keeps them for the direct replay."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self.batches: list[tuple[list[list[dict[str, str]]], SamplingParams, int]] = []

    @property
    def model(self) -> str:
        return self.inner.model

    def generate(self, conversations: Sequence[Sequence[dict[str, str]]], params: SamplingParams, seed: int) -> list[Generation]:
        self.batches.append(([list(c) for c in conversations], params, seed))
        return self.inner.generate(conversations, params, seed)


def stage_and_config(name: str, size: int, generation: dict[str, Any]) -> tuple[Any, Any]:
    if name == "dialogues":
        config = DialoguesConfig.model_validate(
            {"num_dialogues": size, "per_partition": max(8, size // 4), "sectors": {"world": 1, "creation": 1},
             "min_turns": 2, "max_turns": 2, "generation": generation}
        )
        return DialoguesStage(), config
    config = SelfInstructConfig.model_validate(
        {"max_rounds": 2, "target_instructions": 10_000, "prompts_per_round": size, "new_per_prompt": 6,
         "generation": generation}
    )
    return SelfInstructStage(), config


def run_once(name: str, size: int, backend: Backend, generation: dict[str, Any], work: Path) -> dict[str, Any]:
    recorder = Recorder(backend)
    stage, config = stage_and_config(name, size, generation)
    out = work / f"{name}-{time.time_ns()}"
    started = time.perf_counter()
    result = run_synth_stage(stage, [], out, config, backend_factory=lambda c: recorder)
    stage_wall = time.perf_counter() - started
    stats = result.stats

    direct_tokens = 0
    started = time.perf_counter()
    for conversations, params, seed in recorder.batches:
        direct_tokens += sum(g.completion_tokens for g in backend.generate(conversations, params, seed))
    direct_wall = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    stage_tokens = stats["generation"]["completion_tokens"]
    return {
        "stage_wall": stage_wall,
        "stage_tokens": stage_tokens,
        "direct_wall": direct_wall,
        "direct_tokens": direct_tokens,
        "requests": stats["generation"]["requests"],
        "stats": stats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=["dialogues", "self-instruct"], default="dialogues")
    parser.add_argument("--size", type=int, default=16, help="dialogues, or self-instruct prompts per round")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--backend", choices=["transformers", "vllm"], default="transformers")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--record", action="store_true", help=f"append the result to {RESULTS_FILE.name}")
    args = parser.parse_args()

    generation = {"backend": args.backend, "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "seed": 1}
    started = time.perf_counter()
    backend = make_backend(GenerationConfig.model_validate(generation))
    load_seconds = time.perf_counter() - started
    backend.close = lambda: None  # type: ignore[method-assign]  # reused by every run
    backend.generate([[{"role": "user", "content": "Say hello."}]], SamplingParams(max_new_tokens=8), 0)  # warm-up

    work = Path(tempfile.mkdtemp(prefix="corpusforge-bench-synth-"))
    runs = [run_once(args.stage, args.size, backend, generation, work) for _ in range(args.repeat)]
    shutil.rmtree(work, ignore_errors=True)
    stage_rate = statistics.median(r["stage_tokens"] / r["stage_wall"] for r in runs)
    direct_rate = statistics.median(r["direct_tokens"] / r["direct_wall"] for r in runs)
    same_tokens = all(r["stage_tokens"] == r["direct_tokens"] for r in runs)
    stats = runs[-1]["stats"]
    drops = ", ".join(f"{reason} {entry['docs']}" for reason, entry in stats["dropped"].items()) or "none"
    lines = [
        f"## synth: {args.stage} stage vs direct backend calls ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)",
        "",
        f"- machine: {machine_description()}; commit `{git_commit()}`; "
        f"backend {args.backend}, model {backend.model} (loaded in {load_seconds:.1f} s)",
        f"- command: `python -m bench.synth --stage {args.stage} --size {args.size} --max-new-tokens {args.max_new_tokens} "
        f"--batch-size {args.batch_size} --backend {args.backend} --repeat {args.repeat}`",
        f"- {runs[-1]['requests']} requests in {len(runs)} run(s); the direct replay produced "
        f"{'the same' if same_tokens else 'a different'} number of completion tokens",
        "",
        "| run | wall s | completion tokens | tokens/s | vs direct |",
        "|---|---:|---:|---:|---:|",
        f"| direct: backend.generate on the recorded batches | {runs[-1]['direct_wall']:.1f} | {runs[-1]['direct_tokens']:,} "
        f"| {direct_rate:,.1f} | 1.00× |",
        f"| {args.stage} stage (prompts, filters, output, stats) | {runs[-1]['stage_wall']:.1f} | {runs[-1]['stage_tokens']:,} "
        f"| {stage_rate:,.1f} | {stage_rate / direct_rate:.2f}× |",
        "",
        f"Acceptance: {stats.get('acceptance')}; kept {stats['docs_out']} of {stats['docs_in']} units; "
        f"drops: {drops}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.record:
        append_section(text)


if __name__ == "__main__":
    main()
