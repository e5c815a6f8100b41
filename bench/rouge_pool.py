"""ROUGE-L novelty check against a large task pool: :class:`filters.rouge.RougePool` vs the
``rouge-score`` package scoring the candidate against every pooled task (what Self-Instruct
and Alpaca do, there spread over processes).

    python -m bench.rouge_pool [--pool 1000 10000 50000] [--queries 30] [--record]

Pool and queries are built from the 175 Self-Instruct seed instructions: each text joins the
first half of one seed instruction to the second half of another (then a few words are
swapped), so texts share phrases the way generated tasks do; half the queries are made that
way, half of random seed-vocabulary words (novel tasks, which the search cannot stop early
on). Both sides answer the same
question, the highest ROUGE-L F-measure of the query to the pool; the benchmark checks the
answers are equal and reports queries/s of each and the ratio, plus how many exact LCS
computations the pool needed per query.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import datetime, timezone

import filters.rouge as rouge
from bench.harness import RESULTS_FILE, append_section, git_commit, machine_description
from synth.seeds import BUNDLED_SEEDS, read_seed_file



def make_texts(count: int, seed: int) -> list[str]:
    instructions = [t.instruction.split() for t in read_seed_file(BUNDLED_SEEDS).tasks]
    vocabulary = sorted({w for words in instructions for w in words})
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        a, b = rng.choice(instructions), rng.choice(instructions)
        words = a[: max(1, len(a) // 2)] + b[len(b) // 2 :]
        for _ in range(rng.randint(0, 3)):
            words[rng.randrange(len(words))] = rng.choice(vocabulary)
        texts.append(" ".join(words))
    return texts


def novel_texts(count: int, seed: int) -> list[str]:
    """Texts of 6-20 random seed-vocabulary words: unlike any pooled task (a low best score),
    the case where the search cannot stop early on a near-copy."""
    vocabulary = sorted({w for t in read_seed_file(BUNDLED_SEEDS).tasks for w in t.instruction.split()})
    rng = random.Random(seed)
    return [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(6, 20))) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--record", action="store_true", help=f"append the result to {RESULTS_FILE.name}")
    args = parser.parse_args()

    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    queries = make_texts(args.queries - args.queries // 2, seed=2) + novel_texts(args.queries // 2, seed=3)
    rows = []
    for size in args.pool:
        texts = make_texts(size, seed=1)
        started = time.perf_counter()
        pool = rouge.RougePool()
        for number, text in enumerate(texts):
            pool.add(text, str(number))
        build = time.perf_counter() - started

        exact_calls = 0
        original = rouge.rouge_l

        def counting(a: list[str], b: list[str]) -> float:
            nonlocal exact_calls
            exact_calls += 1
            return original(a, b)

        rouge.rouge_l = counting
        started = time.perf_counter()
        fast = [pool.max_similarity(q)[0] for q in queries]
        fast_s = time.perf_counter() - started
        rouge.rouge_l = original

        started = time.perf_counter()
        slow = [max(scorer.score(q, t)["rougeL"].fmeasure for t in texts) for q in queries]
        slow_s = time.perf_counter() - started
        equal = all(abs(a - b) < 1e-9 for a, b in zip(fast, slow))
        mean_best = sum(slow) / len(slow)
        rows.append((size, build, len(queries) / fast_s, len(queries) / slow_s, exact_calls / len(queries), mean_best, equal))
        print(f"pool {size:,}: {len(queries) / fast_s:,.1f} vs {len(queries) / slow_s:,.2f} queries/s, equal={equal}", flush=True)

    lines = [
        f"## ROUGE-L pool check: RougePool vs rouge-score over the whole pool ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)",
        "",
        f"- machine: {machine_description()}; commit `{git_commit()}`; one process, one core",
        f"- command: `python -m bench.rouge_pool --pool {' '.join(map(str, args.pool))} --queries {args.queries}`",
        "",
        "| pool | build s | RougePool queries/s | rouge-score queries/s | speed-up | exact LCS per query | mean best ROUGE-L | same max |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for size, build, fast_rate, slow_rate, calls, mean_best, equal in rows:
        lines.append(
            f"| {size:,} | {build:.2f} | {fast_rate:,.1f} | {slow_rate:,.2f} | {fast_rate / slow_rate:,.0f}× "
            f"| {calls:,.1f} | {mean_best:.2f} | {'yes' if equal else 'NO'} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.record:
        append_section(text)


if __name__ == "__main__":
    main()
