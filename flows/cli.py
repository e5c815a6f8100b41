"""The `corpusforge` command line.

    corpusforge run RECIPE [--out DIR] [--set KEY=VALUE ...]
    corpusforge stage NAME --in PATH --out PATH [--set KEY=VALUE ...]
    corpusforge validate RECIPE [--set KEY=VALUE ...]
    corpusforge serve RECIPE [--cron "0 3 * * 1"] [--work-pool POOL] [--out DIR] [--set KEY=VALUE ...]
    corpusforge stages
"""

from __future__ import annotations

import json
import logging
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from flows.recipe import Recipe, default_recipe, load_recipe
from pipelines.errors import CorpusforgeError
from pipelines.storage import is_uri, location
from flows.registry import STAGES

app = typer.Typer(
    name="corpusforge",
    help="Build language-model training corpora: ingest, filter, deduplicate, tokenize, synthesize.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

SetOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Override a recipe key by its dotted path, e.g. --set ingest.max_file_bytes=1000000 (repeatable).",
    ),
]
MasterOption = Annotated[
    Optional[str],
    typer.Option("--spark-master", help="Spark master URL: local[*] (default), local[N], spark://host:7077, yarn or k8s://https://host:port."),
]
ForceOption = Annotated[bool, typer.Option("--force", help="Rerun stages even if their output is current.")]
RejectsOption = Annotated[
    Optional[Path],
    typer.Option(
        "--keep-rejects",
        metavar="DIR",
        help="Also write dropped documents, whole, to DIR (one folder per filter) for inspection.",
    ),
]


def _version() -> str:
    try:
        return version("corpusforge")
    except PackageNotFoundError:
        return "unknown"


def _setup_logging(verbose: bool) -> None:
    handler = RichHandler(console=console, show_path=False, markup=False, log_time_format="%H:%M:%S")
    logger = logging.getLogger("corpusforge")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def _overrides(sets: list[str] | None, spark_master: str | None) -> list[str]:
    items = list(sets or [])
    if spark_master:
        items.append(f"spark.master={json.dumps(spark_master)}")
    return items


def _print_stages_table(stages: list[dict]) -> None:
    table = Table(title="corpusforge build", show_lines=False)
    for column in ("stage", "status", "docs in", "docs out", "dropped", "wall s"):
        table.add_column(column, justify="right" if column not in ("stage", "status") else "left")
    for s in stages:
        reasons = list(s["dropped"].items())  # largest first
        dropped = ", ".join(f"{reason} {v['docs']:,}" for reason, v in reasons[:3]) or "-"
        if len(reasons) > 3:
            rest = sum(v["docs"] for _, v in reasons[3:])
            dropped += f", {len(reasons) - 3} more reasons {rest:,}"
        table.add_row(
            s["stage"],
            "skipped (current)" if s["skipped"] else "ran",
            f"{s['docs_in']:,}",
            f"{s['docs_out']:,}",
            dropped,
            f"{s['wall_seconds']:.1f}",
        )
    Console().print(table)


