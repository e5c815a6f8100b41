"""The generation stages: seed files, the partitioned runner (resume, skips, accounting),
self-instruct and dialogues with the real SmolLM2 model on CPU, their output through the
tokenize stage, and an OpenAI-compatible endpoint that fails some requests."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.errors import StageInputError
from pipelines.schema import CONVERSATION_SCHEMA, DOCUMENT_SCHEMA, validate_dataset
from pipelines.stage import REJECTS_DIR, STATS_FILE, SUCCESS_FILE
from synth.backends import Backend, Generation, GenerationConfig, SamplingParams, failed
from synth.dialogues import DialoguesConfig, DialoguesStage, excerpt, strip_speaker
from synth.runner import REJECT_SCHEMA, run_synth_stage
from synth.seeds import BUNDLED_SEEDS, read_seed_file
from synth.self_instruct import SelfInstructConfig, SelfInstructStage

WORDS = (
    "rainbow copper river violin glacier lantern orchard pepper compass harbor meadow falcon "
    "ember quartz tundra walnut cactus saddle beacon marble thistle canyon pebble willow"
).split()
VERBS = ["Describe", "Explain", "List three facts about", "Compare", "Summarize the history of", "Suggest uses for"]


def _pick(key: str, options: Sequence[str]) -> str:
    return options[int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(options)]


class ScriptedBackend(Backend):
    """A stand-in model whose reply depends only on the prompt and the request's seed, so the
    runner's logic (batches, resume, accounting) is tested without a model's cost."""

    name = "transformers"

    def __init__(self, fail_after_calls: int | None = None, error_every: int = 0) -> None:
        self.calls = 0
        self.requests = 0
        self.fail_after_calls = fail_after_calls
        self.error_every = error_every

    @property
    def model(self) -> str:
        return "scripted"

    def reply(self, prompt: str, seed: int) -> str:
        key = f"{seed}:{prompt}"
        if "example tasks" in prompt:
            start = int(prompt.split("Number them ")[1].split(" ")[0])
            # four content words of 24 per task: most tasks stay below ROUGE-L 0.7 to the pool
            items = [f"{start + i}. {_pick(key + str(i), VERBS)} the "
                     + ", ".join(_pick(f"{key}{c}{i}", WORDS) for c in "abc") + f" and {_pick(key + 'd' + str(i), WORDS)}."
                     for i in range(3)]
            return "\n".join(items + [f"{start + 3}. Draw a picture of a {_pick(key, WORDS)}."])
        if "classification task" in prompt:
            return "No"
        if "Write an Input" in prompt or "Write a Class label" in prompt:
            return f"Input: <noinput>\nOutput: The {_pick(key, WORDS)} is a fine example of careful work, as everyone agrees."
        if "curious person" in prompt or "asking it to write" in prompt:
            return f"What is special about the {_pick(key, WORDS)} and why do people like it so much?"
        if "next message" in prompt:
            return f"User: Thanks! Could you tell me more about the {_pick(key, WORDS)}, please?"
        return f"The {_pick(key, WORDS)} matters because it connects many everyday things we rarely notice at all."

    def generate(self, conversations: Sequence[Sequence[dict[str, str]]], params: SamplingParams, seed: int) -> list[Generation]:
        self.calls += 1
        if self.fail_after_calls is not None and self.calls > self.fail_after_calls:
            raise RuntimeError("injected crash")
        out = []
        for index, conversation in enumerate(conversations):
            self.requests += 1
            if self.error_every and self.requests % self.error_every == 0:
                out.append(failed("injected endpoint error"))
                continue
            text = self.reply(conversation[-1]["content"], seed + index)
            out.append(Generation(text, len(conversation[-1]["content"]) // 4, len(text) // 4, "stop"))
        return out


def factory(backend: Backend) -> Any:
    return lambda config: backend


def read_records(out: Path) -> list[dict[str, Any]]:
    validate_dataset(out, CONVERSATION_SCHEMA)
    rows: list[dict[str, Any]] = []
    for part in sorted(out.glob("part-*.parquet")):
        rows.extend(pq.read_table(part).to_pylist())
    return rows


SMALL_SI = dict(max_rounds=3, target_instructions=100, prompts_per_round=2, new_per_prompt=4)


# ---------------------------------------------------------------- seed files


def test_bundled_seed_file_parses_completely() -> None:
    seeds = read_seed_file(BUNDLED_SEEDS)
    assert len(seeds.tasks) == 175 and not seeds.skipped
    assert sum(t.is_classification for t in seeds.tasks) > 20
    assert all(t.instruction and t.id for t in seeds.tasks)


def test_malformed_seed_lines_are_skipped_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "seeds.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"instruction": "Name three rivers in Europe.", "instances": [{"input": "", "output": "Rhine"}]}),
                "{not json",
                json.dumps({"instruction": ""}),
                json.dumps(["a list"]),
                json.dumps({"instruction": "Name three rivers in Europe."}),
                json.dumps({"instruction": "Sort these numbers.", "instances": "nope"}),
                json.dumps({"instruction": "Is this review positive?", "is_classification": "yes"}),
                "# a comment",
                "",
                json.dumps({"instruction": "Translate 'good morning' into French.", "id": 7}),
            ]
        )
    )
    seeds = read_seed_file(path)
    assert [t.instruction for t in seeds.tasks] == ["Name three rivers in Europe.", "Translate 'good morning' into French."]
    assert seeds.tasks[1].id == "7" and seeds.tasks[0].instances[0].output == "Rhine"
    assert len(seeds.skipped) == 6
    assert seeds.skipped[0].startswith(f"{path}:2: not valid JSON")
    assert any(s.startswith(f"{path}:5: duplicate") for s in seeds.skipped)


@pytest.mark.parametrize("content", ["", "{broken\n[1]\n"])
def test_unusable_seed_file_is_an_error_naming_it(tmp_path: Path, content: str) -> None:
    path = tmp_path / "seeds.jsonl"
    path.write_text(content)
    with pytest.raises(StageInputError, match=str(path)):
        read_seed_file(path)
    with pytest.raises(StageInputError, match="cannot read"):
        read_seed_file(tmp_path / "missing.jsonl")


def test_bad_seed_file_stops_the_stage_before_any_model_loads(tmp_path: Path) -> None:
    path = tmp_path / "seeds.jsonl"
    path.write_text("{broken\n")
    loaded = []
    with pytest.raises(StageInputError, match="no usable seed task"):
        run_synth_stage(SelfInstructStage(), [path], tmp_path / "out", SelfInstructConfig(),
                        backend_factory=lambda c: loaded.append(c))
    assert not loaded and not (tmp_path / "out").exists()


# ---------------------------------------------------------------- runner with a scripted model


def test_self_instruct_output_contract_and_accounting(tmp_path: Path) -> None:
    out = tmp_path / "si"
    config = SelfInstructConfig(**SMALL_SI)
    result = run_synth_stage(SelfInstructStage(), [], out, config, backend_factory=factory(ScriptedBackend()))
    stats = json.loads((out / STATS_FILE).read_text())
    assert (out / SUCCESS_FILE).is_file() and not result.skipped
    records = read_records(out)
    rejects = pq.read_table(out / REJECTS_DIR).to_pylist()
    assert pq.read_schema(next((out / REJECTS_DIR).glob("*.parquet"))).names == REJECT_SCHEMA.names
    assert stats["docs_out"] == len(records) > 0
    assert stats["docs_in"] == len(records) + len(rejects)
    assert sum(v["docs"] for v in stats["dropped"].values()) == len(rejects)
    # every "Draw a picture" task hits the blacklist; the ROUGE-L pool grew round by round
    assert stats["dropped"]["instruction:blacklist"]["docs"] == stats["counts"]["prompts"]
    assert stats["partitions"] == {"total": 3, "resumed": 0}
    assert stats["pool"]["machine_tasks"] == stats["counts"]["accepted_instructions"]
    assert stats["generation"]["requests"] > 0 and stats["generation"]["completion_tokens_per_s"] > 0
    assert 0 < stats["acceptance"]["instructions"] < 1
    record = records[0]
    assert [m["role"] for m in record["messages"]] == ["user", "assistant"]
    meta = dict(record["metadata"])
    assert meta["model"] == "scripted" and meta["instruction"] in record["messages"][0]["content"]
    assert len(json.loads(meta["parent_tasks"])) == 8 and "example tasks" in meta["prompt"]
    assert float(meta["rouge_l_max"]) < 0.7 and meta["is_classification"] == "false"
    instructions = [dict(r["metadata"])["instruction"] for r in records]
    assert len(set(instructions)) == len(instructions)

    again = run_synth_stage(SelfInstructStage(), [], out, config, backend_factory=lambda c: pytest.fail("loaded a model"))
    assert again.skipped


def test_killed_self_instruct_resumes_and_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    config = SelfInstructConfig(**SMALL_SI)
    reference = tmp_path / "ref"
    run_synth_stage(SelfInstructStage(), [], reference, config, backend_factory=factory(ScriptedBackend()))

    out = tmp_path / "si"
    crashing = ScriptedBackend(fail_after_calls=4)  # round 0 takes 3 calls; round 1 dies midway
    with pytest.raises(RuntimeError, match="injected crash"):
        run_synth_stage(SelfInstructStage(), [], out, config, backend_factory=factory(crashing))
    assert not out.exists()
    state = tmp_path / ".si.synth-state"
    assert (state / "part-00000" / "partition.json").is_file() and not (state / "part-00001").exists()

    resumed = ScriptedBackend()
    result = run_synth_stage(SelfInstructStage(), [], out, config, backend_factory=factory(resumed))
    assert result.stats["partitions"] == {"total": 3, "resumed": 1}
    assert resumed.calls == 6  # rounds 1 and 2 only
    assert read_records(out) == read_records(reference)
    assert not state.exists()


def test_failed_requests_are_counted_skips_and_no_partition_is_lost(tmp_path: Path) -> None:
    out = tmp_path / "dlg"
    config = DialoguesConfig(num_dialogues=10, per_partition=4, sectors={"world": 1, "creation": 1, "materials": 0})
    result = run_synth_stage(DialoguesStage(), [], out, config, backend_factory=factory(ScriptedBackend(error_every=5)))
    stats = result.stats
    assert stats["partitions"]["total"] == 3
    assert stats["dropped"]["generation:error"]["docs"] >= 5
    assert stats["generation"]["failed_requests"] == stats["dropped"]["generation:error"]["docs"]
    records = read_records(out)
    assert 0 < len(records) < 10 and stats["counts"]["dialogues"] == 10
    for record in records:
        roles = [m["role"] for m in record["messages"]]
        assert roles[0] == "user" and roles[-1] == "assistant"
        assert all(a != b for a, b in zip(roles, roles[1:]))
        assert not record["messages"][1]["content"].startswith("User:")


def test_materials_come_from_the_corpus(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    text = ("Copper conducts heat and electricity very well. " * 20 + "\n\n") * 3
    rows = [{"id": f"d{i}", "url": f"https://example.org/{i}", "title": None, "text": text, "source": "t",
             "fetched_at": None, "lang": "en", "lang_score": 0.9, "annotations": None, "metadata": None} for i in range(3)]
    rows.append({**rows[0], "id": "short", "text": "too short"})
    pq.write_table(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), docs / "part-0.parquet")
    config = DialoguesConfig(num_dialogues=4, per_partition=4, sectors={"materials": 1}, min_turns=1, max_turns=1,
                             material_chars=400)
    result = run_synth_stage(DialoguesStage(), [docs], tmp_path / "out", config, backend_factory=factory(ScriptedBackend()))
    records = read_records(tmp_path / "out")
    assert result.stats["materials"]["documents_sampled"] == 3 and len(records) == 4
    for record in records:
        meta = dict(record["metadata"])
        assert meta["sector"] == "materials" and meta["material_id"] in {"d0", "d1", "d2"}
        opening = record["messages"][0]["content"]
        assert "Copper conducts heat" in opening and len(opening) < 600

    with pytest.raises(StageInputError, match="no documents"):
        run_synth_stage(DialoguesStage(), [], tmp_path / "none", config, backend_factory=factory(ScriptedBackend()))


def test_eval_set_leaks_are_dropped(tmp_path: Path) -> None:
    eval_set = tmp_path / "eval.jsonl"
    # the scripted assistant's reply template, as an evaluation item that must not leak
    eval_set.write_text(json.dumps({"answer": "matters because it connects many everyday things we rarely notice at all"}) + "\n")
    config = DialoguesConfig.model_validate(
        {"num_dialogues": 3, "per_partition": 3, "sectors": {"world": 1}, "min_turns": 1, "max_turns": 1,
         "filters": {"decontamination": {"eval_sets": [str(eval_set)]}}}
    )
    result = run_synth_stage(DialoguesStage(), [], tmp_path / "out", config, backend_factory=factory(ScriptedBackend()))
    assert result.stats["docs_out"] == 0
    assert result.stats["dropped"]["decontam:eval_overlap"]["docs"] == 3
    assert result.stats["decontamination"]["eval_items"] == {"eval.jsonl": 1}


def test_missing_eval_set_stops_the_stage_before_any_model_loads(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.jsonl"
    config = SelfInstructConfig.model_validate({"filters": {"decontamination": {"eval_sets": [str(missing)]}}})
    with pytest.raises(StageInputError, match=f"{missing}: evaluation set not found"):
        run_synth_stage(SelfInstructStage(), [], tmp_path / "out", config,
                        backend_factory=lambda c: pytest.fail("loaded a model"))
    assert not (tmp_path / "out").exists()


def test_helpers() -> None:
    assert excerpt("a b c d e f", 5) == "a b c"
    assert excerpt("short", 100) == "short"
    assert excerpt("para one.\n\npara two is longer", 15) == "para one."
    assert strip_speaker("User: hello") == "hello" and strip_speaker("hello") == "hello"
    with pytest.raises(ValueError, match="min_turns"):
        DialoguesConfig(min_turns=3, max_turns=2)


# ---------------------------------------------------------------- the real model (SmolLM2-135M on CPU)

TINY_GENERATION = {"max_new_tokens": 96, "batch_size": 8, "seed": 3}


@pytest.fixture(scope="module")
def smollm2() -> Any:
    from synth.backends.hf import TransformersBackend

    backend = TransformersBackend(GenerationConfig(**TINY_GENERATION))
    backend.close = lambda: None  # shared by the tests of this module
    return backend


def test_self_instruct_with_the_real_model(smollm2: Any, tmp_path: Path) -> None:
    config = SelfInstructConfig.model_validate(
        {"max_rounds": 1, "prompts_per_round": 2, "new_per_prompt": 3, "generation": TINY_GENERATION}
    )
    out = tmp_path / "si"
    result = run_synth_stage(SelfInstructStage(), [], out, config, backend_factory=factory(smollm2))
    stats = result.stats
    records = read_records(out)
    rejects = pq.read_table(out / REJECTS_DIR).to_pylist()
    assert stats["docs_in"] == len(records) + len(rejects) > 0
    assert stats["generation"]["model"] == "SmolLM2-135M-Instruct"
    assert stats["generation"]["completion_tokens"] > 50 and stats["generation"]["prompt_tokens_per_s"] > 0
    known = ("instruction:", "rouge:", "langid:", "gopher_repetition:", "refusal:", "turn:", "parse:", "instance:",
             "generation:", "decontam:")
    assert all(r["reason"].startswith(known) and r["detail"] for r in rejects)
    assert stats["counts"]["prompts"] == 2
    for record in records:
        meta = dict(record["metadata"])
        assert meta["model"] == "SmolLM2-135M-Instruct" and meta["backend"] == "transformers"
        assert record["messages"][0]["content"].startswith(meta["instruction"])
        assert record["messages"][1]["content"].strip()


def test_dialogues_with_the_real_model_then_sft_shards(smollm2: Any, spark, tmp_path: Path) -> None:
    from pipelines.shard_format import read_manifest
    from pipelines.shards import ShardDataset
    from pipelines.stage import run_stage
    from pipelines.tokenize import TokenizeConfig, TokenizeStage

    config = DialoguesConfig.model_validate(
        # long replies cut at max_new_tokens are the 135M model's usual drop; with this seed some survive
        {"num_dialogues": 4, "per_partition": 4, "min_turns": 2, "max_turns": 2, "on_bad_turn": "truncate",
         "sectors": {"world": 1, "creation": 1}, "generation": {**TINY_GENERATION, "seed": 4, "max_new_tokens": 128},
         "filters": {"lang": None}}  # a 135M model drifts; the language check has its own tests
    )
    out = tmp_path / "dlg"
    result = run_synth_stage(DialoguesStage(), [], out, config, backend_factory=factory(smollm2))
    records = read_records(out)
    assert result.stats["counts"]["dialogues"] == 4
    assert result.stats["docs_in"] == len(records) + sum(v["docs"] for v in result.stats["dropped"].values())
    for record in records:
        roles = [m["role"] for m in record["messages"]]
        assert roles[0] == "user" and roles[-1] == "assistant" and all(a != b for a, b in zip(roles, roles[1:]))
        assert all(m["content"].strip() for m in record["messages"])

    if not records:  # the model dropped every dialogue: nothing to tokenize (stats above still checked)
        pytest.skip("no dialogue survived the filters with this seed")
    shards = tmp_path / "shards"
    run_stage(TokenizeStage(), [out], shards, TokenizeConfig(), lambda: spark)
    manifest = read_manifest(shards)
    assert manifest.has_loss_mask and manifest.totals["docs"] == len(records)
    sample = next(iter(ShardDataset(shards)))
    assert 0 < sum(sample["loss_mask"]) < len(sample["loss_mask"])


# ---------------------------------------------------------------- an OpenAI-compatible endpoint


class FlakyChatServer(BaseHTTPRequestHandler):
    hits = 0
    lock = threading.Lock()

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with FlakyChatServer.lock:
            FlakyChatServer.hits += 1
            hit = FlakyChatServer.hits
        prompt = body["messages"][-1]["content"]
        if "volcanoes" in prompt or "haiku" in prompt:  # always broken for these topics
            self.send_response(500)
            self.end_headers()
            return
        text = ScriptedBackend().reply(prompt, body.get("seed", 0))
        payload = json.dumps({"choices": [{"message": {"content": text}, "finish_reason": "stop"}],
                              "usage": {"prompt_tokens": 10, "completion_tokens": 12 + hit % 2}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        payload = b'{"data": [{"id": "tiny"}]}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def test_dialogues_through_an_openai_compatible_endpoint(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyChatServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = DialoguesConfig.model_validate(
            {"num_dialogues": 12, "per_partition": 6, "min_turns": 1, "max_turns": 2, "sectors": {"world": 1, "creation": 1},
             "topics": {"subjects": ["volcanoes", "bees", "trains"], "forms": ["a haiku", "a short poem"]},
             "generation": {"backend": "openai", "model": "tiny",
                            "openai": {"base_url": f"http://127.0.0.1:{server.server_port}/v1", "max_retries": 1,
                                       "backoff_s": 0.01, "timeout_s": 5}}}
        )
        result = run_synth_stage(DialoguesStage(), [], tmp_path / "out", config)
    finally:
        server.shutdown()
    stats = result.stats
    assert stats["generation"]["backend"] == "openai" and stats["generation"]["model"] == "tiny"
    assert stats["dropped"]["generation:error"]["docs"] > 0
    records = read_records(tmp_path / "out")
    assert records and all("volcanoes" not in dict(r["metadata"]).get("subject", "") for r in records)
    assert stats["partitions"]["total"] == 2
