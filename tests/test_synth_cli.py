"""The generation stages from the command line and in a Prefect build: `corpusforge stage
self-instruct|dialogues`, `corpusforge run` of a synthetic recipe down to SFT shards, and
the clear errors a user gets for a bad seed file or an endpoint that is down. The model is
a scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipelines.errors import CorpusforgeError
from tests.test_synth_stages import FlakyChatServer

runner = CliRunner()


@pytest.fixture
def endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyChatServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def openai_sets(section: str, url: str) -> list[str]:
    values = {
        "backend": "openai",
        "model": "tiny",
        "openai.base_url": url,
        "openai.max_retries": 1,
        "openai.backoff_s": 0.01,
        "openai.timeout_s": 5,
    }
    return [arg for key, value in values.items() for arg in ("--set", f"{section}.generation.{key}={value}")]


def test_stage_self_instruct_with_a_seed_file(endpoint: str, tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    tasks = [
        {"instruction": "Name three rivers that flow through Germany.", "instances": [{"input": "", "output": "Rhine, Elbe, Danube"}]},
        {"instruction": "Classify the sentiment of the review.", "is_classification": True,
         "instances": [{"input": "Loved it.", "output": "positive"}]},
        {"instruction": "Translate the sentence into French.", "instances": [{"input": "Good night.", "output": "Bonne nuit."}]},
    ]
    seeds.write_text("\n".join(json.dumps(t) for t in tasks) + "\n{broken line\n")
    out = tmp_path / "si"
    result = runner.invoke(
        app,
        ["stage", "self-instruct", "--in", str(seeds), "--out", str(out),
         "--set", "self_instruct.max_rounds=2", "--set", "self_instruct.prompts_per_round=2",
         *openai_sets("self_instruct", endpoint)],
    )
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "_stats.json").read_text())
    assert stats["seeds"]["tasks"] == 3 and stats["seeds"]["skipped"] == 1
    assert stats["seeds"]["skipped_lines"][0].startswith(f"{seeds}:4: not valid JSON")
    assert stats["partitions"]["total"] == 2 and stats["docs_out"] > 0
    assert stats["config"]["max_rounds"] == 2 and stats["generation"]["backend"] == "openai"
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == stats["docs_out"]
    assert f"output: {out.resolve()}" in result.output


def test_run_a_synthetic_recipe_to_sft_shards_and_resume(
    endpoint: str, spark, prefect_server, tmp_path: Path
) -> None:
    recipe = tmp_path / "synthetic.yaml"
    generation = {"backend": "openai", "model": "tiny",
                  "openai": {"base_url": endpoint, "max_retries": 1, "backoff_s": 0.01, "timeout_s": 5}}
    recipe.write_text(
        json.dumps(  # JSON is YAML
            {
                "name": "synthetic-test",
                "stages": ["self-instruct", "dialogues", "tokenize"],
                "self_instruct": {"max_rounds": 1, "prompts_per_round": 2, "generation": generation},
                "dialogues": {"num_dialogues": 4, "per_partition": 2, "sectors": {"world": 1}, "min_turns": 1,
                              "max_turns": 2, "topics": {"subjects": ["bees", "trains"]}, "generation": generation},
            }
        )
    )
    out = tmp_path / "build"
    first = runner.invoke(app, ["run", str(recipe), "--out", str(out)])
    assert first.exit_code == 0, first.output
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == ["self-instruct", "dialogues", "tokenize"]
    kept = {s["stage"]: s["docs_out"] for s in summary["stages"]}
    assert kept["self-instruct"] > 0 and kept["dialogues"] > 0
    manifest = json.loads((out / "tokenize" / "manifest.json").read_text())
    # tokenize read both generation outputs: every kept conversation became a training example
    assert manifest["totals"]["docs"] == kept["self-instruct"] + kept["dialogues"]

    again = runner.invoke(app, ["run", str(recipe), "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert all(s["skipped"] for s in json.loads((out / "report" / "summary.json").read_text())["stages"])

    changed = runner.invoke(app, ["run", str(recipe), "--out", str(out), "--set", "dialogues.num_dialogues=2"])
    assert changed.exit_code == 0, changed.output
    ran = {s["stage"]: s["skipped"] for s in json.loads((out / "report" / "summary.json").read_text())["stages"]}
    assert ran == {"self-instruct": True, "dialogues": False, "tokenize": False}


def test_bad_seed_file_is_a_clear_error(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("not json at all\n")
    result = runner.invoke(app, ["stage", "self-instruct", "--in", str(seeds), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert isinstance(result.exception, CorpusforgeError)
    assert f"{seeds}: no usable seed task ({seeds}:1: not valid JSON" in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_endpoint_that_is_down_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe is closed
    result = runner.invoke(
        app, ["stage", "dialogues", "--out", str(tmp_path / "out"), *openai_sets("dialogues", f"http://127.0.0.1:{port}/v1")]
    )
    assert isinstance(result.exception, CorpusforgeError)
    assert "cannot reach the OpenAI-compatible endpoint" in str(result.exception)
    assert not (tmp_path / "out").exists()


class SlowChatServer(FlakyChatServer):
    """Replies like FlakyChatServer, a little later: a partition takes long enough to be killed in."""

    def do_POST(self) -> None:
        import time

        time.sleep(0.15)
        super().do_POST()


def test_kill_9_mid_stage_then_rerun_resumes_and_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowChatServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/v1"
    sets = ["--set", "dialogues.num_dialogues=12", "--set", "dialogues.per_partition=3",
            "--set", "dialogues.sectors={world: 1, creation: 1}", *openai_sets("dialogues", url)]

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "flows.cli", "stage", "dialogues", "--out", str(out), *sets]

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    try:
        reference = tmp_path / "reference"
        subprocess.run(command(reference), env=env, check=True, capture_output=True, timeout=120)

        out = tmp_path / "dlg"
        state = tmp_path / ".dlg.synth-state"
        victim = subprocess.Popen(command(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while not (state / "part-00000" / "partition.json").is_file():
            assert victim.poll() is None and time.time() < deadline, "the stage ended before its first partition"
            time.sleep(0.02)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        assert not out.exists()  # nothing that looks finished
        finished = sorted(p.name for p in state.glob("part-*"))
        assert finished and "part-00003" not in finished

        rerun = subprocess.run(command(out), env=env, check=True, capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    stats = json.loads((out / "_stats.json").read_text())
    assert stats["partitions"]["total"] == 4 and stats["partitions"]["resumed"] == len(finished)
    assert "resumed" in rerun.stderr
    assert pq.read_table(out).to_pylist() == pq.read_table(reference).to_pylist()
    assert not state.exists()
