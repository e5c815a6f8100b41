"""Stage ``tokenize``: documents or conversations -> token shards + ``manifest.json``.

Input: document datasets (the output of any corpus stage) and/or conversation datasets
(``id, messages, source, metadata``; see ``docs/schema.md``). A conversation is rendered
with the tokenizer's chat template; the assistant's characters become the loss mask
(:mod:`pipelines.tokenizer`). Every document ends with the EOS token.

Output (format in :mod:`pipelines.shard_format`): ``shard-<partition>-<n>.arrow`` files of
about ``shard_tokens`` tokens each, written by the Spark tasks themselves (one writer per
task, a shard renamed into place only when complete), then ``manifest.json`` listing them,
then the stage contract's ``_stats.json`` and ``_SUCCESS``. Dropped records (empty,
oversize, binary, conversations the template cannot render) go to ``_rejects/`` as in
every stage.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pyarrow as pa
from pydantic import BaseModel, Field

from pipelines.docstage import DocumentStage, DocumentStageConfig, Rows, guard, spread_over_cores
from pipelines.schema import (
    BYTES_IN,
    CONVERSATION_SCHEMA,
    DROP_DETAIL,
    DROP_REASON,
    WORKING_SCHEMA,
    dataset_files,
    validate_dataset,
)
from pipelines.shard_format import Manifest, ShardInfo, ShardWriter, token_type, write_manifest
from pipelines.stage import hash_json, union_all
from pipelines.storage import location, open_binary, remove_tree
from pipelines.tokenizer import tokenizer_files

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

CHAT_FORMAT = "chat"
SPANS_KEY = "assistant_spans"
# What each task reports per shard it wrote (the manifest's entries).
SHARD_ROW_SCHEMA = pa.schema(
    [("path", pa.string()), ("docs", pa.int64()), ("tokens", pa.int64()), ("bytes", pa.int64()), ("sha256", pa.string())]
)


class TokenizeConfig(DocumentStageConfig):
    """Recipe section ``tokenize``."""

    tokenizer: str | None = Field(
        None,
        description="a directory with tokenizer.json, a tokenizer.json, or a .gguf file; "
        "default: the bundled SmolLM2-135M-Instruct tokenizer",
    )
    eos_token: str | None = Field(None, description="token appended to every document; default: the tokenizer's EOS")
    shard_tokens: int = Field(32 * 1024 * 1024, ge=1, description="tokens per shard (a task's last shard is smaller)")


def is_conversation_dataset(path: Path) -> bool:
    import pyarrow.parquet as pq

    with open_binary(dataset_files(path)[0]) as handle:
        return "messages" in pq.read_schema(handle).names


def conversation_runner(shipped: Any, max_doc_bytes: int) -> Any:
    """``mapInArrow`` function: conversations -> working rows holding the rendered chat.

    ``shipped``: a broadcast of :func:`~pipelines.tokenizer.tokenizer_files`."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pipelines.tokenizer import ChatTemplateError, chat_tokenizer, render_conversation, unpacked_tokenizer

        tokenizer = chat_tokenizer(unpacked_tokenizer(shipped.value))
        for batch in batches:
            rows: Rows = []
            for conversation in batch.to_pylist():
                metadata = dict(conversation.get("metadata") or [])
                row: dict[str, Any] = {name: None for name in WORKING_SCHEMA.names}
                row.update(id=conversation["id"], source=conversation["source"], text="")
                messages = conversation.get("messages") or []
                try:
                    bad_role = next((m for m in messages if m.get("role") not in ("system", "user", "assistant")), None)
                    if bad_role is not None:
                        raise ChatTemplateError(f"unknown role {bad_role.get('role')!r}")
                    if any(m.get("content") is None for m in messages):
                        raise ChatTemplateError("a message without content")
                    text, spans = render_conversation(tokenizer, messages)
                except ChatTemplateError as exc:
                    row[DROP_REASON], row[DROP_DETAIL] = "tokenize:bad_conversation", f"id={row['id']}: {exc}"
                else:
                    metadata.update({"format": CHAT_FORMAT, SPANS_KEY: json.dumps(spans)})
                    row["text"] = text
                    bad = guard(text, max_doc_bytes)
                    if bad:
                        row[DROP_REASON], row[DROP_DETAIL] = bad[0], f"id={row['id']}: {bad[1]}"
                        if bad[0] == "doc_too_large":
                            row["text"] = ""
                row["metadata"] = metadata
                row[BYTES_IN] = len(row["text"].encode("utf-8", "surrogatepass"))
                rows.append(row)
            yield pa.RecordBatch.from_pylist(rows, schema=WORKING_SCHEMA)

    return run


