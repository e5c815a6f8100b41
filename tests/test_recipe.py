"""Recipe validation: every error names file, line and dotted key; --set overrides any key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows.recipe import RecipeError, apply_overrides, default_recipe, load_recipe

RECIPES = sorted((Path(__file__).parent.parent / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipes_are_valid(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.stages


def test_shipped_recipes_together_cover_every_stage() -> None:
    """The demo builds from local files; the web recipe crawls (the demo needs no network); the
    synthetic recipe generates SFT data."""
    from flows.registry import STAGES, is_synth

    root = Path(__file__).parent.parent / "recipes"
    demo = load_recipe(root / "demo.yaml").stages
    web = load_recipe(root / "web-crawl.yaml").stages
    synthetic = load_recipe(root / "synthetic.yaml").stages
    corpus = [s for s in STAGES if not is_synth(s)]
    assert demo == [s for s in corpus if s not in ("crawl", "ingest-warc")]
    assert web == [s for s in corpus if s != "ingest"]
    assert synthetic == ["self-instruct", "dialogues", "tokenize"]
    assert set(demo) | set(web) | set(synthetic) == set(STAGES)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_unknown_key_and_wrong_type_give_file_line_and_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: t\n"
        "ingest:\n"
        "  paths: [a]\n"
        "  max_file_bytes: lots\n"
        "  colour: blue\n"
        "spark:\n"
        "  shuffle_partitions: 0\n",
    )
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert f"{path}:4: ingest.max_file_bytes: Input should be a valid integer" in message
    assert "(got 'lots')" in message
    assert f"{path}:5: ingest.colour: unknown key" in message
    assert f"{path}:7: spark.shuffle_partitions: Input should be greater than or equal to 1" in message


def test_list_items_are_located(tmp_path: Path) -> None:
    path = write(tmp_path, "ingest:\n  formats:\n    - html\n    - pdf\n")
    with pytest.raises(RecipeError, match=rf"{path}:4: ingest.formats\[1\]: Input should be"):
        load_recipe(path)


def test_bad_yaml_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"r\.yaml:3: not valid YAML \(expected ',' or '\]'.*started on line 2"):
        load_recipe(write(tmp_path, "name: a\nstages: [ingest\n"))
    with pytest.raises(RecipeError, match="a recipe is a YAML mapping"):
        load_recipe(write(tmp_path, "- just\n- a list\n"))
    with pytest.raises(RecipeError, match="cannot read recipe"):
        load_recipe(tmp_path / "nope.yaml")


def test_stage_list_is_checked(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="unknown stage.*dedup-fuzzy"):
        load_recipe(write(tmp_path, "stages: [ingest, dedup-fuzzy]\n"))
    with pytest.raises(RecipeError, match="listed twice"):
        load_recipe(write(tmp_path, "stages: [ingest, ingest]\n"))
    with pytest.raises(RecipeError, match="at least 1 item"):
        load_recipe(write(tmp_path, "stages: []\n"))


def test_set_overrides_parse_values_as_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "ingest:\n  paths: [a]\n")
    recipe = load_recipe(
        path,
        [
            "ingest.max_file_bytes=500",
            "ingest.formats=[html, jsonl]",
            "spark.master=spark://10.0.0.5:7077",
            "spark.conf.spark.executor.cores=2",
            "ingest.html_main_content=false",
        ],
    )
    assert recipe.ingest.max_file_bytes == 500
    assert recipe.ingest.formats == ["html", "jsonl"]
    assert recipe.spark.master == "spark://10.0.0.5:7077"
    assert recipe.spark.conf == {"spark.executor.cores": "2"}
    assert recipe.ingest.html_main_content is False


def test_set_errors_are_attributed_to_set(tmp_path: Path) -> None:
    path = write(tmp_path, "ingest:\n  paths: [a]\n")
    with pytest.raises(RecipeError, match=r"--set: ingest.max_file_bytes: Input should be a valid integer"):
        load_recipe(path, ["ingest.max_file_bytes=abc"])
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        load_recipe(path, ["ingest.max_file_bytes"])
    with pytest.raises(RecipeError, match="'name' is a value, not a section"):
        apply_overrides({"name": "x"}, ["name.sub=1"])


def test_defaults_are_what_a_stage_alone_uses() -> None:
    recipe = default_recipe(["ingest.source=mine"])
    assert recipe.ingest.source == "mine"
    assert recipe.ingest.formats == ["text", "html", "jsonl", "parquet"]
    assert recipe.spark.master == "local[*]"


def test_validate_command_exit_codes(tmp_path: Path) -> None:
    good = Path(__file__).parent.parent / "recipes" / "demo.yaml"
    ok = subprocess.run([sys.executable, "-m", "flows.cli", "validate", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "is valid" in ok.stderr
    bad = write(tmp_path, "ingest:\n  bogus: 1\n")
    failed = subprocess.run([sys.executable, "-m", "flows.cli", "validate", str(bad)], capture_output=True, text=True)
    assert failed.returncode == 2
    assert f"{bad}:2: ingest.bogus: unknown key" in failed.stderr
    assert "Traceback" not in failed.stderr
