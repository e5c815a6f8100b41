"""The run report: a funnel of documents and bytes through every stage, as JSON and Markdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f}"


def write_report(out_dir: Path, recipe_name: str, stages: list[dict[str, Any]]) -> Path:
    report_dir = out_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    summary = {"recipe": recipe_name, "output": str(out_dir), "stages": stages}
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    lines = [
        f"# corpusforge build `{recipe_name}`",
        "",
        f"Output: `{out_dir}`",
        "",
        "| stage | status | docs in | docs out | MB in | MB out | wall s | output |",
        "|---|---|--:|--:|--:|--:|--:|---|",
    ]
    for s in stages:
        lines.append(
            f"| {s['stage']} | {'skipped (current)' if s['skipped'] else 'ran'} | {s['docs_in']:,} | {s['docs_out']:,} "
            f"| {_mb(s['bytes_in'])} | {_mb(s['bytes_out'])} | {s['wall_seconds']:.1f} | `{s['output']}` |"
        )
    for s in stages:
        if s["dropped"]:
            lines += ["", f"## Dropped by `{s['stage']}`", "", "| reason | docs | bytes |", "|---|--:|--:|"]
            lines += [f"| {r} | {v['docs']:,} | {v['bytes']:,} |" for r, v in s["dropped"].items()]
    path = report_dir / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def stage_summary(result: Any) -> dict[str, Any]:
    st = result.stats
    return {
        "stage": result.stage,
        "skipped": result.skipped,
        "output": str(result.output),
        "docs_in": st["docs_in"],
        "docs_out": st["docs_out"],
        "bytes_in": st["bytes_in"],
        "bytes_out": st["bytes_out"],
        "dropped": st["dropped"],
        "wall_seconds": st["wall_seconds"],
    }