def shard_writer_task(
    shipped: Any, output: str, token_dtype: pa.DataType, with_loss_mask: bool, eos_id: int, shard_tokens: int
) -> Any:
    """``mapInArrow`` function run by each task: tokenize its documents into its own shards
    under ``output`` (a path or URI the executors can write)."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        from pipelines.tokenizer import fast_tokenizer, mask_from_spans, unpacked_tokenizer

        tokenizer = fast_tokenizer(unpacked_tokenizer(shipped.value))
        partition = TaskContext.get().partitionId()
        writer: ShardWriter | None = None
        sequence = 0

        def finished(shard: ShardInfo) -> pa.RecordBatch:
            return pa.RecordBatch.from_pylist([vars(shard)], schema=SHARD_ROW_SCHEMA)

        try:
            for batch in batches:
                ids = batch.column("id").to_pylist()
                texts = batch.column("text").to_pylist()
                metadata = batch.column("metadata").to_pylist()
                encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
                for doc_id, encoding, meta in zip(ids, encodings, metadata):
                    tokens = encoding.ids + [eos_id]
                    mask = None
                    spans = dict(meta or []).get(SPANS_KEY)
                    if spans is not None:
                        mask = mask_from_spans(encoding.offsets, json.loads(spans)) + [0]
                    if writer is None:
                        name = f"shard-{partition:05d}-{sequence:04d}.arrow"
                        writer = ShardWriter(location(output) / name, token_dtype, with_loss_mask)
                    writer.add(doc_id, tokens, mask)
                    if writer.tokens >= shard_tokens:
                        yield finished(writer.close())
                        writer, sequence = None, sequence + 1
            if writer is not None:
                yield finished(writer.close())
                writer = None
        finally:
            if writer is not None:
                writer.abort()

    return run


class TokenizeStage(DocumentStage):
    name = "tokenize"
    summary = "documents / conversations -> token shards (Arrow IPC) + manifest, loss masks for chats"
    Config = TokenizeConfig
    code_modules = ("pipelines.tokenizer", "pipelines.shard_format")

    def batch_processor(self, config: BaseModel) -> Any:
        return lambda rows: None  # documents only pass the guards here; tokens come in write_kept

    def fingerprint_extras(self, config: BaseModel) -> dict[str, Any]:
        """The tokenizer's content: a changed tokenizer.json under the same path retokenizes.

        ``run_stage`` calls this before ``transform``, which uses the tokenizer resolved here
        instead of finding and hashing it a second time.
        """
        from pipelines.tokenizer import resolve_tokenizer

        assert isinstance(config, TokenizeConfig)
        self.info = resolve_tokenizer(config.tokenizer, config.eos_token)
        self._info_for = (config.tokenizer, config.eos_token)
        return {"tokenizer_sha256": self.info.sha256}

    def transform(self, spark: "SparkSession", inputs: list[Path], config: BaseModel) -> "DataFrame":
        from pyspark.sql.pandas.types import from_arrow_schema

        assert isinstance(config, TokenizeConfig)
        if getattr(self, "_info_for", None) != (config.tokenizer, config.eos_token):
            self.fingerprint_extras(config)
        self.has_chat = False
        self.shipped = spark.sparkContext.broadcast(tokenizer_files(self.info.directory))
        frames = []
        for path in inputs:
            if is_conversation_dataset(path):
                self.has_chat = True
                validate_dataset(path, CONVERSATION_SCHEMA)
                conversations = spread_over_cores(
                    spark, spark.read.parquet(str(path)).select(*CONVERSATION_SCHEMA.names), [path]
                )
                run = conversation_runner(self.shipped, config.max_doc_bytes)
                frames.append(conversations.mapInArrow(run, from_arrow_schema(WORKING_SCHEMA)))
            else:
                frames.append(super().transform(spark, [path], config))  # the document stages' guards
        return union_all(frames)

    def release(self) -> None:
        shipped = getattr(self, "shipped", None)
        if shipped is not None:
            shipped.unpersist()
            self.shipped = None

    def write_kept(self, kept: "DataFrame", output: Path, config: BaseModel) -> None:
        from pyspark.sql.pandas.types import from_arrow_schema

        assert isinstance(config, TokenizeConfig)
        output.mkdir(parents=True, exist_ok=True)
        token_dtype = token_type(self.info.vocab_size)
        run = shard_writer_task(
            self.shipped, str(output), token_dtype, self.has_chat, self.info.eos_id, config.shard_tokens
        )
        rows = kept.select("id", "text", "metadata").mapInArrow(run, from_arrow_schema(SHARD_ROW_SCHEMA)).collect()
        for leftover in output.glob(".shard-*.tmp-*"):  # from task attempts that failed and were retried
            remove_tree(leftover)
        shards = sorted((ShardInfo(**row.asDict()) for row in rows), key=lambda s: s.path)
        manifest = Manifest(
            tokenizer=self.info.manifest_entry(),
            token_dtype=str(token_dtype),
            has_loss_mask=self.has_chat,
            shards=shards,
            recipe_hash=hash_json(config.model_dump(mode="json")),
            created_at=datetime.now(timezone.utc).isoformat(),
        )
        write_manifest(output, manifest)
        self.extra_stats["tokenize"] = {
            "tokenizer": self.info.name,
            "tokenizer_sha256": self.info.sha256,
            "token_dtype": str(token_dtype),
            "loss_mask": self.has_chat,
            **manifest.totals,
        }
