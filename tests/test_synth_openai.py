"""The ``openai`` backend against a real HTTP server on 127.0.0.1 whose answers each test scripts."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest

from synth.backends import GenerationConfig, OpenAISettings, SamplingParams, backend_identity, make_backend
from synth.backends.base import BackendError
from synth.backends.openai_compat import OpenAIBackend, sanitized_url

SECRET = "sk-test-5ecret-d0-not-leak-1234567890"


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list: sent as JSON; str/bytes: sent as is; None: a normal reply
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content: str | None = None  # the normal reply's text (default: an echo of the last message)
    finish_reason: str = "stop"


class FakeServer:
    """An OpenAI-compatible server: chat requests take scripted replies first, then ``responder``."""

    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.responder: Callable[[dict[str, Any]], Reply] = lambda body: Reply()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.stopping = threading.Event()
        self.models_reply = Reply(body={"object": "list", "data": [{"id": "test-model", "object": "model"}]})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def hits(self) -> int:
        with self.lock:
            return len(self.requests)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    server._send(self, server.models_reply, {})
                else:
                    server._send(self, Reply(status=404, body={"error": {"message": "no such route"}}), {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                if self.path != "/v1/chat/completions":
                    server._send(self, Reply(status=404, body={"error": {"message": "no such route"}}), body)
                    return
                with server.lock:
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    reply = server.script.popleft() if server.script else None
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    reply = reply or server.responder(body)
                    if reply.delay:
                        server.stopping.wait(reply.delay)
                finally:
                    with server.lock:
                        server.in_flight -= 1
                server._send(self, reply, body)

        return Handler

    def _send(self, handler: BaseHTTPRequestHandler, reply: Reply, request: dict[str, Any]) -> None:
        body = reply.body
        if body is None:
            last = request["messages"][-1]["content"]
            content = reply.content if reply.content is not None else f"echo: {last}"
            body = {
                "id": "cmpl-1",
                "object": "chat.completion",
                "model": request.get("model"),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": reply.finish_reason}
                ],
                "usage": {"prompt_tokens": len(last.split()), "completion_tokens": len(content.split()), "total_tokens": 0},
            }
        data = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else json.dumps(body).encode()
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:  # the client gave up (a timeout test)
            pass


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    fake.thread.start()
    yield fake
    fake.stopping.set()
    fake.httpd.shutdown()
    fake.httpd.server_close()
    fake.thread.join(timeout=5)


@pytest.fixture
def make(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., OpenAIBackend]]:
    """Builds backends pointed at the fake server (fast retries); closes them afterwards."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    backends: list[OpenAIBackend] = []

    def build(model: str | None = "test-model", base_url: str | None = None, **settings: Any) -> OpenAIBackend:
        values: dict[str, Any] = {"base_url": base_url or server.url, "timeout_s": 5.0, "max_retries": 3, "backoff_s": 0.01}
        values.update(settings)
        backend = OpenAIBackend(GenerationConfig(backend="openai", model=model, openai=OpenAISettings(**values)))
        backends.append(backend)
        return backend

    yield build
    for backend in backends:
        backend.close()


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


PARAMS = SamplingParams(max_new_tokens=32, temperature=0.5, top_p=0.9)


def test_replies_in_input_order_with_usage_and_per_item_seed(server: FakeServer, make: Callable[..., OpenAIBackend]) -> None:
    # Earlier items answer later, so completion order is the reverse of input order.
    server.responder = lambda body: Reply(delay=0.05 * (5 - int(body["messages"][-1]["content"].split()[1])))
    backend = make(concurrency=5)
    prompts = [f"question {i} please" for i in range(5)]
    results = backend.generate([chat(p) for p in prompts], PARAMS, seed=100)

    assert [g.text for g in results] == [f"echo: {p}" for p in prompts]
    assert all(g.ok and g.finish_reason == "stop" and g.error is None for g in results)
    assert [(g.prompt_tokens, g.completion_tokens) for g in results] == [(3, 4)] * 5
    sent = {r["messages"][-1]["content"]: r for r in server.requests}
    for index, prompt in enumerate(prompts):
        request = sent[prompt]
        assert request["seed"] == 100 + index
        assert request["model"] == "test-model"
        assert request["messages"] == chat(prompt)
        assert (request["max_tokens"], request["temperature"], request["top_p"]) == (32, 0.5, 0.9)
        assert "stop" not in request
    assert backend.generate([], PARAMS, seed=0) == []


