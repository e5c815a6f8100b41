"""The command line, in process: `stage`, `run` (a real Prefect flow), help texts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.registry import STAGES
from tests.conftest import EXPECTED_KEPT

runner = CliRunner()


@pytest.mark.parametrize("command", [[], ["run"], ["stage"], ["validate"], ["stages"]])
def test_help_texts(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_stages_lists_every_stage() -> None:
    result = runner.invoke(app, ["stages"])
    assert result.exit_code == 0
    for name in STAGES:
        assert name in result.output


def test_stage_alone_uses_section_defaults_and_set(spark, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "docs"
    result = runner.invoke(app, ["stage", "ingest", "--in", str(corpus), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "_stats.json").read_text())["docs_out"] == EXPECTED_KEPT
    assert f"output: {out.resolve()}" in result.output

    result = runner.invoke(
        app, ["stage", "ingest", "--in", str(corpus), "--out", str(out), "--set", "ingest.formats=[html]"]
    )
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "_stats.json").read_text())
    assert stats["docs_out"] == 2 and stats["config"]["formats"] == ["html"]


def test_run_builds_with_prefect_and_resumes(spark, prefect_server, corpus: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "build.yaml"
    recipe.write_text(f"name: tiny\nstages: [ingest]\ningest:\n  paths: [{corpus}]\n  source: tests\n")
    out = tmp_path / "build"
    first = runner.invoke(app, ["run", str(recipe), "--out", str(out)])
    assert first.exit_code == 0, first.output
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == ["ingest"]
    assert summary["stages"][0]["docs_out"] == EXPECTED_KEPT and not summary["stages"][0]["skipped"]
    assert "| ingest | ran |" in (out / "report" / "summary.md").read_text()
    assert f"report:  {out.resolve() / 'report' / 'index.html'}" in first.output

    again = runner.invoke(app, ["run", str(recipe), "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert json.loads((out / "report" / "summary.json").read_text())["stages"][0]["skipped"] is True

    changed = runner.invoke(app, ["run", str(recipe), "--out", str(out), "--set", "ingest.source=other"])
    assert changed.exit_code == 0, changed.output
    stage_out = json.loads((out / "report" / "summary.json").read_text())["stages"][0]
    assert stage_out["skipped"] is False


def test_run_reports_recipe_errors(tmp_path: Path) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("ingest:\n  max_file_bytes: -5\n")
    result = runner.invoke(app, ["run", str(recipe)])
    assert result.exit_code != 0
    assert "ingest.max_file_bytes" in str(result.exception)
