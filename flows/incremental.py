"""Periodic builds (``incremental.period``): one build per day, week or month under one root,
each deduplicated against the builds before it.

A rerun within the same period resumes that period's build; ``--set incremental.run=2026-W40``
(re)builds a given period, which is how backfills are run.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from flows.recipe import Recipe, RecipeError
from pipelines.stage import SUCCESS_FILE

LABEL_PATTERNS = {
    "day": re.compile(r"^\d{4}-\d{2}-\d{2}$"),
    "week": re.compile(r"^\d{4}-W\d{2}$"),
    "month": re.compile(r"^\d{4}-\d{2}$"),
}


def period_label(period: str, when: datetime) -> str:
    """``2026-12-01`` (day), ``2026-W49`` (ISO week), ``2026-12`` (month), in UTC."""
    when = when.astimezone(timezone.utc) if when.tzinfo else when
    if period == "day":
        return when.strftime("%Y-%m-%d")
    if period == "week":
        year, week, _ = when.isocalendar()
        return f"{year}-W{week:02d}"
    return when.strftime("%Y-%m")


def earlier_builds(root: Path, period: str, label: str) -> list[Path]:
    """Finished builds of earlier periods under ``root`` (their dedup-minhash output is complete)."""
    if not root.is_dir():
        return []
    pattern = LABEL_PATTERNS[period]
    return sorted(
        d
        for d in root.iterdir()
        if d.is_dir() and pattern.match(d.name) and d.name < label and (d / "dedup-minhash" / SUCCESS_FILE).is_file()
    )


def resolve_period(recipe: Recipe, root: Path, when: datetime | None = None) -> tuple[Recipe, Path, list[Path]]:
    """The recipe as this period's build runs it, its output directory, and the earlier builds.

    Without ``incremental.period`` the recipe and ``root`` come back unchanged.
    """
    inc = recipe.incremental
    if not inc.period:
        return recipe, root, []
    label = inc.run or period_label(inc.period, when or datetime.now(timezone.utc))
    if not LABEL_PATTERNS[inc.period].match(label):
        raise RecipeError(f"incremental.run {label!r} does not name a {inc.period} (e.g. {period_label(inc.period, datetime.now(timezone.utc))})")
    earlier = earlier_builds(root, inc.period, label)
    update: dict[str, object] = {"incremental": inc.model_copy(update={"run": label})}
    if inc.dedup_against_previous and earlier:
        references = list(recipe.dedup.reference)
        references += [str(d / "dedup-minhash") for d in earlier if str(d / "dedup-minhash") not in references]
        update["dedup"] = recipe.dedup.model_copy(update={"reference": references})
    return recipe.model_copy(update=update), root / label, earlier