def test_missing_usage_counts_zero(server: FakeServer, make: Callable[..., OpenAIBackend]) -> None:
    server.script.append(Reply(body={"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]}))
    [result] = make().generate([chat("x")], PARAMS, seed=0)
    assert (result.text, result.prompt_tokens, result.completion_tokens, result.ok) == ("hi", 0, 0, True)


def test_stop_strings_sent_and_applied_client_side(server: FakeServer, make: Callable[..., OpenAIBackend]) -> None:
    stops = ["<a>", "<b>", "<c>", "<d>", "###"]
    # The server ignores the fifth stop string (it never received it) and runs to max_tokens.
    server.script.append(Reply(content="first part ### second part", finish_reason="length"))
    server.script.append(Reply(content="no stop here", finish_reason="length"))
    results = make(concurrency=1).generate([chat("a"), chat("b")], PARAMS.model_copy(update={"stop": stops}), seed=0)
    assert server.requests[0]["stop"] == stops[:4]
    assert (results[0].text, results[0].finish_reason) == ("first part ", "stop")
    assert (results[1].text, results[1].finish_reason) == ("no stop here", "length")
    assert results[1].ok


def test_finish_reason_length_and_content_filter(server: FakeServer, make: Callable[..., OpenAIBackend]) -> None:
    server.script.extend([Reply(content="cut short", finish_reason="length"), Reply(content="", finish_reason="content_filter")])
    length, filtered = make(concurrency=1).generate([chat("a"), chat("b")], PARAMS, seed=0)
    assert (length.text, length.finish_reason, length.ok) == ("cut short", "length", True)
    assert not filtered.ok and "content_filter" in (filtered.error or "")


def test_429_honours_retry_after(server: FakeServer, make: Callable[..., OpenAIBackend]) -> None:
    server.script.extend([Reply(status=429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "0.3"}), Reply()])
    backend = make(backoff_s=0.01)
    started = time.monotonic()
    [result] = backend.generate([chat("hello")], PARAMS, seed=0)
    elapsed = time.monotonic() - started
    assert result.ok and result.text == "echo: hello"
    assert server.hits == 2
    assert 0.3 <= elapsed < 2.0


def test_retry_after_is_capped_by_max_backoff(server: FakeServer, make: Callable[..., OpenAIBackend]) -> None:
    server.script.extend([Reply(status=429, headers={"Retry-After": "30"}), Reply()])
    started = time.monotonic()
    [result] = make(max_backoff_s=0.05).generate([chat("hello")], PARAMS, seed=0)
    assert result.ok and server.hits == 2
    assert time.monotonic() - started < 2.0


def test_5xx_then_success_logs_each_retry(
    server: FakeServer, make: Callable[..., OpenAIBackend], caplog: pytest.LogCaptureFixture
) -> None:
    server.script.extend([Reply(status=500, body="boom"), Reply(status=502, body="bad gateway"), Reply()])
    with caplog.at_level(logging.WARNING, logger="corpusforge.synth"):
        [result] = make().generate([chat("hello")], PARAMS, seed=0)
    assert result.ok and result.text == "echo: hello"
    assert server.hits == 3
    warnings = [r.getMessage() for r in caplog.records if r.name == "corpusforge.synth"]
    assert len(warnings) == 2
    assert "HTTP 500" in warnings[0] and "retry 1 of 3" in warnings[0]
    assert "HTTP 502" in warnings[1] and "retry 2 of 3" in warnings[1]


def test_persistent_503_fails_after_all_retries(server: FakeServer, make: Callable[..., OpenAIBackend]) -> None:
    server.responder = lambda body: Reply(status=503, body={"error": {"message": "overloaded"}})
    [result] = make(max_retries=2).generate([chat("hello")], PARAMS, seed=0)
    assert server.hits == 3
    assert not result.ok and result.finish_reason == "error" and result.text == ""
    assert "503" in (result.error or "") and "overloaded" in (result.error or "") and "3 attempt" in (result.error or "")


def test_hung_server_times_out_in_bounded_time(server: FakeServer, make: Callable[..., OpenAIBackend]) -> None:
    server.responder = lambda body: Reply(delay=10)
    started = time.monotonic()
    [result] = make(timeout_s=0.3, max_retries=1).generate([chat("hello")], PARAMS, seed=0)
    elapsed = time.monotonic() - started
    assert not result.ok and "timed out" in (result.error or "")
    assert server.hits == 2
    assert 0.6 <= elapsed < 3.0


@pytest.mark.parametrize(
    "body",
    ["{not json", {"choices": []}, {"object": "chat.completion"}, {"choices": [{"message": {"content": ["x"]}, "finish_reason": "stop"}]}],
    ids=["not-json", "empty-choices", "no-choices", "non-text-content"],
)
def test_malformed_response_fails(server: FakeServer, make: Callable[..., OpenAIBackend], body: Any) -> None:
    server.script.append(Reply(body=body))
    [result] = make().generate([chat("hello")], PARAMS, seed=0)
    assert not result.ok and (result.error or "").startswith("malformed response")
    assert server.hits == 1


@pytest.mark.parametrize("status", [400, 413, 422])
def test_client_errors_fail_without_retry(server: FakeServer, make: Callable[..., OpenAIBackend], status: int) -> None:
    message = "This model's maximum context length is 2048 tokens. " + "x" * 2000
    server.responder = lambda body: Reply(status=status, body={"error": {"message": message}})
    first, second = make().generate([chat("a"), chat("b")], PARAMS, seed=0)
    assert server.hits == 2  # one each, no retry
    for result in (first, second):
        assert not result.ok
        assert f"HTTP {status}" in (result.error or "") and "maximum context length" in (result.error or "")
        assert len(result.error or "") < 350


@pytest.mark.parametrize("status", [401, 403, 404])
def test_misconfiguration_raises(server: FakeServer, make: Callable[..., OpenAIBackend], status: int) -> None:
    server.responder = lambda body: Reply(status=status, body={"error": {"message": "nope"}})
    backend = make()
    with pytest.raises(BackendError) as info:
        backend.generate([chat("a")], PARAMS, seed=0)
    assert str(status) in str(info.value) and f"{server.url}/chat/completions" in str(info.value)
    assert server.hits == 1


def test_concurrency_limit(server: FakeServer, make: Callable[..., OpenAIBackend]) -> None:
    server.responder = lambda body: Reply(delay=0.1)
    started = time.monotonic()
    results = make(concurrency=3).generate([chat(f"q {i}") for i in range(10)], PARAMS, seed=0)
    assert all(r.ok for r in results)
    assert [r.text for r in results] == [f"echo: q {i}" for i in range(10)]
    assert 2 <= server.max_in_flight <= 3
    assert time.monotonic() - started >= 0.35  # 10 requests of 0.1 s, 3 at a time: 4 rounds


def test_api_key_sent_and_never_leaked(
    server: FakeServer, make: Callable[..., OpenAIBackend], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CF_TEST_KEY", SECRET)
    base_url = server.url.replace("http://", "http://user:urlpassword@")
    # A careless server that echoes the request headers in its errors.
    server.responder = lambda body: (
        Reply()
        if body["messages"][-1]["content"] == "ok"
        else Reply(status=500 if body["messages"][-1]["content"] == "retry" else 400, body=json.dumps(server.headers[-1]))
    )
    with caplog.at_level(logging.DEBUG):
        backend = make(base_url=base_url, api_key_env="CF_TEST_KEY", max_retries=1)
        results = backend.generate([chat("ok"), chat("retry"), chat("bad")], PARAMS, seed=0)
        assert results[0].ok
        assert not results[1].ok and not results[2].ok
        assert all(h.get("Authorization") == f"Bearer {SECRET}" for h in server.headers)
        server.responder = lambda body: Reply(status=401, body=json.dumps(server.headers[-1]))
        with pytest.raises(BackendError) as info:
            backend.generate([chat("x")], PARAMS, seed=0)
    texts = [caplog.text, repr(backend), str(backend.identity()), str(info.value)] + [r.error or "" for r in results]
    for text in texts:
        assert SECRET not in text and "urlpassword" not in text
    assert "Bearer ***" in (results[2].error or "")  # the echo was kept, the key masked
    assert backend.identity() == {"backend": "openai", "base_url": server.url, "model": "test-model"}
    assert "CF_TEST_KEY" in str(info.value)


@pytest.mark.parametrize("value", [None, ""])
def test_no_authorization_without_key(
    server: FakeServer, make: Callable[..., OpenAIBackend], monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("CF_TEST_KEY", raising=False)
    else:
        monkeypatch.setenv("CF_TEST_KEY", value)
    make(api_key_env="CF_TEST_KEY").generate([chat("a")], PARAMS, seed=0)
    assert "Authorization" not in server.headers[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_check_lists_models_and_raises_when_unreachable(server: FakeServer, make: Callable[..., OpenAIBackend]) -> None:
    assert make().check() == ["test-model"]
    dead = make(base_url=f"http://127.0.0.1:{free_port()}/v1", timeout_s=1.0)
    with pytest.raises(BackendError, match="cannot reach"):
        dead.check()
    server.models_reply = Reply(status=401, body={"error": {"message": "bad key"}})
    with pytest.raises(BackendError, match="401"):
        make().check()


def test_connection_refused_fails_each_item_in_bounded_time(make: Callable[..., OpenAIBackend]) -> None:
    backend = make(base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=1)
    started = time.monotonic()
    results = backend.generate([chat("a"), chat("b")], PARAMS, seed=0)
    assert all(not r.ok and "connection error" in (r.error or "") for r in results)
    assert time.monotonic() - started < 3.0


def test_model_required(make: Callable[..., OpenAIBackend]) -> None:
    with pytest.raises(BackendError, match="generation.model must name the served model"):
        make(model=None)


def test_closed_backend_refuses(make: Callable[..., OpenAIBackend]) -> None:
    backend = make()
    backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.generate([chat("a")], PARAMS, seed=0)


def test_sanitized_url() -> None:
    assert sanitized_url("https://user:pw@api.example.com:8443/v1/?key=abc#frag") == "https://api.example.com:8443/v1"
    assert sanitized_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


def test_make_backend_and_identity(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    config = GenerationConfig(backend="openai", model="test-model", openai=OpenAISettings(base_url=server.url + "/"))
    backend = make_backend(config)
    try:
        assert isinstance(backend, OpenAIBackend) and backend.name == "openai" and backend.model == "test-model"
        assert backend.identity() == backend_identity(config)
        [result] = backend.generate([chat("hi")], config.sampling(), seed=config.seed)
        assert result.ok and server.headers[0]["Authorization"] == f"Bearer {SECRET}"
    finally:
        backend.close()
