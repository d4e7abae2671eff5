"""A small OpenAI-compatible chat server for tests and benchmarks.

Real HTTP and real server-sent-event streaming, with configurable latency and failures, and a
record of every request it was sent. Run it alone with `python tests/fake_llm.py --port 8000`.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Messages = list[dict[str, Any]]


def text_of_content(content: Any) -> str:
    """A message's text: the content itself, or its text parts when it has images too."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if p.get("type") == "text")
    return str(content or "")


def default_reply(messages: Messages) -> str:
    """Echo the last user message; asked which table, recall one quoted earlier in the chat."""
    last = text_of_content(messages[-1]["content"]) if messages else ""
    if "what table" in last.lower():
        for message in reversed(messages[:-1]):
            found = re.search(r"'(\w+)' table", text_of_content(message["content"]))
            if found:
                return f"We were talking about the '{found.group(1)}' table."
        return "I don't know which table."
    return f"You said: {last}"


EMBEDDING_DIMENSIONS = 256


def fake_embedding(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic stand-in for a model's embedding: each word's character trigrams (with
    its edges, `#word#`), hashed into `dimensions` counts, unit length. Words sharing a stem
    share most of their trigrams (`periscope`, `periscopes`), so texts about the same things lie
    close where full-text search, matching whole words, finds nothing."""
    counts = [0.0] * dimensions
    for word in re.findall(r"\w+", text.lower()):
        padded = f"#{word}#"
        for i in range(len(padded) - 2):
            digest = hashlib.blake2b(padded[i : i + 3].encode(), digest_size=4).digest()
            counts[int.from_bytes(digest, "little") % dimensions] += 1.0
    norm = math.sqrt(sum(c * c for c in counts)) or 1.0
    return [c / norm for c in counts]


@dataclass
class ToolUse:
    """A reply that calls tools: `text` first, then each (name, arguments JSON) call.

    Each call's arguments are streamed in `fragments` pieces, as OpenAI does; `call_ids`, when
    given, are the calls' ids (else fresh ones).
    """

    calls: list[tuple[str, str]]
    text: str = ""
    fragments: int = 2
    call_ids: list[str] = field(default_factory=list)


@dataclass
class Reasoning:
    """A reply that thinks first: `reasoning` streams as `reasoning_content` deltas (as vLLM and
    DeepSeek send them), then `reply` as usual."""

    reasoning: str
    reply: str | ToolUse = ""


Reply = str | ToolUse | Reasoning


class Script:
    """Replies scripted for one test, one per request, in order; then `then` answers.

        llm.reply = Script(ToolUse([("current_time", '{"timezone": "UTC"}')]), "It is noon.")

    `replies` may also be functions of the messages, for a reply that depends on a tool's result.
    """

    def __init__(
        self,
        *replies: Reply | Callable[[Messages], Reply],
        then: Callable[[Messages], Reply] | None = None,
    ) -> None:
        self.replies = list(replies)
        self.then = then or default_reply
        self.lock = threading.Lock()

    def __call__(self, messages: Messages) -> Reply:
        with self.lock:
            reply = self.replies.pop(0) if self.replies else self.then
        return reply(messages) if callable(reply) else reply

    @property
    def remaining(self) -> int:
        with self.lock:
            return len(self.replies)


def split_fragments(text: str, count: int) -> list[str]:
    """`text` in `count` consecutive pieces (some empty if it is short), joined back as it was."""
    count = max(1, count)
    bounds = [len(text) * k // count for k in range(count + 1)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def note_taker(messages: list[dict[str, Any]]) -> str | ToolUse:
    """Saves `remember <name>: <content>` as a note; after a tool call, reports its result."""
    last = messages[-1]
    if last["role"] == "tool":
        return f"Done: {last['content']}."
    found = re.match(r"remember (\w+): (.*)", last["content"], re.DOTALL)
    if found:
        arguments = json.dumps({"name": found[1], "content": found[2]})
        return ToolUse([("remember", arguments)], text="Let me note that. ")
    if last["content"].startswith("call "):
        return ToolUse([tuple(last["content"].removeprefix("call ").split(" ", 1))])
    return "Sure."


@dataclass
class Scenario:
    """Latency and length chosen per request through the model name, for benchmarks:
    `bench-ttft300-delay0-tokens2000` waits 300 ms, then sends 2000 tokens with no delay."""

    ttft: float
    token_delay: float
    tokens: int | None

    @staticmethod
    def from_model(model: str) -> Scenario | None:
        if not model.startswith("bench"):
            return None
        values = dict(re.findall(r"([a-z]+)(\d+)", model))
        return Scenario(
            ttft=int(values.get("ttft", 0)) / 1000,
            token_delay=int(values.get("delay", 0)) / 1000,
            tokens=int(values.get("tokens", 20)),
        )


@dataclass
class Failure:
    status: int
    message: str
    times: int
    # Sent as the Retry-After header, when set.
    retry_after: float | None = None


@dataclass
class FakeLLM:
    ttft: float = 0.0  # seconds before the first token
    token_delay: float = 0.0  # seconds between tokens
    reply: Callable[[Messages], Reply] = default_reply
    models: set[str] | None = None  # None: every model exists
    refuse_tools: bool = False  # answer 400 to a request offering tools, as some Ollama models do
    api_key: str | None = None  # None: no key needed
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    # When each request arrived (time.time()), in the order of `requests`.
    arrivals: list[float] = field(default_factory=list)
    disconnects: int = 0
    # Prompt tokens each streamed reply reports as cached (never more than the prompt), and the
    # usage objects it reported, in order.
    cached_tokens: int = 0
    usages: list[dict[str, Any]] = field(default_factory=list)
    # Drop the connection after this many tokens of the next streamed reply (once), as a server
    # that dies mid-reply does.
    cut_after: int | None = None
    # Requests that ended with a partial assistant message, which the reply went on from.
    continued: int = 0
    failures: list[Failure] = field(default_factory=list)
    # Requests to /v1/embeddings, and whether it answers 503 (an endpoint that is down).
    embedding_requests: list[dict[str, Any]] = field(default_factory=list)
    embeddings_down: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def fail_next(
        self,
        status: int,
        times: int = 1,
        message: str = "injected failure",
        retry_after: float | None = None,
    ) -> None:
        with self.lock:
            self.failures.append(Failure(status, message, times, retry_after))

    def _take_failure(self) -> Failure | None:
        with self.lock:
            if not self.failures:
                return None
            failure = self.failures[0]
            failure.times -= 1
            if failure.times <= 0:
                self.failures.pop(0)
            return failure

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self, port: int = 0) -> FakeLLM:
        self.server = _QuietServer(("127.0.0.1", port), _handler(self))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def requests_for(self, needle: str) -> list[dict[str, Any]]:
        """Requests whose last user message contains `needle`."""
        with self.lock:
            return [r for r in self.requests if needle in _last_user_message(r)]

    def arrivals_for(self, needle: str) -> list[float]:
        """When the requests of requests_for(needle) arrived."""
        with self.lock:
            return [
                at
                for r, at in zip(self.requests, self.arrivals, strict=True)
                if needle in _last_user_message(r)
            ]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed mid-request (as the crash tests do to workers) is no server error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _last_user_message(request: dict[str, Any]) -> str:
    users = [m for m in request.get("messages", []) if m.get("role") == "user"]
    return text_of_content(users[-1]["content"]) if users else ""


def tokens_of(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text) or [""]


def _handler(fake: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Small writes must leave at once, as a real streaming server's do.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                data = [{"id": m, "object": "model"} for m in sorted(fake.models or {"fake"})]
                self._json(200, {"object": "list", "data": data})
            else:
                self._json(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path.rstrip("/") == "/v1/embeddings":
                self._embeddings(body)
                return
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._json(404, {"error": {"message": f"no route {self.path}"}})
                return
            with fake.lock:
                fake.requests.append(body)
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                fake.arrivals.append(time.time())
            if (
                fake.api_key is not None
                and self.headers.get("Authorization") != f"Bearer {fake.api_key}"
            ):
                self._json(
                    401,
                    {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}},
                )
                return
            if fake.models is not None and body.get("model") not in fake.models:
                self._json(404, {"error": {"message": f"model '{body.get('model')}' not found"}})
                return
            if fake.refuse_tools and body.get("tools"):
                message = f"registry.ollama.ai/library/{body.get('model')} does not support tools"
                self._json(400, {"error": {"message": message}})
                return
            failure = fake._take_failure()
            if failure is not None:
                wait = failure.retry_after
                headers: dict[str, object] = {} if wait is None else {"Retry-After": wait}
                self._json(failure.status, {"error": {"message": failure.message}}, headers)
                return
            scenario = Scenario.from_model(str(body.get("model", "")))
            if scenario is None:
                scenario = Scenario(fake.ttft, fake.token_delay, None)
            messages = body.get("messages", [])
            # A partial reply to go on from (llama.cpp's and Ollama's prefill, vLLM's
            # continue_final_message): the reply to the conversation before it, minus that part.
            shown = ""
            if messages and messages[-1].get("role") == "assistant":
                shown = text_of_content(messages[-1].get("content"))
                messages = messages[:-1]
                with fake.lock:
                    fake.continued += 1
            reply: Reply = (
                "tok " * scenario.tokens if scenario.tokens is not None else fake.reply(messages)
            )
            reasoning = ""
            if isinstance(reply, Reasoning):
                reasoning, reply = reply.reasoning, reply.reply
            tool_use = reply if isinstance(reply, ToolUse) else ToolUse([], reply)
            if shown and tool_use.text.startswith(shown):
                tool_use = replace(tool_use, text=tool_use.text[len(shown) :])
            if body.get("stream"):
                self._stream(body, tool_use, scenario, reasoning)
            else:
                self._json(200, _completion(body, tool_use, reasoning))

        def _stream(
            self, body: dict[str, Any], reply: ToolUse, scenario: Scenario, reasoning: str = ""
        ) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            created = int(time.time())
            base = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": body.get("model", ""),
            }
            tokens = tokens_of(reply.text) if reply.text or not reply.calls else []
            # Reasoning first, as its own deltas; the role comes with the very first delta.
            deltas = [("reasoning_content", t) for t in (tokens_of(reasoning) if reasoning else [])]
            deltas += [("content", t) for t in tokens]
            with fake.lock:
                cut, fake.cut_after = fake.cut_after, None
            try:
                time.sleep(scenario.ttft)
                for i, (key, token) in enumerate(deltas):
                    if i == cut:
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if i and scenario.token_delay:
                        time.sleep(scenario.token_delay)
                    delta = {"role": "assistant", key: token} if i == 0 else {key: token}
                    self._event(
                        {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                    )
                for i, (name, arguments) in enumerate(reply.calls):
                    # As OpenAI streams them: id and name first, the arguments in fragments.
                    call_id = (
                        reply.call_ids[i]
                        if i < len(reply.call_ids)
                        else f"call_{i}_{time.monotonic_ns()}"
                    )
                    fragments: list[dict[str, Any]] = [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        },
                    ]
                    fragments += [
                        {"function": {"arguments": piece}}
                        for piece in split_fragments(arguments, reply.fragments)
                    ]
                    for fragment in fragments:
                        call_delta = {"tool_calls": [{"index": i, **fragment}]}
                        self._event(
                            {
                                **base,
                                "choices": [
                                    {"index": 0, "delta": call_delta, "finish_reason": None}
                                ],
                            }
                        )
                finish = "tool_calls" if reply.calls else "stop"
                self._event(
                    {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
                )
                if (body.get("stream_options") or {}).get("include_usage"):
                    prompt = sum(
                        len(m.get("content") or "") // 4 + 4 for m in body.get("messages", [])
                    )
                    thought = len(tokens_of(reasoning)) if reasoning else 0
                    usage = {
                        "prompt_tokens": prompt,
                        "completion_tokens": len(tokens) + thought,
                        "total_tokens": prompt + len(tokens) + thought,
                        # As OpenAI reports them: parts of the two counts above.
                        "prompt_tokens_details": {"cached_tokens": min(fake.cached_tokens, prompt)},
                        "completion_tokens_details": {"reasoning_tokens": thought},
                    }
                    with fake.lock:
                        fake.usages.append(usage)
                    self._event({**base, "choices": [], "usage": usage})
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")
            except (BrokenPipeError, ConnectionResetError):
                with fake.lock:
                    fake.disconnects += 1

        def _embeddings(self, body: dict[str, Any]) -> None:
            with fake.lock:
                fake.embedding_requests.append(body)
            if fake.embeddings_down:
                self._json(503, {"error": {"message": "embeddings are down"}})
                return
            given = body.get("input", [])
            texts = [given] if isinstance(given, str) else list(given)
            data = [
                {"object": "embedding", "index": i, "embedding": fake_embedding(t)}
                for i, t in enumerate(texts)
            ]
            usage = {"prompt_tokens": sum(len(t.split()) for t in texts)}
            usage["total_tokens"] = usage["prompt_tokens"]
            self._json(
                200,
                {"object": "list", "data": data, "model": body.get("model", ""), "usage": usage},
            )

        def _event(self, payload: dict[str, Any]) -> None:
            self._chunk(f"data: {json.dumps(payload)}\n\n".encode())

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _json(
            self, status: int, payload: dict[str, Any], headers: dict[str, object] | None = None
        ) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, str(value))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _completion(body: dict[str, Any], reply: ToolUse, reasoning: str = "") -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reasoning:
        message["reasoning_content"] = reasoning
    if reply.calls:
        message["tool_calls"] = [
            {
                "id": reply.call_ids[i] if i < len(reply.call_ids) else f"call_{i}",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            for i, (name, arguments) in enumerate(reply.calls)
        ]
    finish = "tool_calls" if reply.calls else "stop"
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--ttft", type=float, default=0.0)
    parser.add_argument("--token-delay", type=float, default=0.0)
    options = parser.parse_args()
    llm = FakeLLM(ttft=options.ttft, token_delay=options.token_delay).start(options.port)
    print(f"fake LLM at {llm.url}", flush=True)
    threading.Event().wait()
