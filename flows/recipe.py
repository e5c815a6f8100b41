"""Recipes: one YAML file describes a corpus build; pydantic validates it.

Every error names the recipe file, the line and the dotted key (``ingest.max_file_bytes``);
``--set KEY=VALUE`` overrides any key by that same dotted path before validation.
"""

from __future__ import annotations

import copy
from datetime import date
from pathlib import Path
from typing import Any, Iterable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines.dedup_exact import DedupExactConfig
from pipelines.dedup_minhash import DedupMinHashConfig
from pipelines.errors import CorpusforgeError
from pipelines.fetch import CrawlConfig
from pipelines.ingest import IngestConfig
from pipelines.langid import LangIdConfig
from pipelines.pii import PiiStageConfig
from pipelines.quality import QualityConfig
from flows.registry import STAGES, can_start
from pipelines.spark import SparkSettings, code_loading_keys
from pipelines.tokenize import TokenizeConfig
from pipelines.warc import WarcIngestConfig
from synth.dialogues import DialoguesConfig
from synth.self_instruct import SelfInstructConfig


class RecipeError(CorpusforgeError):
    """A recipe (or a --set override) is not valid; the message lists every problem."""


class OrchestrationSettings(BaseModel):
    """Recipe section ``orchestration``: how Prefect runs the build."""

    model_config = ConfigDict(extra="forbid")

    retries: int = Field(
        1, ge=0, le=10, description="retries of a stage that failed for a reason other than its input or settings"
    )
    retry_delay_seconds: float = Field(30.0, ge=0, description="wait before a retry")
    cron: str | None = Field(None, description="schedule of `corpusforge serve` (cron syntax), e.g. '0 3 * * 1'")
    timezone: str = Field("UTC", description="time zone the cron schedule is read in")

    @model_validator(mode="after")
    def _valid_schedule(self) -> "OrchestrationSettings":
        if self.cron is not None:
            schedule_of(self.cron, self.timezone)
        return self


def schedule_of(cron: str, timezone: str = "UTC") -> Any:
    """Prefect's schedule for ``cron``; ValueError naming the problem when it is not valid."""
    from pydantic import ValidationError as _Invalid

    from prefect.client.schemas.schedules import CronSchedule

    try:
        return CronSchedule(cron=cron, timezone=timezone)
    except _Invalid as exc:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ValueError(f"not a valid schedule (cron {cron!r}, time zone {timezone!r}): {problems}") from None


class IncrementalSettings(BaseModel):
    """Recipe section ``incremental``: periodic builds, each deduplicated against the earlier ones.

    With ``period`` set, ``--out DIR`` holds one build per period (``DIR/2026-W49/``) and the
    dedup-minhash stage of each build takes every earlier finished build's dedup-minhash output
    as a reference, so documents seen in an earlier period are dropped as ``seen_before``.
    """

    model_config = ConfigDict(extra="forbid")

    period: Literal["day", "week", "month"] | None = Field(None, description="one build per period; off when unset")
    run: str | None = Field(
        None,
        pattern=r"^\d{4}-(W\d{2}|\d{2}(-\d{2})?)$",
        description="the period to build (2026-W49, 2026-12-01, 2026-12); default: the run's scheduled time",
    )
    dedup_against_previous: bool = Field(True, description="add earlier builds' dedup-minhash outputs as references")

    @field_validator("run", mode="before")
    @classmethod
    def _date_as_label(cls, run: object) -> object:
        # YAML reads an unquoted 2026-12-01 as a date.
        return run.isoformat() if isinstance(run, date) else run


