"""The Prefect flows on a real Prefect test server and real Spark: a whole build, a failure in
one stage and the resume after it, a changed setting rerunning only what depends on it,
``--dry-run``, retries, incremental builds, and ``corpusforge serve``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
from typer.testing import CliRunner

from flows.build import _retry_unless_input_error
from flows.cli import app
from flows.incremental import earlier_builds, period_label, resolve_period
from flows.recipe import load_recipe
from flows.runner import plan_build
from pipelines.errors import StageInputError

runner = CliRunner()
STAGES = ["ingest", "langid", "quality", "pii", "dedup-exact", "dedup-minhash", "tokenize"]


def _recipe(tmp_path: Path, corpus: Path, extra: str = "") -> Path:
    recipe = tmp_path / "build.yaml"
    recipe.write_text(
        f"name: flowtest\nstages: [{', '.join(STAGES)}]\n"
        f"ingest:\n  paths: [{corpus}]\n  source: tests\n"
        "langid:\n  keep: {en: 0.3, ja: 0.3, ru: 0.3}\n"
        "quality:\n  filters: [gopher_repetition]\n"
        "orchestration:\n  retries: 0\n" + extra
    )
    return recipe


def _finished_at(out: Path) -> dict[str, str]:
    return {
        name: json.loads((out / name / "_stats.json").read_text())["finished_at"]
        for name in STAGES
        if (out / name / "_stats.json").is_file()
    }


def _task_states(flow_run_id: str) -> dict[str, str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name: run.state.name for run in runs}


def _flow_logs(flow_run_id: str) -> list[str]:
    messages: list[str] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200, offset=len(messages)
            )
            messages += [log.message for log in page]
            if len(page) < 200:
                return messages


def test_build_fails_in_one_stage_resumes_there_and_reruns_only_downstream(
    spark, prefect_server, corpus: Path, tmp_path: Path
) -> None:
    from flows.build import run_build

    recipe = _recipe(tmp_path, corpus)
    out = tmp_path / "build"
    missing = tmp_path / "no-such-reference"

    # 1. A failure injected in dedup-minhash: its reference does not exist.
    failed = runner.invoke(app, ["run", str(recipe), "--out", str(out), "--set", f"dedup.reference=[{missing}]"])
    assert failed.exit_code != 0
    assert "dedup-minhash" in str(failed.exception) and str(missing) in str(failed.exception)
    assert getattr(failed.exception, "exit_code", None) == 2  # bad settings: exit status 2, not a crash
    before = _finished_at(out)
    assert list(before) == STAGES[:5]  # every stage before the failing one finished
    assert not (out / "dedup-minhash").exists() and not (out / "report").exists()

    # 2. The rerun skips the five finished stages (Prefect: Cached) and runs the other two.
    result = run_build(load_recipe(recipe), str(out))
    after = _finished_at(out)
    assert {s: after[s] for s in STAGES[:5]} == before
    assert [s["skipped"] for s in result["stages"]] == [True] * 5 + [False] * 2
    states = _task_states(result["flow_run_id"])
    assert {name: states[name] for name in STAGES} == {**{s: "Cached" for s in STAGES[:5]}, "dedup-minhash": "Completed", "tokenize": "Completed"}
    tokens = json.loads((out / "tokenize" / "_stats.json").read_text())["tokenize"]["tokens"]
    assert tokens > 0 and (out / "report" / "index.html").is_file()
    logs = _flow_logs(result["flow_run_id"])
    assert any(m.startswith("tokenize: /") for m in logs), logs  # the stage's own log line reached Prefect

    # 3. The plan for a changed quality setting: two stages skip, the rest run.
    plan = plan_build(load_recipe(recipe, ["quality.filters=[c4]"]), out.resolve())
    assert [(step.name, step.action) for step in plan] == [(s, "skip" if s in STAGES[:2] else "run") for s in STAGES]
    assert plan[2].reason == "settings changed: quality.filters"
    assert all(step.reason == f"its input changes ({before} runs)" for before, step in zip(STAGES[2:], plan[3:]))
    shown = runner.invoke(app, ["run", str(recipe), "--out", str(out), "--dry-run", "--set", "quality.filters=[c4]"])
    assert shown.exit_code == 0, shown.output
    assert "5 of 7 stages would run" in shown.output and "settings changed" in shown.output
    assert _finished_at(out) == after  # a dry run changes nothing

    # 4. And the run does exactly that.
    changed = run_build(load_recipe(recipe, ["quality.filters=[c4]"]), str(out))
    final = _finished_at(out)
    assert [s["skipped"] for s in changed["stages"]] == [True, True] + [False] * 5
    assert {s: final[s] for s in STAGES[:2]} == {s: after[s] for s in STAGES[:2]}
    assert all(final[s] != after[s] for s in STAGES[2:])

    # 5. Nothing left to do.
    idle = runner.invoke(app, ["run", str(recipe), "--out", str(out), "--dry-run", "--set", "quality.filters=[c4]"])
    assert idle.exit_code == 0 and "0 of 7 stages would run" in idle.output, idle.output


def test_dry_run_names_missing_input_and_exits_2(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: dry\nstages: [ingest, langid]\ningest:\n  paths: [{tmp_path / 'absent'}]\n")
    result = runner.invoke(app, ["run", str(recipe), "--out", str(tmp_path / "out"), "--dry-run"])
    assert result.exit_code == 2, result.output
    assert "fail" in result.output and "absent" in result.output
    assert not (tmp_path / "out").exists()


def test_retries_crashes_but_not_bad_input(prefect_server) -> None:
    attempts = {"crash": 0, "input": 0}

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=_retry_unless_input_error, cache_policy=None)
    def flaky(kind: str) -> str:
        attempts[kind] += 1
        if kind == "crash" and attempts[kind] < 2:
            raise OSError("No space left on device")
        if kind == "input":
            raise StageInputError("x.parquet: not a document dataset")
        return "ok"

    @flow
    def both() -> tuple[str, str]:
        crash = flaky("crash")
        bad = flaky("input", return_state=True)
        return crash, type(bad.result(raise_on_failure=False)).__name__

    assert both() == ("ok", "StageInputError")
    assert attempts == {"crash": 2, "input": 1}


def test_period_labels_and_earlier_builds(tmp_path: Path) -> None:
    when = datetime(2026, 12, 31, 23, 30, tzinfo=timezone.utc)
    assert period_label("day", when) == "2026-12-31"
    assert period_label("week", when) == "2026-W53"
    assert period_label("week", datetime(2027, 1, 4, tzinfo=timezone.utc)) == "2027-W01"
    assert period_label("month", when) == "2026-12"
    for name, finished in [("2026-W47", True), ("2026-W48", False), ("2026-W49", True), ("2026-W50", True), ("notes", True)]:
        (tmp_path / name / "dedup-minhash").mkdir(parents=True)
        if finished:
            (tmp_path / name / "dedup-minhash" / "_SUCCESS").write_text("{}")
    assert [d.name for d in earlier_builds(tmp_path, "week", "2026-W50")] == ["2026-W47", "2026-W49"]

    recipe = tmp_path / "weekly.yaml"
    recipe.write_text("stages: [ingest, dedup-minhash]\nincremental:\n  period: week\n  run: 2026-W50\n")
    resolved, out, earlier = resolve_period(load_recipe(recipe), tmp_path)
    assert out == tmp_path / "2026-W50" and len(earlier) == 2
    assert resolved.dedup.reference == [str(tmp_path / "2026-W47" / "dedup-minhash"), str(tmp_path / "2026-W49" / "dedup-minhash")]

    with pytest.raises(Exception, match="does not name a week"):
        resolve_period(load_recipe(recipe, ["incremental.run=2026-12-01"]), tmp_path)


PARAGRAPHS = [
    "The river rises in the northern hills and runs for two hundred miles through farmland, small towns "
    "and finally the old port city, where it meets the sea in a wide and muddy estuary full of birds.",
    "Bread is made from flour, water, salt and yeast; the dough is kneaded, left to rise for several hours, "
    "shaped into loaves and baked in a hot oven until the crust is brown and sounds hollow when tapped.",
    "A lighthouse keeper once lived alone on the rock, trimming the wick every evening, writing the weather "
    "in a thick logbook and rowing to the mainland once a month for coffee, letters and newspapers.",
    "Chess openings are sequences of moves studied for centuries; players learn the main lines, the traps "
    "to avoid and the plans that follow, so that the middle game begins from a position they understand.",
]


def _week_corpus(root: Path, texts: list[str]) -> Path:
    root.mkdir(parents=True)
    with open(root / "docs.jsonl", "w") as handle:
        for i, text in enumerate(texts):
            handle.write(json.dumps({"id": f"{root.name}-{i}", "text": text}) + "\n")
    return root


def test_weekly_builds_drop_what_an_earlier_week_kept(spark, prefect_server, tmp_path: Path) -> None:
    week1 = _week_corpus(tmp_path / "w1", PARAGRAPHS[:3])
    week2 = _week_corpus(tmp_path / "w2", PARAGRAPHS[1:])  # two pages seen last week, one new
    recipe = tmp_path / "weekly.yaml"
    recipe.write_text(
        "name: weekly\nstages: [ingest, dedup-minhash]\nincremental:\n  period: week\n"
        "orchestration:\n  cron: '0 3 * * 1'\n  retries: 0\n"
    )
    root = tmp_path / "builds"
    first = runner.invoke(app, ["run", str(recipe), "--out", str(root), "--set", "incremental.run=2026-W48", "--set", f"ingest.paths=[{week1}]"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["run", str(recipe), "--out", str(root), "--set", "incremental.run=2026-W49", "--set", f"ingest.paths=[{week2}]"])
    assert second.exit_code == 0, second.output

    stats1 = json.loads((root / "2026-W48" / "dedup-minhash" / "_stats.json").read_text())
    stats2 = json.loads((root / "2026-W49" / "dedup-minhash" / "_stats.json").read_text())
    assert stats1["docs_out"] == 3 and stats1["config"]["reference"] == []
    assert stats2["config"]["reference"] == [str((root / "2026-W48" / "dedup-minhash").resolve())]
    assert stats2["docs_in"] == 3 and stats2["docs_out"] == 1
    assert stats2["dropped"]["dedup_minhash:seen_before"]["docs"] == 2

    # The same week again resumes (here: everything is current) instead of starting over.
    again = runner.invoke(app, ["run", str(recipe), "--out", str(root), "--set", "incremental.run=2026-W49", "--dry-run", "--set", f"ingest.paths=[{week2}]"])
    assert again.exit_code == 0 and "0 of 2 stages would run" in again.output, again.output


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def test_serve_registers_a_scheduled_deployment_that_runs(prefect_server, corpus: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "served.yaml"
    recipe.write_text(
        f"name: served\nstages: [ingest]\ningest:\n  paths: [{corpus}]\n"
        "spark:\n  master: local[1]\n  driver_memory: 1g\n  log_level: INFO\n"
    )
    out = tmp_path / "served-out"
    env = {**os.environ, "PREFECT_API_URL": _api_url(), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    cli = [sys.executable, "-c", "from flows.cli import main; main()"]
    server = subprocess.Popen(
        [*cli, "serve", str(recipe), "--cron", "0 3 * * 1", "--timezone", "Europe/Berlin", "--out", str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        with get_client(sync_client=True) as client:
            deployment = None
            deadline = time.time() + 90
            while deployment is None and time.time() < deadline:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                try:
                    deployment = client.read_deployment_by_name("corpusforge-build/served")
                except Exception:
                    time.sleep(0.5)
            assert deployment is not None, "serve registered no deployment"
            [schedule] = deployment.schedules
            assert schedule.schedule.cron == "0 3 * * 1" and schedule.schedule.timezone == "Europe/Berlin"
            assert schedule.active
            assert deployment.parameters["out_dir"] == str(out.resolve())
            assert deployment.parameters["recipe"]["ingest"]["paths"] == [str(corpus)]

            from prefect.deployments import run_deployment

            flow_run = run_deployment("corpusforge-build/served", timeout=240)
            assert flow_run.state is not None and flow_run.state.is_completed(), flow_run.state
            assert json.loads((out / "ingest" / "_stats.json").read_text())["docs_out"] > 0
            logs = _flow_logs(str(flow_run.id))
            assert any(m.startswith("ingest: ") and "documents kept" in m for m in logs), logs
            assert any(m.startswith("spark (ingest): ") and " INFO " in m for m in logs), logs  # Spark's own log
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
