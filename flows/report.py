"""The run report of a build: ``OUT/report/`` with ``index.html``, ``summary.md``, ``summary.json``
and ``plots/*.png``, and the same tables as Prefect artifacts.

Everything comes from the stages' ``_stats.json`` files, never from the corpus, so a report
costs the same on a thousand documents and on a billion:

- the funnel (documents, bytes, tokens per stage), drops per filter and per rule, wall time;
- languages (``langid``: ``languages``), document lengths (every stage's ``length_histogram``),
  near-duplicate clusters (``dedup-minhash``: ``cluster_sizes``; ``dedup-exact``:
  ``duplicates_removed``), generation (``generation``, ``acceptance`` of the synth stages);
- tokens are counted by ``tokenize`` only; other stages show ``bytes_out`` × the tokens per
  byte ``tokenize`` measured, marked "est.".

A section without data (no langid stage, 0 documents, …) says so instead of failing. The
tables are built once (:func:`report_sections`) and rendered as HTML, Markdown and artifacts.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from pipelines.stage import STATS_FILE
from pipelines.storage import write_text

PLOTS_DIR = "plots"
# Input checks of ingest and the shared guards have no "<filter>:" prefix in their reasons.
INPUT_CHECKS = "(input checks)"
MAX_EXAMPLE_CHARS = 200
MAX_LANGUAGES_PLOTTED = 20
MAX_DROP_BARS = 25


# ---------------------------------------------------------------- formatting


def _mb(n: int | float) -> str:
    return f"{n / 1e6:,.1f}"


def _int(n: int | float | None) -> str:
    return "—" if n is None else f"{int(n):,}"


def _pct(part: int | float, whole: int | float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "—"


def _seconds(s: float | None) -> str:
    if s is None:
        return "—"
    return f"{s:,.1f}" if s >= 1 or s == 0 else f"{s:.3f}"


def _size(n: int) -> str:
    """64 → '64 B', 2048 → '2 KiB', 16777216 → '16 MiB'."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n // scale} {unit}"
    return f"{n} B"


def _bucket_label(low: int, high: int | None) -> str:
    return f"≥ {_size(low)}" if high is None else f"{_size(low)} – {_size(high)}"


def _status(stage: dict[str, Any]) -> str:
    return "skipped (current)" if stage["skipped"] else "ran"


def slug(name: str) -> str:
    """``My_Recipe.v2`` → ``my-recipe-v2``: lowercase letters, digits and dashes (Prefect's artifact keys)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "build"


def artifact_keys(recipe_name: str) -> tuple[str, str]:
    """Keys of the report's markdown artifact and of its funnel table artifact."""
    base = f"corpusforge-{slug(recipe_name)}"
    return f"{base}-report", f"{base}-funnel"


def _table(table_id: str, title: str, columns: list[str], rows: list[list[Any]], align: str, note: str = "") -> dict[str, Any]:
    """A table of the report: ``align`` has one letter per column, ``l`` or ``r``."""
    assert len(align) == len(columns)
    return {"id": table_id, "title": title, "columns": columns, "rows": [[str(c) for c in r] for r in rows],
            "align": align, "note": note}


def _section(section_id: str, title: str) -> dict[str, Any]:
    return {"id": section_id, "title": title, "intro": "", "tables": [], "plots": [], "empty": ""}


# ---------------------------------------------------------------- reading the stats


def _read_stats(stage: dict[str, Any]) -> dict[str, Any]:
    """The stage's whole ``_stats.json``; what ``stage_summary`` kept when it cannot be read."""
    try:
        stats = json.loads((Path(stage["output"]) / STATS_FILE).read_text())
    except (OSError, ValueError):
        stats = {}
    return {**stats, **{k: v for k, v in stage.items() if k in ("docs_in", "docs_out", "bytes_in", "bytes_out",
                                                               "dropped", "wall_seconds")}}


def _is_synth(name: str, stats: dict[str, Any]) -> bool:
    from flows.registry import STAGES, is_synth

    return is_synth(name) if name in STAGES else "generation" in stats


def _split_reason(reason: str) -> tuple[str, str]:
    if ":" in reason:
        filt, rule = reason.split(":", 1)
        return filt, rule
    return INPUT_CHECKS, reason