@app.callback(invoke_without_command=True)
def _main(
    show_version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    if show_version:
        typer.echo(f"corpusforge {_version()}")
        raise typer.Exit()
    _setup_logging(verbose)


@app.command()
def validate(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    sets: SetOption = None,
    show: Annotated[bool, typer.Option("--show", help="Print the full recipe with every default filled in.")] = False,
) -> None:
    """Check a recipe: unknown keys, wrong types and bad values are reported with file, line and key."""
    parsed = load_recipe(recipe, sets or [])
    console.print(f"[green]ok[/]: {recipe} is valid; stages: {' -> '.join(parsed.stages)}")
    if show:
        import yaml

        typer.echo(yaml.safe_dump(parsed.model_dump(mode="json"), sort_keys=False))


def _build_dir(parsed: Recipe, out: str | Path | None) -> Path:
    """OUT of a whole build: a local or mounted directory (``file://`` URIs included), because
    the run report, the logs and Prefect's result cache are written there with local file I/O."""
    where = location(out) if out is not None else Path("build") / parsed.name
    if is_uri(where):
        if getattr(where, "protocol", "") != "file":
            raise CorpusforgeError(
                f"--out {out}: a whole build writes to a local or mounted directory; run single stages "
                "with `corpusforge stage NAME --out URI` to write to an object store (docs/scaling.md)"
            )
        where = Path(where.path)
    return where.resolve()


def _print_plan(parsed: Recipe, out_dir: Path, force: bool, keep_rejects: Path | None) -> bool:
    """Print what a run would do; False when a stage could not start."""
    from flows.incremental import resolve_period
    from flows.runner import plan_build

    parsed, out_dir, earlier = resolve_period(parsed, out_dir)
    steps = plan_build(parsed, out_dir, force=force, keep_rejects=keep_rejects.resolve() if keep_rejects else None)
    table = Table(title=f"plan: {parsed.name} -> {out_dir}")
    for column in ("stage", "action", "why", "reads"):
        table.add_column(column)
    styles = {"run": "yellow", "skip": "green", "fail": "bold red"}
    for step in steps:
        reads = ", ".join(_short(p, out_dir) for p in step.inputs) or "-"
        table.add_row(step.name, f"[{styles[step.action]}]{step.action}[/]", step.reason, reads)
    Console().print(table)
    if parsed.incremental.period:
        typer.echo(f"incremental build {parsed.incremental.run}: deduplicated against {len(earlier)} earlier build(s)")
    for step in steps:
        if step.action == "fail":
            typer.echo(f"cannot run {step.name}: {step.reason}")
    runs = sum(step.action == "run" for step in steps)
    typer.echo(f"{runs} of {len(steps)} stages would run; nothing was changed (--dry-run)")
    return all(step.action != "fail" for step in steps)


def _short(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    out: Annotated[Optional[str], typer.Option("--out", help="Output directory (default: build/<recipe name>).")] = None,
    sets: SetOption = None,
    spark_master: MasterOption = None,
    force: ForceOption = False,
    keep_rejects: RejectsOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print which stages would run or be skipped, and why; run nothing.")
    ] = False,
) -> None:
    """Run a whole recipe as a Prefect flow (local ephemeral Prefect API unless PREFECT_API_URL is set).

    Each stage writes OUT/<stage>/; finished stages whose inputs and settings are unchanged are skipped.
    """
    parsed = load_recipe(recipe, _overrides(sets, spark_master))
    out_dir = _build_dir(parsed, out)
    if dry_run:
        if not _print_plan(parsed, out_dir, force, keep_rejects):
            raise typer.Exit(2)
        return
    from flows.build import run_build

    result = run_build(parsed, str(out_dir), force=force, keep_rejects=str(keep_rejects) if keep_rejects else None)
    _print_stages_table(result["stages"])
    typer.echo(f"outputs: {result['output']}")
    typer.echo(f"report:  {result['report']}")


@app.command()
def serve(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    cron: Annotated[
        Optional[str],
        typer.Option("--cron", help='Schedule in cron syntax, e.g. "0 3 * * 1" (default: orchestration.cron).'),
    ] = None,
    timezone: Annotated[
        Optional[str], typer.Option("--timezone", help="Time zone of the schedule (default: orchestration.timezone).")
    ] = None,
    out: Annotated[Optional[str], typer.Option("--out", help="Output directory (default: build/<recipe name>).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Deployment name (default: the recipe's name).")] = None,
    sets: SetOption = None,
    spark_master: MasterOption = None,
    work_pool: Annotated[
        Optional[str],
        typer.Option(
            "--work-pool",
            metavar="POOL",
            help="Register the deployment with this existing work pool and exit; its workers "
            "(`prefect worker start --pool POOL`) run the flow runs. Needs PREFECT_API_URL.",
        ),
    ] = None,
) -> None:
    """Register the recipe as a Prefect deployment with a schedule, and run its scheduled runs.

    Talks to the Prefect server at PREFECT_API_URL (`prefect server start`, or a remote one);
    runs triggered from the UI or the API run here too. Stop with Ctrl-C (the schedule pauses).
    With --work-pool, registers the deployment with that pool and exits instead: the pool's
    workers run the scheduled and triggered runs.
    """
    overrides = _overrides(sets, spark_master)
    if cron is not None:
        overrides.append(f"orchestration.cron={json.dumps(cron)}")
    if timezone is not None:
        overrides.append(f"orchestration.timezone={json.dumps(timezone)}")
    parsed = load_recipe(recipe, overrides)
    out_dir = _build_dir(parsed, out)
    from flows.deploy import deployment_for, serve_deployments

    from prefect.settings import PREFECT_API_URL

    deployment = deployment_for(parsed, out_dir, name=name)
    schedule = f"cron {parsed.orchestration.cron!r} ({parsed.orchestration.timezone})" if parsed.orchestration.cron else "no schedule (runs on demand)"
    if work_pool is not None:
        _register_with_pool(deployment, work_pool, schedule, out_dir)
        return
    if not PREFECT_API_URL.value():  # from the environment or the active Prefect profile
        console.print(
            "[yellow]warning:[/] PREFECT_API_URL is not set: serving against a temporary local Prefect server "
            "that stops with this process. Start one with `prefect server start` and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api to keep the deployment and its runs."
        )
    console.print(f"serving deployment [bold]{deployment.flow_name}/{deployment.name}[/]: {schedule}; outputs in {out_dir}")
    serve_deployments([deployment])


