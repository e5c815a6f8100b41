"""The langid Spark stage with each model, as a ratio against ``model: fasttext`` in the same process.

Usage::

    python -m bench.langid_speed [--docs 50000] [--paragraphs 1] [--repeat 3]

The input is made from the labelled UDHR set (``tests/data/udhr_lid.jsonl.gz``): each
document joins ``--paragraphs`` strings of one language (1: short strings, about 110
characters; 10: about 1,100), ``--docs`` documents in 175 languages, in one Parquet file per
50,000 documents. One Spark session runs the stage with ``langid.model`` set to ``fasttext``
(the baseline: lid.176 alone, as before the ensemble), ``cld2`` and ``ensemble``: one warm-up
run of each, then ``--repeat`` rounds of one timed run each, round-robin (median wall time,
the stage's whole contract: read, identify, write, stats).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from bench.harness import machine_description, run_spark_stage
from bench.langid_eval import load_set
from flows.recipe import default_recipe
from pipelines.schema import DOCUMENT_SCHEMA, document_id
from pipelines.spark import get_spark

MODELS = ("fasttext", "cld2", "ensemble")
DOCS_PER_FILE = 50_000


def make_input(directory: Path, docs: int, paragraphs: int, seed: int = 0) -> int:
    """Write ``docs`` documents; returns the total characters of text."""
    by_lang: dict[str, list[str]] = {}
    for row in load_set():
        by_lang.setdefault(row["lang"], []).append(row["text"])
    languages = sorted(by_lang)
    rng = random.Random(seed)
    directory.mkdir(parents=True)
    chars = 0
    for start in range(0, docs, DOCS_PER_FILE):
        ids, texts = [], []
        for n in range(start, min(docs, start + DOCS_PER_FILE)):
            pool = by_lang[languages[n % len(languages)]]
            text = "\n\n".join(rng.choice(pool) for _ in range(paragraphs))
            ids.append(document_id("udhr-bench", str(n)))
            texts.append(text)
            chars += len(text)
        size = len(ids)
        columns = {
            "id": ids,
            "text": texts,
            "source": ["udhr-bench"] * size,
        }
        table = pa.table(
            {f.name: pa.array(columns.get(f.name, [None] * size), type=f.type) for f in DOCUMENT_SCHEMA},
            schema=DOCUMENT_SCHEMA,
        )
        pq.write_table(table, directory / f"part-{start // DOCS_PER_FILE:05d}.parquet")
    return chars


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--paragraphs", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="corpusforge-langid-speed-"))
    try:
        inputs = [workdir / "input"]
        chars = make_input(inputs[0], args.docs, args.paragraphs)
        recipe = default_recipe([])
        spark = get_spark(recipe.spark)
        walls: dict[str, list[float]] = {model: [] for model in MODELS}
        # Round-robin, after one warm-up run of each: the models share whatever the machine does.
        for run in range(args.repeat + 1):
            for model in MODELS:
                out = workdir / f"{model}-{run}"
                started = time.perf_counter()
                counts = run_spark_stage("langid", inputs, default_recipe([f"langid.model={model}"]), out)
                wall = time.perf_counter() - started
                shutil.rmtree(out, ignore_errors=True)
                assert counts.docs_in == args.docs, counts
                if run:
                    walls[model].append(wall)
        for model, series in walls.items():
            print(f"{model}: {', '.join(f'{w:.2f}' for w in series)} s", file=sys.stderr)
        results = {model: statistics.median(series) for model, series in walls.items()}
        print(f"\n- machine: {machine_description()}; Spark {spark.version}, {spark.sparkContext.master}")
        print(f"- command: `python -m bench.langid_speed --docs {args.docs} --paragraphs {args.paragraphs} "
              f"--repeat {args.repeat}`")
        print(f"- input: {args.docs:,} documents, {chars / args.docs:,.0f} characters each on average, 175 languages\n")
        print("| langid.model | wall s (median) | docs/s | vs fasttext |")
        print("|---|---:|---:|---:|")
        for model, wall in results.items():
            print(f"| {model} | {wall:.2f} | {args.docs / wall:,.0f} | {results['fasttext'] / wall:.2f}× |")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
