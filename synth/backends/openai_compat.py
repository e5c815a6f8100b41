"""The ``openai`` backend: any OpenAI-compatible ``POST {base_url}/chat/completions`` endpoint
(a vLLM or llama.cpp server, a hosted API).

One shared :class:`httpx.Client` and a thread pool of ``generation.openai.concurrency``
workers: at most that many requests are in flight, and :meth:`OpenAIBackend.generate`
returns the replies in input order. Request ``i`` of a batch gets ``seed + i``, so a server
that honours seeds gives replies that do not depend on batching. Stop strings are sent (the
first 4, the API's limit) and also applied to the reply here, for all of them.

Failures:

* ``timeout_s`` bounds each request as a whole (connect, headers and body together, enforced
  on every read: a server that drips its reply a byte at a time is cut off at the deadline,
  not only one that goes silent); it is also the per-read timeout;
* timeouts, connection errors, HTTP 408, 429 and 5xx are retried up to ``max_retries``
  times, waiting ``backoff_s`` doubled each retry (or the server's ``Retry-After``), never
  more than ``max_backoff_s``; then the request comes back as a failed Generation naming
  the last problem (a counted skip);
* any other 4xx (a prompt too long: 400, 413, 422) fails that request at once, with the
  server's message;
* 401, 403 and 404 mean every request would fail (key, URL or model wrong): they raise
  :class:`BackendError`; so does :meth:`OpenAIBackend.check` when the endpoint cannot be
  reached at all.

The API key is read from the environment variable named by ``api_key_env`` and sent as
``Authorization: Bearer``. It never appears in logs, messages or the backend's identity;
neither do credentials written into ``base_url`` (see :func:`sanitized_url`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from typing import Any, Sequence
from urllib.parse import urlsplit, urlunsplit

import httpcore
import httpx

from synth.backends import GenerationConfig
from synth.backends.base import Backend, BackendError, Generation, Message, SamplingParams, cut_at_stop, failed

log = logging.getLogger("corpusforge.synth")

MAX_STOP_STRINGS = 4  # the OpenAI API rejects more; the rest are applied client-side only
MESSAGE_CHARS = 300  # server messages quoted in errors: enough to read, short enough for a stats file
FATAL_STATUSES = {401, 403, 404}
RETRY_STATUSES = {408, 429}  # plus every 5xx


_DEADLINE = threading.local()  # monotonic deadline of the request this thread is sending


def _time_left(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` shortened to what is left before the running request's deadline."""
    deadline = getattr(_DEADLINE, "at", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the request's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the request's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
        tls = self._stream.start_tls(ssl_context, server_hostname, _time_left(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        timeout = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> httpcore.NetworkStream:
        timeout = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _enforce_deadlines(client: httpx.Client) -> bool:
    """Route the client's connections (direct and through proxies) through :class:`_DeadlineStream`.
    httpx has no total timeout, and its read timeout applies to each read. This reaches into
    httpx's transports (``_pool``) and httpcore's pools (``_network_backend``); False if a
    version without them left nothing wrapped."""
    wrapped = False
    for transport in [client._transport, *client._mounts.values()]:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is not None and not isinstance(backend, _DeadlineBackend):
            pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]
            wrapped = True
    return wrapped


def sanitized_url(url: str) -> str:
    """``url`` without user info, query or fragment: safe to log and to put in a fingerprint."""
    parts = urlsplit(url.strip())
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _trim(text: str, limit: int = MESSAGE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _server_message(response: httpx.Response) -> str:
    """The error message of an error response, whichever of the common shapes it has."""
    try:
        data = response.json()
    except ValueError:
        return response.text or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("message", "detail", "error"):
            if data.get(key):
                return str(data[key])
    return str(data)


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, config: GenerationConfig) -> None:
        if not config.model:
            raise BackendError(
                "generation.backend=openai: generation.model must name the served model "
                "(as listed by the endpoint's /v1/models)"
            )
        settings = config.openai
        parts = urlsplit(settings.base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BackendError(
                f"generation.openai.base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, "
                f"not {sanitized_url(settings.base_url)!r}"
            )
        self.config = config
        self.settings = settings
        self.base_url = sanitized_url(settings.base_url)
        self._model_name = config.model
        key = os.environ.get(settings.api_key_env, "") if settings.api_key_env else ""
        self._secrets = [s for s in (key, parts.password or "", parts.username or "") if s]
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        # Credentials in the URL become Basic auth, passed explicitly so that the URL httpx logs
        # carries none; an API key wins over them (one Authorization header only).
        auth = httpx.BasicAuth(parts.username or "", parts.password or "") if (parts.username and not key) else None
        self._chat_url = f"{self.base_url}/chat/completions"
        self._models_url = f"{self.base_url}/models"
        self._client = httpx.Client(
            headers=headers,
            auth=auth,
            timeout=httpx.Timeout(settings.timeout_s),
            limits=httpx.Limits(max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency),
        )
        if not _enforce_deadlines(self._client):
            log.warning("httpx %s: cannot bound whole requests; timeout_s applies to each read only", httpx.__version__)
        self._pool = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="openai-backend")
        self._closed = threading.Event()

    def __repr__(self) -> str:
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self._model_name!r})"

    @property
    def model(self) -> str:
        return self._model_name

    def identity(self) -> dict[str, Any]:
        return {"backend": self.name, "base_url": self.base_url, "model": self._model_name}

    def _redact(self, text: str) -> str:
        """``text`` with every secret masked: servers and proxies may echo the request in errors."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def check(self) -> list[str]:
        """One ``GET {base_url}/models``: raise BackendError if the endpoint cannot be reached or
        rejects the key; return the model ids it lists (empty if it lists none readably)."""
        _DEADLINE.at = time.monotonic() + self.settings.timeout_s
        try:
            response = self._client.get(self._models_url)
        except httpx.HTTPError as exc:
            raise BackendError(
                f"cannot reach the OpenAI-compatible endpoint {self._models_url}: "
                f"{type(exc).__name__}: {self._redact(str(exc))} (is the server running? check generation.openai.base_url)"
            ) from None
        finally:
            _DEADLINE.at = None
        if response.status_code in (401, 403):
            raise self._fatal(response, self._models_url)
        if response.status_code != 200:
            # Some compatible servers do not implement /models; the first chat request will tell.
            log.warning("%s answered HTTP %d; going on", self._models_url, response.status_code)
            return []
        try:
            ids = [str(m["id"]) for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            return []
        if ids and self._model_name not in ids:
            listed = self._redact(", ".join(ids[:10]))  # a careless endpoint may echo the request there too
            log.warning("%s does not list model %r (it lists %s)", self.base_url, self._model_name, listed)
        return ids

    def generate(self, conversations: Sequence[Sequence[Message]], params: SamplingParams, seed: int) -> list[Generation]:
        if self._closed.is_set():
            raise BackendError("the openai backend is closed")
        futures: list[Future[Generation]] = [
            self._pool.submit(self._request, list(conversation), params, seed + index)
            for index, conversation in enumerate(conversations)
        ]
        try:
            return [future.result() for future in futures]
        except BaseException:
            # A fatal answer (wrong key, URL or model) dooms the rest of the batch too.
            for future in futures:
                future.cancel()
            raise

    def _body(self, messages: list[Message], params: SamplingParams, seed: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model_name,
            "messages": messages,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": seed,
        }
        stop = [s for s in params.stop if s][:MAX_STOP_STRINGS]
        if stop:
            body["stop"] = stop
        return body

    def _request(self, messages: list[Message], params: SamplingParams, seed: int) -> Generation:
        body = self._body(messages, params, seed)
        attempts = self.settings.max_retries + 1
        problem = "no attempt made"
        for attempt in range(1, attempts + 1):
            if self._closed.is_set():
                return failed(f"backend closed after: {problem}")
            retry_after: float | None = None
            try:
                response = self._post(body)
            except httpx.TimeoutException as exc:
                problem = f"timed out after {self.settings.timeout_s:g} s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                problem = f"connection error: {type(exc).__name__}: {self._redact(str(exc))}"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return self._parse(response, params)
                if status in FATAL_STATUSES:
                    raise self._fatal(response, self._chat_url)
                message = _trim(self._redact(_server_message(response)))
                if status not in RETRY_STATUSES and status < 500:
                    return failed(f"HTTP {status}: {message}")
                problem = f"HTTP {status}: {message}"
                retry_after = _retry_after(response.headers.get("Retry-After"))
            if attempt == attempts:
                break
            backoff = self.settings.backoff_s * 2 ** (attempt - 1) if retry_after is None else retry_after
            delay = min(backoff, self.settings.max_backoff_s)
            log.warning(
                "%s: %s; retry %d of %d in %.2f s", self._chat_url, problem, attempt, self.settings.max_retries, delay
            )
            if self._closed.wait(delay):
                return failed(f"backend closed after: {problem}")
        return failed(f"gave up after {attempts} attempt(s): {problem}")

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        """One chat request, all of it within ``timeout_s``."""
        _DEADLINE.at = time.monotonic() + self.settings.timeout_s
        try:
            return self._client.post(self._chat_url, json=body)
        finally:
            _DEADLINE.at = None

    def _parse(self, response: httpx.Response, params: SamplingParams) -> Generation:
        try:
            data = response.json()
        except ValueError:
            return failed(f"malformed response: not JSON: {_trim(self._redact(response.text), 120)!r}")
        try:
            choice = data["choices"][0]
            content = choice["message"]["content"]
            reason = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError, AttributeError):
            return failed(f"malformed response: no choices[0].message.content in {_trim(self._redact(response.text), 120)!r}")
        if content is None:  # servers send null content with some finish reasons (tool calls, filters)
            content = ""
        if not isinstance(content, str):
            return failed(f"malformed response: message content is {type(content).__name__}, not text")
        if reason not in ("stop", "length"):
            return failed(f"finish_reason {reason!r}: the endpoint did not complete the reply")
        text, cut = cut_at_stop(content, params.stop)
        usage = data.get("usage") if isinstance(data, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        return Generation(
            text=text,
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
            finish_reason="stop" if cut else reason,
        )

    def _fatal(self, response: httpx.Response, url: str) -> BackendError:
        status = response.status_code
        message = _trim(self._redact(_server_message(response)))
        if status == 404:
            hint = (
                "check generation.openai.base_url (the API root, usually ending in /v1) and that "
                f"generation.model ({self._model_name!r}) names a model the endpoint serves"
            )
        else:
            variable = self.settings.api_key_env
            hint = (
                f"the API key is missing or rejected: set the environment variable {variable}"
                if variable
                else "the endpoint wants an API key: set generation.openai.api_key_env"
            )
        return BackendError(f"{url} answered HTTP {status} ({message}): {hint}")

    def close(self) -> None:
        # Interrupts backoff waits, so closing never waits out a retry schedule.
        self._closed.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()


def _count(value: object) -> int:
    try:
        return max(0, int(value))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0
