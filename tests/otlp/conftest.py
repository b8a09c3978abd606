"""Fixtures for the OTLP tests: a real receiver on a free loopback port, and a local
OpenAI-compatible chat completions endpoint (the network edge of the instrumented clients).

``FakeOpenAI(tool_calls)`` answers every ``POST /v1/chat/completions`` with one assistant
message asking for ``tool_calls`` ((call id, function name, JSON arguments) tuples) when the
request has no ``tool`` message yet, else with a plain text answer; usage is 11 prompt and 7
completion tokens per answer. It serves on 127.0.0.1 on its own thread.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from runwatch.sensors.ingest.otlp import OtlpReceiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    """A started OtlpReceiver on 127.0.0.1 (port chosen by the kernel), stopped at teardown."""
    rx = OtlpReceiver("127.0.0.1", 0)
    rx.start()
    try:
        yield rx
    finally:
        rx.stop()


@pytest.fixture
def fake_openai() -> type[FakeOpenAI]:
    """The :class:`FakeOpenAI` class (test modules cannot import conftest)."""
    return FakeOpenAI


PROMPT_TOKENS, COMPLETION_TOKENS = 11, 7


class FakeOpenAI:
    """See the module docstring. Use as a context manager; ``base_url`` is the client's base URL."""

    def __init__(self, tool_calls: list[tuple[str, str, str]], model: str = "gpt-4o-mini") -> None:
        self.tool_calls, self.model = tool_calls, model
        self.requests = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests += 1
                data = json.dumps(fake.answer(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        answered = any(m.get("role") == "tool" for m in body.get("messages", []))
        message: dict[str, Any] = {"role": "assistant", "content": "done" if answered else None}
        if not answered:
            message["tool_calls"] = [{"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
                                     for cid, name, args in self.tool_calls]
        return {"id": f"chatcmpl-{self.requests}", "object": "chat.completion", "created": 1767225600,
                "model": self.model, "choices": [{"index": 0, "message": message,
                                                  "finish_reason": "stop" if answered else "tool_calls"}],
                "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                          "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}}

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
