"""A local OpenAI-compatible chat-completions server that answers with scripted tool calls.

For tests that drive real agent frameworks with no network: ``POST /v1/chat/completions``
answers turn ``i`` of a conversation with the tool calls of ``script[i]`` (several calls in
one turn are parallel tool calls), and once the script is used up with a final text
answer. The turn is the number of assistant messages with tool calls already in the
request, so one server serves any number of independent conversations, concurrently.
Streaming is not supported (``"stream": true`` is refused with 400).

    with FakeOpenAI([[("probe", {"tag": "a"}), ("probe", {"tag": "b"})]]) as server:
        client = OpenAI(base_url=server.base_url, api_key="test")

Call ids are ``call_<conversation>_<turn>_<index>`` where the conversation number comes
from the first user message's order of arrival, so ids are unique and predictable; tests
read them back from :attr:`FakeOpenAI.issued`. Thread safety: requests are served on
threads; :attr:`issued` is appended under a lock.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

Turn = list[tuple[str, dict[str, Any]]]
FINAL_ANSWER = "All tools ran."


class FakeOpenAI:
    """The scripted server (context manager: starts on enter, stops on exit)."""

    def __init__(self, script: list[Turn], model: str = "scripted-tools-1") -> None:
        self.script, self.model = script, model
        self.issued: list[tuple[str, str, dict[str, Any]]] = []  # (call id, tool name, arguments)
        self.requests = 0
        self._lock = threading.Lock()
        self._conversations: dict[str, int] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

            def do_POST(self) -> None:
                """Answer ``/v1/chat/completions``; anything else is 404."""
                length = int(self.headers.get("Content-Length", "0"))
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = None
                if not self.path.endswith("/chat/completions") or not isinstance(body, dict):
                    self._reply(404, {"error": {"message": f"no route {self.path}"}})
                elif body.get("stream"):
                    self._reply(400, {"error": {"message": "streaming is not supported"}})
                else:
                    self._reply(200, fake._answer(body))

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai", daemon=True)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages") or []
        turn = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "assistant" and m.get("tool_calls"))
        first_user = next((json.dumps(m.get("content")) for m in messages
                           if isinstance(m, dict) and m.get("role") == "user"), "")
        with self._lock:
            self.requests += 1
            conversation = self._conversations.setdefault(first_user, len(self._conversations))
            message: dict[str, Any] = {"role": "assistant", "content": FINAL_ANSWER}
            finish = "stop"
            if turn < len(self.script):
                calls = []
                for index, (name, args) in enumerate(self.script[turn]):
                    call_id = f"call_{conversation}_{turn}_{index}"
                    self.issued.append((call_id, name, args))
                    calls.append({"id": call_id, "type": "function",
                                  "function": {"name": name, "arguments": json.dumps(args)}})
                message, finish = {"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls"
        return {"id": f"chatcmpl-{self.requests}", "object": "chat.completion", "created": int(time.time()),
                "model": self.model, "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 23, "completion_tokens": 7, "total_tokens": 30}}

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
