"""The one interface every generation backend implements: batched chat generation.

A backend takes a batch of conversations (chat-messages lists), sampling parameters and a
seed, and returns one :class:`Generation` per conversation, in order. A request that fails
(an endpoint error after its retries, a prompt longer than the model's context) comes back
as a Generation with ``finish_reason == "error"`` and the reason in ``error``: the stage
counts it as a skip and goes on with the rest of the batch. Only failures that make every
later request fail too (model file missing, endpoint misconfigured) raise
:class:`BackendError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from pipelines.errors import CorpusforgeError

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}
FinishReason = Literal["stop", "length", "error"]


class BackendError(CorpusforgeError):
    """The backend cannot work at all (missing model, unreachable or misconfigured endpoint)."""


class SamplingParams(BaseModel):
    """How to sample; the same for every backend."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(256, ge=1, description="tokens generated per reply at most")
    temperature: float = Field(0.7, ge=0.0, le=5.0, description="0 = greedy")
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list, description="strings that end a reply (not included in it)")


@dataclass
class Generation:
    """One reply."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason  # "length": cut at max_new_tokens (a truncated reply)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.finish_reason != "error"


def failed(error: str) -> Generation:
    return Generation(text="", prompt_tokens=0, completion_tokens=0, finish_reason="error", error=error)


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class Backend(ABC):
    """Batched chat generation."""

    name: str  # "transformers", "vllm", "openai"

    @property
    @abstractmethod
    def model(self) -> str:
        """The model's name as recorded in each output record's provenance."""

    @abstractmethod
    def generate(self, conversations: Sequence[Sequence[Message]], params: SamplingParams, seed: int) -> list[Generation]:
        """One Generation per conversation, in order; the same seed and inputs give the same replies
        where the backend allows it (transformers and vLLM do; a remote endpoint may not)."""

    def identity(self) -> dict[str, Any]:
        """What decides the replies besides the prompts and sampling (model file hash, endpoint and
        model name): part of the stage fingerprint, so a changed model regenerates."""
        return {"backend": self.name, "model": self.model}

    def check(self) -> object:
        """Fail fast with BackendError when the backend cannot serve at all (an endpoint that
        does not answer); called once before the first partition is generated."""
        return None

    def close(self) -> None:
        """Free the model or the connection pool."""
