"""The ``vllm`` backend: vLLM's offline engine in this process, on a GPU.

Install with ``pip install 'corpusforge[gpu]'`` on a machine with CUDA. ``generation.model``
is a local model directory or ``.gguf`` file; unset, it is the bundled SmolLM2-135M-Instruct
(its dequantized cache directory, see :mod:`synth.backends.hf`). vLLM batches the whole
list continuously, so the stage hands it every conversation of a partition at once
(``generation.batch_size`` only bounds how many the stage passes per call). Each request
gets its own seed (``seed + index``), so replies do not depend on how requests were batched.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from synth.backends import GenerationConfig
from synth.backends.base import Backend, BackendError, Generation, Message, SamplingParams, cut_at_stop, failed

log = logging.getLogger("corpusforge.synth")


def model_identity(spec: str | None) -> str:
    from synth.backends.hf import resolve_model

    return resolve_model(spec)[2]


class VllmBackend(Backend):
    name = "vllm"

    def __init__(self, config: GenerationConfig) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise BackendError(
                "generation.backend=vllm needs vLLM and a GPU: pip install 'corpusforge[gpu]' "
                f"(import failed: {exc})"
            ) from exc
        from synth.backends.hf import resolve_model

        directory, self._model_name, _ = resolve_model(config.model)
        self.config = config
        settings = config.vllm
        dtype = "auto" if config.dtype == "auto" else config.dtype
        try:
            self.llm = vllm.LLM(
                model=str(Path(directory)),
                dtype=dtype,
                seed=config.seed,
                gpu_memory_utilization=settings.gpu_memory_utilization,
                max_model_len=settings.max_model_len,
                tensor_parallel_size=settings.tensor_parallel_size,
                enforce_eager=settings.enforce_eager,
            )
        except Exception as exc:  # vLLM raises many kinds (no GPU, out of memory, bad config)
            raise BackendError(f"vLLM could not start {directory}: {exc}") from exc
        self.tokenizer = self.llm.get_tokenizer()
        self.max_len = int(self.llm.llm_engine.model_config.max_model_len)

    @property
    def model(self) -> str:
        return self._model_name

    def identity(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self._model_name, "weights": model_identity(self.config.model)}

    def generate(self, conversations: Sequence[Sequence[Message]], params: SamplingParams, seed: int) -> list[Generation]:
        from vllm import SamplingParams as VllmSampling

        results: list[Generation | None] = [None] * len(conversations)
        runnable: list[int] = []
        for index, conversation in enumerate(conversations):
            prompt = self.tokenizer.apply_chat_template(list(conversation), tokenize=True, add_generation_prompt=True)
            if len(prompt) + params.max_new_tokens > self.max_len:
                results[index] = failed(
                    f"prompt of {len(prompt)} tokens + {params.max_new_tokens} new tokens exceeds max_model_len {self.max_len}"
                )
            else:
                runnable.append(index)
        sampling = [
            VllmSampling(
                n=1,
                temperature=params.temperature,
                top_p=params.top_p,
                max_tokens=params.max_new_tokens,
                stop=list(params.stop) or None,
                seed=seed + index,
            )
            for index in runnable
        ]
        if runnable:
            outputs = self.llm.chat([list(conversations[i]) for i in runnable], sampling_params=sampling, use_tqdm=False)
            for index, output in zip(runnable, outputs):
                completion = output.outputs[0]
                text, _ = cut_at_stop(completion.text, params.stop)
                reason = completion.finish_reason
                results[index] = (
                    Generation(
                        text=text.strip(),
                        prompt_tokens=len(output.prompt_token_ids or []),
                        completion_tokens=len(completion.token_ids),
                        finish_reason="length" if reason == "length" else "stop",
                    )
                    if reason in ("stop", "length")
                    else failed(f"vLLM finished with {reason!r}")
                )
        return [r if r is not None else failed("not generated") for r in results]

    def close(self) -> None:
        import gc

        self.llm = None
        gc.collect()