class Recipe(BaseModel):
    """A corpus build: which stages run, in order, and each stage's settings."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        "corpus", pattern=r"^[A-Za-z0-9_.-]+$", max_length=100, description="build name; default output build/<name>"
    )
    description: str = ""
    stages: list[str] = Field(default_factory=lambda: ["ingest"], min_length=1)
    spark: SparkSettings = Field(default_factory=SparkSettings)
    crawl: CrawlConfig = Field(default_factory=CrawlConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    ingest_warc: WarcIngestConfig = Field(default_factory=WarcIngestConfig)
    langid: LangIdConfig = Field(default_factory=LangIdConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)  # type: ignore[valid-type]
    pii: PiiStageConfig = Field(default_factory=PiiStageConfig)
    dedup_exact: DedupExactConfig = Field(default_factory=DedupExactConfig)
    dedup: DedupMinHashConfig = Field(default_factory=DedupMinHashConfig)
    self_instruct: SelfInstructConfig = Field(default_factory=SelfInstructConfig)
    dialogues: DialoguesConfig = Field(default_factory=DialoguesConfig)
    tokenize: TokenizeConfig = Field(default_factory=TokenizeConfig)
    orchestration: OrchestrationSettings = Field(default_factory=OrchestrationSettings)
    incremental: IncrementalSettings = Field(default_factory=IncrementalSettings)

    @model_validator(mode="after")
    def _incremental_needs_minhash(self) -> "Recipe":
        inc = self.incremental
        if inc.period and inc.dedup_against_previous and "dedup-minhash" not in self.stages:
            raise ValueError(
                "incremental.period with dedup_against_previous needs the dedup-minhash stage "
                "(its stored signatures are what later builds are deduplicated against)"
            )
        if inc.run and not inc.period:
            raise ValueError("incremental.run is set but incremental.period is not")
        return self

    @field_validator("name")
    @classmethod
    def _name_is_one_directory(cls, name: str) -> str:
        # build/<name> is the default output: "." or ".." would be build/ itself or its parent.
        if not name.strip("."):
            raise ValueError("must name one directory, not '.' or '..' (the default output is build/<name>)")
        return name

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, stages: list[str]) -> list[str]:
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {', '.join(unknown)}; known: {', '.join(STAGES)}")
        if len(set(stages)) != len(stages):
            raise ValueError("a stage is listed twice")
        if not can_start(stages[0]):
            raise ValueError(
                f"the first stage must read raw files or need no input (ingest, crawl, self-instruct, dialogues), "
                f"not '{stages[0]}'"
            )
        order = list(STAGES)
        if [order.index(s) for s in stages] != sorted(order.index(s) for s in stages):
            raise ValueError(f"stages must keep pipeline order: {' -> '.join(order)}")
        return stages

    def section(self, stage: str) -> BaseModel:
        return getattr(self, STAGES[stage].section)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=VALUE`` -> (["a", "b", "c"], VALUE parsed as YAML, so 500 is an int)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"--set {item!r}: expected KEY=VALUE, e.g. --set ingest.max_file_bytes=1000000")
    parts = key.strip().split(".")
    if any(not p for p in parts):
        raise RecipeError(f"--set {item!r}: empty part in key '{key}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise RecipeError(f"--set {item!r}: value is not valid YAML ({exc})") from exc
    return parts, value


# Sections whose keys contain dots themselves (``spark.conf.spark.executor.cores=2``):
# everything after the section's path is one key.
FREE_FORM_SECTIONS = [["spark", "conf"]]


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Set each dotted key in a copy of ``data``, creating sections as needed."""
    data = copy.deepcopy(data)
    for item in overrides:
        parts, value = parse_override(item)
        for section in FREE_FORM_SECTIONS:
            if parts[: len(section)] == section and len(parts) > len(section) + 1:
                parts = section + [".".join(parts[len(section) :])]
        node = data
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise RecipeError(f"--set {item}: '{'.'.join(parts[: depth + 1])}' is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (or of its nearest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((pair for pair in node.value if pair[0].value == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _refuse_code_loading_spark_conf(data: dict[str, Any], origin: str, text: str) -> None:
    """A recipe file is data: the Spark settings that load or run code may only come from the
    command line (``--set``), where the operator chose them."""
    spark = data.get("spark")
    keys = code_loading_keys(spark.get("conf")) if isinstance(spark, dict) else []
    if keys:
        line = _line_of(yaml.compose(text), ("spark", "conf", keys[0]))
        where = f"{origin}:{line}" if line else origin
        raise RecipeError(
            f"{where}: spark.conf: {', '.join(keys)} would let the recipe load or run code; a recipe "
            f"file may not set it. Pass it on the command line instead: --set spark.conf.{keys[0]}=VALUE"
        )


def validate_recipe_data(data: Any, origin: str, text: str | None = None, overrides: Iterable[str] = ()) -> Recipe:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{origin}: a recipe is a YAML mapping of sections, got {type(data).__name__}")
    if text is not None:
        _refuse_code_loading_spark_conf(data, origin, text)
    data = apply_overrides(data, overrides)
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        root = yaml.compose(text) if text else None
        override_keys = [parse_override(o)[0] for o in overrides]
        lines = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            dotted = _dotted(loc)
            # An error on the key a --set names, below it, or on the section holding it.
            from_set = any(list(loc[: len(k)]) == k or (loc and k[: len(loc)] == list(loc)) for k in override_keys)
            where = "--set" if from_set else f"{origin}:{_line_of(root, loc) or 1}"
            got = error.get("input")
            shown = "" if error["type"] in ("missing", "extra_forbidden") or isinstance(got, (dict, list)) else f" (got {got!r})"
            message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {dotted}: {message}{shown}")
        raise RecipeError("invalid recipe:\n  " + "\n  ".join(lines)) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark, context_mark = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"{mark.line + 1}: " if mark else " "
    started = f", {context} started on line {context_mark.line + 1}" if context and context_mark else ""
    return f"{where}not valid YAML ({problem}{started})"


def load_recipe(path: str | Path, overrides: Iterable[str] = ()) -> Recipe:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe ({exc.strerror or exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}:{_yaml_problem(exc)}") from exc
    return validate_recipe_data(data, str(path), text, list(overrides))


def default_recipe(overrides: Iterable[str] = ()) -> Recipe:
    """Every section at its defaults (what a stage run alone uses), plus overrides."""
    return validate_recipe_data({}, "defaults", None, list(overrides))
