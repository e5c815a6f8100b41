"""Generation backends: ``transformers`` (default, CPU or GPU), ``vllm`` (GPU), ``openai``
(any OpenAI-compatible HTTP endpoint). :func:`make_backend` builds one from the recipe's
``generation`` settings of a synth stage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from synth.backends.base import Backend, BackendError, Generation, Message, SamplingParams, failed


class OpenAISettings(BaseModel):
    """``generation.openai``: an OpenAI-compatible ``/v1/chat/completions`` endpoint."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field("http://127.0.0.1:8000/v1", description="the API root, ending in /v1")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY",
        description="name of the environment variable holding the API key (the key itself never goes "
        "in a recipe); unset or empty variable = no Authorization header",
    )
    timeout_s: float = Field(
        120.0, gt=0, description="per request, connect and reply together (a reply dripped slowly is cut off too)"
    )
    max_retries: int = Field(4, ge=0, description="retries on timeouts, connection errors, 429 and 5xx")
    backoff_s: float = Field(1.0, ge=0, description="first retry delay, doubled each retry (Retry-After wins)")
    max_backoff_s: float = Field(60.0, ge=0)
    concurrency: int = Field(8, ge=1, description="requests in flight at once")

    @field_serializer("base_url", when_used="json")
    def _no_credentials_in_json(self, base_url: str) -> str:
        # JSON copies of the settings (_stats.json, fingerprints, Prefect flow parameters,
        # `validate --show`) must not carry a user:password@ written into the URL.
        from synth.backends.openai_compat import sanitized_url

        return sanitized_url(base_url)


class VllmSettings(BaseModel):
    """``generation.vllm``: the in-process vLLM engine (GPU; ``pip install 'corpusforge[gpu]'``)."""

    model_config = ConfigDict(extra="forbid")

    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    max_model_len: int | None = Field(None, ge=16, description="default: the model's")
    tensor_parallel_size: int = Field(1, ge=1)
    enforce_eager: bool = Field(False, description="skip CUDA graph capture (faster start, slower decoding)")


class GenerationConfig(SamplingParams):
    """A synth stage's ``generation`` section: which backend and model, how to sample."""

    backend: Literal["transformers", "vllm", "openai"] = "transformers"
    model: str | None = Field(
        None,
        description="transformers: a directory or a .gguf file (default: the bundled SmolLM2-135M-Instruct); "
        "vllm: a local model directory; openai: the model name the endpoint serves",
    )
    device: str = Field("auto", description="transformers: auto (cuda if available), cpu, cuda, cuda:1")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: float32 on CPU, bfloat16 on GPU"
    )
    batch_size: int = Field(8, ge=1, description="conversations per backend call")
    seed: int = Field(0, description="base seed; each batch derives its own from it")
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    vllm: VllmSettings = Field(default_factory=VllmSettings)

    def sampling(self, **overrides: object) -> SamplingParams:
        values = {name: getattr(self, name) for name in SamplingParams.model_fields}
        values.update(overrides)
        return SamplingParams(**values)


def backend_identity(config: GenerationConfig) -> dict[str, object]:
    """What decides the replies besides prompts and sampling, known without loading the model:
    part of a synth stage's fingerprint (a changed model file regenerates)."""
    if config.backend == "transformers":
        from synth.backends.hf import resolve_model

        _, name, identity = resolve_model(config.model)
        return {"backend": "transformers", "model": name, "weights": identity}
    if config.backend == "openai":
        from synth.backends.openai_compat import sanitized_url

        return {"backend": "openai", "base_url": sanitized_url(config.openai.base_url), "model": config.model}
    from synth.backends.vllm_engine import model_identity

    return {"backend": "vllm", "model": config.model, "weights": model_identity(config.model)}


def make_backend(config: GenerationConfig) -> Backend:
    if config.backend == "openai":
        from synth.backends.openai_compat import OpenAIBackend

        return OpenAIBackend(config)
    if config.backend == "vllm":
        from synth.backends.vllm_engine import VllmBackend

        return VllmBackend(config)
    from synth.backends.hf import TransformersBackend

    return TransformersBackend(config)


__all__ = [
    "Backend",
    "BackendError",
    "Generation",
    "GenerationConfig",
    "Message",
    "OpenAISettings",
    "SamplingParams",
    "VllmSettings",
    "backend_identity",
    "failed",
    "make_backend",
]