def tokens_per_byte(details: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[float | None, dict[str, Any] | None]:
    """Tokens per byte of text measured by the tokenize stage, and its ``tokenize`` stats (None,
    None without one). The text bytes are the stage's ``bytes_out`` (``tokenize.bytes`` is the
    size of the shard files)."""
    for stage, stats in details:
        tok = stats.get("tokenize")
        if isinstance(tok, dict) and stats.get("bytes_out"):
            return tok["tokens"] / stats["bytes_out"], tok
    return None, None


# ---------------------------------------------------------------- the sections


def _funnel(details: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    ratio, tok = tokens_per_byte(details)
    section = _section("funnel", "Documents and tokens through the stages")
    columns = ["stage", "status", "docs in", "docs out", "kept", "MB in", "MB out"]
    align = "llrrrrr"
    if ratio is not None:
        columns.append("tokens out")
        align += "r"
    columns += ["wall s", "output"]
    align += "rl"
    rows = []
    raw = []
    for stage, stats in details:
        tokens: int | None = None
        estimated = False
        if isinstance(stats.get("tokenize"), dict):
            tokens = int(stats["tokenize"]["tokens"])
        elif ratio is not None:
            tokens = round(stage["bytes_out"] * ratio)
            estimated = True
        row = [stage["stage"], _status(stage), _int(stage["docs_in"]), _int(stage["docs_out"]),
               _pct(stage["docs_out"], stage["docs_in"]), _mb(stage["bytes_in"]), _mb(stage["bytes_out"])]
        if ratio is not None:
            row.append(f"~{tokens:,} est." if estimated else _int(tokens))
        row += [_seconds(stage["wall_seconds"]), stage["output"]]
        rows.append(row)
        raw.append({"stage": stage["stage"], "status": _status(stage), "docs_in": stage["docs_in"],
                    "docs_out": stage["docs_out"], "bytes_in": stage["bytes_in"], "bytes_out": stage["bytes_out"],
                    "tokens_out": tokens, "tokens_estimated": estimated, "wall_seconds": stage["wall_seconds"]})
    if ratio is not None and tok is not None:
        note = (f"tokens: counted by tokenize ({tok['tokens']:,} tokens, {ratio:.3f} per byte of text, "
                f"tokenizer {tok.get('tokenizer', '?')}); "
                "est. = the stage's bytes out × that ratio.")
    else:
        note = "No tokenize stage in this build: token counts are not known."
    section["tables"].append(_table("funnel", "Funnel", columns, rows, align, note))
    return section, raw


def _drops(details: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[dict[str, Any], list[tuple[str, int]]]:
    """The section and the bars of its plot (stage: filter, documents)."""
    section = _section("drops", "Drops per filter")
    bars: list[tuple[str, int]] = []
    per_filter: list[list[Any]] = []
    per_rule: list[list[Any]] = []
    for stage, stats in details:
        dropped = stage.get("dropped") or {}
        examples = stats.get("examples") or {}
        grouped: dict[str, dict[str, int]] = {}
        for reason, v in dropped.items():
            filt, rule = _split_reason(reason)
            g = grouped.setdefault(filt, {"docs": 0, "bytes": 0})
            g["docs"] += v["docs"]
            g["bytes"] += v["bytes"]
            example = (examples.get(reason) or [""])[0]
            if len(example) > MAX_EXAMPLE_CHARS:
                example = example[: MAX_EXAMPLE_CHARS - 1] + "…"
            per_rule.append([stage["stage"], filt, rule, _int(v["docs"]), _pct(v["docs"], stage["docs_in"]),
                             _mb(v["bytes"]), example])
        for filt, g in sorted(grouped.items(), key=lambda kv: (-kv[1]["docs"], kv[0])):
            per_filter.append([stage["stage"], filt, _int(g["docs"]), _pct(g["docs"], stage["docs_in"]), _mb(g["bytes"])])
            bars.append((f"{stage['stage']}: {filt}", g["docs"]))
    if not per_filter:
        section["empty"] = "No stage dropped anything."
        return section, []
    section["intro"] = (f"Reasons are <filter>:<rule>; {INPUT_CHECKS} are the records no filter saw: unreadable, "
                        "empty, binary or oversized input. % is of the stage's documents in.")
    section["tables"].append(_table("drops-per-filter", "Per filter", ["stage", "filter", "docs", "% of stage in", "MB"],
                                    per_filter, "llrrr"))
    section["tables"].append(_table("drops-per-rule", "Per rule", ["stage", "filter", "rule", "docs", "% of stage in",
                                                                  "MB", "example"], per_rule, "lllrrrl"))
    return section, bars


def _languages(details: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[dict[str, Any], list[tuple[str, dict[str, int]]]]:
    """The section and, per langid stage with kept documents, its ``languages``."""
    section = _section("languages", "Languages")
    found = [(stage, stats["languages"]) for stage, stats in details if isinstance(stats.get("languages"), dict)]
    if not found:
        section["empty"] = "No data: this build has no langid stage."
        return section, []
    for stage, languages in found:
        total = sum(languages.values())
        if not total:
            section["tables"].append(_table(f"languages-{stage['stage']}", f"Kept documents per language ({stage['stage']})",
                                            ["language", "docs", "share"], [], "lrr", "No documents kept."))
            continue
        rows = [[lang, _int(n), _pct(n, total)] for lang, n in sorted(languages.items(), key=lambda kv: (-kv[1], kv[0]))]
        section["tables"].append(_table(f"languages-{stage['stage']}", f"Kept documents per language ({stage['stage']})",
                                        ["language", "docs", "share"], rows, "lrr", f"{len(rows)} languages, {total:,} documents."))
    return section, [(stage["stage"], languages) for stage, languages in found if sum(languages.values())]


def _histogram_rows(hist: dict[str, Any]) -> list[tuple[str, int, int]]:
    edges = hist["edges"]
    return [(_bucket_label(edges[i], edges[i + 1] if i + 1 < len(edges) else None), hist["in"][i], hist["out"][i])
            for i in range(len(hist["in"]))]


def _trimmed(rows: list[list[Any]], counts: list[list[int]]) -> tuple[list[list[Any]], slice]:
    """Rows between the first and the last bucket holding any document."""
    used = [i for i, c in enumerate(counts) if any(c)]
    if not used:
        return [], slice(0, 0)
    window = slice(used[0], used[-1] + 1)
    return rows[window], window


def _lengths(details: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The section and what the plot needs (None: no plot)."""
    section = _section("lengths", "Document lengths")
    corpus = [(stage, stats) for stage, stats in details
              if isinstance(stats.get("length_histogram"), dict) and not _is_synth(stage["stage"], stats)]
    synth = [(stage, stats) for stage, stats in details
             if isinstance(stats.get("length_histogram"), dict) and _is_synth(stage["stage"], stats)]
    plot: dict[str, Any] | None = None
    if corpus:
        (first, first_stats), (last, last_stats) = corpus[0], corpus[-1]
        h_first, h_last = first_stats["length_histogram"], last_stats["length_histogram"]
        labels = [label for label, _, _ in _histogram_rows(h_first)]
        series = [(f"{first['stage']} in (records)", h_first["in"]), (f"{first['stage']} out (before filtering)", h_first["out"])]
        if last is not first:
            series.append((f"{last['stage']} out (after filtering)", h_last["out"]))
        counts = [[s[1][i] for s in series] for i in range(len(labels))]
        rows, window = _trimmed([[labels[i], *map(_int, counts[i])] for i in range(len(labels))], counts)
        note = (f"Records in by the bytes they were read as (raw file or record bytes at {first['stage']}), documents out "
                "by the UTF-8 bytes of their text; bucket a – b holds a ≤ length < b.")
        if rows:
            section["tables"].append(_table("lengths", "Documents per length bucket", ["bytes", *[s[0] for s in series]],
                                            rows, "l" + "r" * len(series), note))
            plot = {"labels": labels[window], "series": [(name, values[window]) for name, values in series]}
        else:
            section["empty"] = "No documents."
    else:
        section["empty"] = "No data: no corpus stage wrote a length histogram."
    for stage, stats in synth:
        h = stats["length_histogram"]
        hrows = _histogram_rows(h)
        rows, _ = _trimmed([[label, _int(a), _int(b)] for label, a, b in hrows], [[a, b] for _, a, b in hrows])
        if rows:
            section["tables"].append(_table(f"lengths-{stage['stage']}", f"Conversation lengths ({stage['stage']})",
                                            ["bytes", "generated", "kept"], rows, "lrr",
                                            "UTF-8 bytes of the message contents."))
    return section, plot


def _dedup(details: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[dict[str, Any], dict[int, int] | None]:
    section = _section("dedup", "Deduplication")
    rows: list[list[Any]] = []
    sizes: dict[int, int] | None = None
    for stage, stats in details:
        if "duplicates_removed" in stats:
            rows.append([stage["stage"], "exact duplicates removed", _int(stats["duplicates_removed"])])
        if "cluster_sizes" in stats:
            for key, label in (("candidate_pairs", "candidate pairs"), ("verified_pairs", "verified pairs"),
                               ("clusters", "near-duplicate clusters"), ("docs_removed", "documents removed"),
                               ("documents_without_shingles", "documents without shingles")):
                if key in stats:
                    rows.append([stage["stage"], label, _int(stats[key])])
            sizes = {int(k): int(v) for k, v in (stats["cluster_sizes"] or {}).items()}
    if not rows:
        section["empty"] = "No data: this build has no dedup stage."
        return section, None
    section["tables"].append(_table("dedup", "Duplicates", ["stage", "measure", "count"], rows, "llr"))
    if sizes:
        size_rows = [[_int(size), _int(n), _int(size * n), _int((size - 1) * n)] for size, n in sorted(sizes.items())]
        section["tables"].append(_table("cluster-sizes", "Near-duplicate cluster sizes",
                                        ["cluster size", "clusters", "documents in them", "removed"], size_rows, "rrrr",
                                        "One document per cluster is kept."))
    elif sizes is not None:
        section["tables"][0]["note"] = "No near-duplicate clusters."
        sizes = None
    return section, sizes


def _synthetic(details: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[dict[str, Any], list[tuple[str, float]]]:
    section = _section("synthetic", "Synthetic data")
    runs: list[list[Any]] = []
    rates: list[list[Any]] = []
    plotted: list[tuple[str, float]] = []
    for stage, stats in details:
        if not _is_synth(stage["stage"], stats):
            continue
        gen = stats.get("generation") or {}
        runs.append([stage["stage"], gen.get("model", "?"), _int(stage["docs_in"]), _int(stage["docs_out"]),
                     _pct(stage["docs_out"], stage["docs_in"]), _int(gen.get("requests")), _int(gen.get("failed_requests")),
                     _int(gen.get("prompt_tokens")), _int(gen.get("completion_tokens")),
                     _seconds(gen.get("generate_seconds")),
                     "—" if gen.get("completion_tokens_per_s") is None else f"{gen['completion_tokens_per_s']:,.1f}"])
        rates.append([stage["stage"], "kept / units", _pct(stage["docs_out"], stage["docs_in"])])
        if stage["docs_in"]:
            plotted.append((f"{stage['stage']}: kept / units", stage["docs_out"] / stage["docs_in"]))
        for measure, rate in (stats.get("acceptance") or {}).items():
            rates.append([stage["stage"], measure, "—" if rate is None else f"{100 * rate:.1f}%"])
            if rate is not None:
                plotted.append((f"{stage['stage']}: {measure}", float(rate)))
    if not runs:
        section["empty"] = "No data: this build has no generation stage."
        return section, []
    section["tables"].append(_table(
        "generation", "Generation",
        ["stage", "model", "units", "kept", "acceptance", "requests", "failed", "prompt tokens", "completion tokens",
         "generate s", "completion tok/s"],
        runs, "llrrrrrrrrr",
        "Units: candidate instructions, instances or dialogues considered; tokens/s over the time spent in the model.",
    ))
    section["tables"].append(_table("acceptance", "Acceptance rates", ["stage", "measure", "rate"], rates, "llr"))
    return section, plotted


def _timing(details: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    section = _section("timing", "Wall time per stage")
    total = sum(stage["wall_seconds"] or 0 for stage, _ in details)
    rows = [[stage["stage"], _status(stage), _seconds(stage["wall_seconds"]), _pct(stage["wall_seconds"] or 0, total),
             stats.get("started_at", "—")] for stage, stats in details]
    section["tables"].append(_table("timing", "Wall time", ["stage", "status", "wall s", "share", "started at"], rows,
                                    "llrrl", "A skipped stage shows the time of the run that wrote its output."))
    return section


# ---------------------------------------------------------------- plots


def _figure(width: float = 7.5, height: float = 3.6) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, plots: Path, name: str) -> str:
    fig.savefig(plots / name, format="png", metadata={"Software": None})
    return f"{PLOTS_DIR}/{name}"


def _barh(plots: Path, name: str, title: str, labels: list[str], values: list[float], xlabel: str,
          color: str = "#3b6ea8", log: bool = False) -> str:
    fig = _figure(7.5, max(2.2, 0.32 * len(labels) + 1.2))
    ax = fig.add_subplot()
    ax.barh(range(len(labels)), values, color=color)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, plots, name)


def _plot_funnel(plots: Path, raw: list[dict[str, Any]]) -> str | None:
    if not any(r["docs_in"] or r["docs_out"] for r in raw):
        return None
    has_tokens = any(r["tokens_out"] for r in raw)
    fig = _figure(7.5, 3.8 if has_tokens else 3.2)
    axes = fig.subplots(1, 2 if has_tokens else 1, squeeze=False)[0]
    x = list(range(len(raw)))
    names = [r["stage"] for r in raw]
    ax = axes[0]
    ax.bar([i - 0.2 for i in x], [r["docs_in"] for r in raw], width=0.4, label="in", color="#9bb7d4")
    ax.bar([i + 0.2 for i in x], [r["docs_out"] for r in raw], width=0.4, label="out", color="#3b6ea8")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("documents")
    ax.set_title("Documents per stage")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    if has_tokens:
        ax = axes[1]
        colors = ["#c9803a" if r["tokens_estimated"] else "#8a4b12" for r in raw]
        ax.bar(x, [r["tokens_out"] or 0 for r in raw], color=colors)
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_ylabel("tokens out")
        ax.set_title("Tokens out (light: est.)")
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, plots, "funnel.png")


def _plot_lengths(plots: Path, plot: dict[str, Any]) -> str:
    fig = _figure(7.5, 3.8)
    ax = fig.add_subplot()
    labels = plot["labels"]
    n = len(plot["series"])
    width = 0.8 / n
    colors = ["#9bb7d4", "#3b6ea8", "#c9803a"]
    for k, (name, values) in enumerate(plot["series"]):
        ax.bar([i - 0.4 + width * (k + 0.5) for i in range(len(labels))], values, width=width, label=name, color=colors[k % 3])
    ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("documents")
    ax.set_xlabel("length in bytes (log buckets)")
    ax.set_title("Document lengths before and after filtering")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, plots, "lengths.png")


def _plot_clusters(plots: Path, sizes: dict[int, int]) -> str:
    fig = _figure(7.5, 3.2)
    ax = fig.add_subplot()
    items = sorted(sizes.items())
    ax.bar(range(len(items)), [n for _, n in items], color="#3b6ea8")
    ax.set_xticks(range(len(items)), [str(size) for size, _ in items])
    if max(n for _, n in items) > 50 * min(n for _, n in items):
        ax.set_yscale("log")
    ax.set_xlabel("cluster size (documents)")
    ax.set_ylabel("clusters")
    ax.set_title("Near-duplicate cluster sizes")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, plots, "dedup_clusters.png")


def _plot_acceptance(plots: Path, rates: list[tuple[str, float]]) -> str:
    fig = _figure(7.5, max(2.2, 0.32 * len(rates) + 1.2))
    ax = fig.add_subplot()
    ax.barh(range(len(rates)), [100 * r for _, r in rates], color="#4c9a6a")
    ax.set_yticks(range(len(rates)), [name for name, _ in rates])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("%")
    ax.set_title("Synthetic data acceptance")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, plots, "synth_acceptance.png")


# ---------------------------------------------------------------- the report


def report_sections(stages: list[dict[str, Any]], plots: Path | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The report's sections (tables, and plots drawn into ``plots`` unless None) and the funnel rows."""
    details = [(stage, _read_stats(stage)) for stage in stages]
    funnel, raw = _funnel(details)
    drops, drop_bars = _drops(details)
    languages, language_counts = _languages(details)
    lengths, length_plot = _lengths(details)
    dedup, cluster_sizes = _dedup(details)
    synthetic, rates = _synthetic(details)
    timing = _timing(details)
    if plots is not None:
        def add(section: dict[str, Any], path: str | None, alt: str) -> None:
            if path is not None:
                section["plots"].append({"src": path, "alt": alt})

        add(funnel, _plot_funnel(plots, raw), "documents in and out, and tokens out, per stage")
        bars = sorted(drop_bars, key=lambda b: -b[1])[:MAX_DROP_BARS]
        if any(v for _, v in bars):
            add(drops, _barh(plots, "drops.png", "Documents dropped per filter", [b[0] for b in bars],
                             [b[1] for b in bars], "documents", color="#b5523b"), "documents dropped per stage and filter")
        for stage_name, counts in language_counts:
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            labels = [lang for lang, _ in ranked[:MAX_LANGUAGES_PLOTTED]]
            values = [n for _, n in ranked[:MAX_LANGUAGES_PLOTTED]]
            rest = sum(n for _, n in ranked[MAX_LANGUAGES_PLOTTED:])
            if rest:
                labels.append("other")
                values.append(rest)
            add(languages, _barh(plots, f"languages-{slug(stage_name)}.png", f"Kept documents per language ({stage_name})",
                                 labels, values, "documents"), "kept documents per language")
        if length_plot is not None:
            add(lengths, _plot_lengths(plots, length_plot), "histogram of document lengths before and after filtering")
        if cluster_sizes:
            add(dedup, _plot_clusters(plots, cluster_sizes), "number of near-duplicate clusters per cluster size")
        if rates:
            add(synthetic, _plot_acceptance(plots, rates), "acceptance rates of the generation stages")
        walls = [(stage["stage"], stage["wall_seconds"] or 0) for stage in stages]
        if any(v for _, v in walls):
            add(timing, _barh(plots, "wall_time.png", "Wall time per stage", [w[0] for w in walls], [w[1] for w in walls],
                              "seconds"), "wall time per stage")
    return [funnel, drops, languages, lengths, dedup, synthetic, timing], raw


CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 72em;
       padding: 0 1em; color: #1d232a; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #d5dae0; padding-bottom: .2em; }
h3 { font-size: 1.05em; margin-bottom: .3em; }
table { border-collapse: collapse; margin: .4em 0 .3em; }
th, td { padding: .25em .7em; border-bottom: 1px solid #e3e7eb; vertical-align: top; }
th { background: #f2f4f7; text-align: left; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
td.example { font-family: ui-monospace, monospace; font-size: .85em; color: #4a5561; max-width: 40em;
             overflow-wrap: anywhere; }
p.note, p.meta { color: #5a6672; font-size: .9em; margin-top: .2em; }
p.empty { color: #5a6672; font-style: italic; }
img { display: block; max-width: 100%; margin: .8em 0; border: 1px solid #e3e7eb; }
code { font-family: ui-monospace, monospace; font-size: .9em; }
"""


def _html_table(table: dict[str, Any]) -> list[str]:
    e = html.escape
    lines = [f"<h3>{e(table['title'])}</h3>", f'<table id="{e(table["id"])}">', "<thead><tr>"]
    lines += [f'<th class="{a}">{e(c)}</th>' for c, a in zip(table["columns"], table["align"])]
    lines.append("</tr></thead><tbody>")
    for row in table["rows"]:
        cells = []
        for column, cell, a in zip(table["columns"], row, table["align"]):
            css = "example" if column == "example" else a
            cells.append(f'<td class="{css}">{e(cell)}</td>')
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</tbody></table>")
    if not table["rows"]:
        lines.append('<p class="empty">no data</p>')
    if table["note"]:
        lines.append(f'<p class="note">{e(table["note"])}</p>')
    return lines


def render_html(recipe_name: str, out_dir: str, generated_at: str, sections: list[dict[str, Any]]) -> str:
    e = html.escape
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>corpusforge build {e(recipe_name)}</title>",
        f"<style>{CSS}</style>",
        "</head><body>",
        f"<h1>corpusforge build <code>{e(recipe_name)}</code></h1>",
        f'<p class="meta">Output: <code>{e(out_dir)}</code> · report written {e(generated_at)} · '
        "numbers from each stage's <code>_stats.json</code></p>",
    ]
    for section in sections:
        lines.append(f'<section id="{e(section["id"])}"><h2>{e(section["title"])}</h2>')
        if section["intro"]:
            lines.append(f"<p>{e(section['intro'])}</p>")
        if section["empty"]:
            lines.append(f'<p class="empty">{e(section["empty"])}</p>')
        for table in section["tables"]:
            lines += _html_table(table)
        for plot in section["plots"]:
            lines.append(f'<img src="{e(plot["src"])}" alt="{e(plot["alt"])}">')
        lines.append("</section>")
    lines.append("</body></html>")
    return "\n".join(lines) + "\n"


def _md_cell(text: str) -> str:
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", " ")


def _md_code(text: str) -> str:
    """A code span when the text cannot break out of one, else escaped text."""
    return f"`{text}`" if not re.search(r"[`|<>&\n]", text) else _md_cell(text)


def _md_table(table: dict[str, Any], *, code_columns: tuple[str, ...] = ("output",)) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(c) for c in table["columns"]) + " |",
             "|" + "|".join("--:" if a == "r" else "---" for a in table["align"]) + "|"]
    for row in table["rows"]:
        cells = []
        for column, cell in zip(table["columns"], row):
            cells.append(_md_code(cell) if column in code_columns else _md_cell(cell))
        lines.append("| " + " | ".join(cells) + " |")
    if not table["rows"]:
        lines.append("")
        lines.append("_no data_")
    if table["note"]:
        lines += ["", _md_cell(table["note"])]
    return lines


def render_markdown(recipe_name: str, out_dir: str, sections: list[dict[str, Any]], *, images: bool) -> str:
    """The report as Markdown: ``summary.md`` (``images``: links to the plots) and the Prefect artifact."""
    lines = [f"# corpusforge build {_md_code(recipe_name)}", "", f"Output: {_md_code(out_dir)}"]
    if not images:
        lines += ["", f"The report with its plots: {_md_code(str(Path(out_dir) / 'report' / 'index.html'))}"]
    for section in sections:
        lines += ["", f"## {_md_cell(section['title'])}"]
        if section["intro"]:
            lines += ["", _md_cell(section["intro"])]
        if section["empty"]:
            lines += ["", f"_{_md_cell(section['empty'])}_"]
        for table in section["tables"]:
            lines += ["", f"### {_md_cell(table['title'])}", "", *_md_table(table)]
        if images:
            for plot in section["plots"]:
                lines += ["", f"![{_md_cell(plot['alt'])}]({plot['src']})"]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, recipe_name: str, stages: list[dict[str, Any]]) -> Path:
    """Write ``out_dir/report/``: summary.json, summary.md, plots/*.png and index.html (returned)."""
    from datetime import datetime, timezone

    report_dir = out_dir / "report"
    plots = report_dir / PLOTS_DIR
    plots.mkdir(parents=True, exist_ok=True)
    for old in plots.glob("*.png"):  # a plot this run has no data for must not linger
        old.unlink()
    generated_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    sections, funnel = report_sections(stages, plots)
    summary = {
        "recipe": recipe_name,
        "output": str(out_dir),
        "generated_at": generated_at,
        "stages": stages,
        "funnel": funnel,
        "sections": sections,
    }
    write_text(report_dir / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    write_text(report_dir / "summary.md", render_markdown(recipe_name, str(out_dir), sections, images=True))
    index = report_dir / "index.html"
    write_text(index, render_html(recipe_name, str(out_dir), generated_at, sections))
    return index


def publish_report_artifacts(out_dir: Path, recipe_name: str) -> None:
    """The report of :func:`write_report` as Prefect artifacts of the running flow: the tables as
    Markdown (key ``corpusforge-<recipe>-report``) and the funnel as a table (``…-funnel``)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    summary = json.loads((out_dir / "report" / "summary.json").read_text())
    report_key, funnel_key = artifact_keys(recipe_name)
    create_markdown_artifact(
        markdown=render_markdown(recipe_name, summary["output"], summary["sections"], images=False),
        key=report_key,
        description=f"corpusforge build {recipe_name}: the run report",
    )
    create_table_artifact(
        table=summary["funnel"],
        key=funnel_key,
        description=f"corpusforge build {recipe_name}: documents, bytes and tokens per stage",
    )


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