def _register_with_pool(deployment, pool_name: str, schedule: str, out_dir: Path) -> None:
    """``serve --work-pool``: the deployment goes to the pool's workers; this process exits."""
    from flows.deploy import register_deployments, work_pool
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise CorpusforgeError(
            "--work-pool registers the deployment on a Prefect server, and PREFECT_API_URL is not set: "
            "start one with `prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api "
            "(or the address of a remote server)"
        )
    pool = work_pool(pool_name)
    [deployment_id] = register_deployments([deployment], pool.name)
    full_name = f"{deployment.flow_name}/{deployment.name}"
    console.print(
        f"registered deployment [bold]{full_name}[/] on work pool [bold]{pool.name}[/] ({pool.type}): "
        f"{schedule}; outputs in {out_dir}",
        highlight=False,
    )
    typer.echo(f"deployment: {full_name}")
    typer.echo(f"id:         {deployment_id}")
    typer.echo(f"worker:     prefect worker start --pool {pool.name} --type {pool.type}")
    typer.echo(f"run now:    prefect deployment run {full_name}")


@app.command()
def stage(
    name: Annotated[str, typer.Argument(help=f"Stage name: {', '.join(STAGES)}.")],
    out: Annotated[str, typer.Option("--out", help="Output dataset directory: a path or a URI (file://, s3a://, gs://, hdfs://).")],
    in_path: Annotated[
        Optional[list[str]],
        typer.Option("--in", help="Input path or URI (repeatable for raw-file stages; optional for crawl with crawl.seeds)."),
    ] = None,
    sets: SetOption = None,
    recipe: Annotated[
        Optional[Path], typer.Option("--recipe", help="Take settings from this recipe instead of the defaults.")
    ] = None,
    spark_master: MasterOption = None,
    force: ForceOption = False,
    keep_rejects: RejectsOption = None,
) -> None:
    """Run one stage alone, with its recipe section's defaults (or --recipe), without Prefect."""
    if name not in STAGES:
        raise CorpusforgeError(f"unknown stage '{name}'; known stages: {', '.join(STAGES)}")
    overrides = _overrides(sets, spark_master)
    parsed: Recipe = load_recipe(recipe, overrides) if recipe else default_recipe(overrides)
    from flows.runner import execute_stage
    from flows.report import stage_summary
    from pipelines.spark import spark_scope

    with spark_scope():
        inputs = [location(p) for p in in_path or []]
        result = execute_stage(parsed, name, inputs, location(out), force=force, keep_rejects=keep_rejects)
    _print_stages_table([stage_summary(result)])
    typer.echo(f"output: {result.output}")
    typer.echo(f"stats:  {result.output / '_stats.json'}")


@app.command("stages")
def list_stages() -> None:
    """List the stages in pipeline order."""
    table = Table()
    table.add_column("stage")
    table.add_column("what it does")
    for name, cls in STAGES.items():
        table.add_row(name, cls.summary)
    Console().print(table)


def main() -> None:
    try:
        app()
    except CorpusforgeError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except OSError as exc:
        from flows.runner import FULL_ERRNOS

        if exc.errno not in FULL_ERRNOS:
            raise
        console.print(f"[bold red]error:[/] {exc.strerror}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
