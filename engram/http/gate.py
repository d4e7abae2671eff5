"""What every HTTP request passes before any of its body is read: the size it declares, its API
key, and its key's rate: the gRPC interceptor's checks (engram.auth.interceptor), with the same
key ring, the same rate limiter and the same count of open streams per key.

It runs as ASGI middleware, so a request refused here never has its body read; a body sent
without a Content-Length (chunked) is counted as it is read and refused once over the limit.
The caller's Principal is set in the request's context, where the gateway's code reads it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import ExitStack
from typing import Any

import grpc
from starlette.exceptions import HTTPException

from engram.auth import stopping
from engram.auth.failures import peer_host
from engram.auth.interceptor import REFUSAL_DELAY, STREAM_CHECK_SECONDS
from engram.auth.keyring import AuthError, KeyRing
from engram.auth.limits import LimitExceeded, RateLimiter, StreamSlots
from engram.auth.principal import Principal, current, set_current
from engram.http.errors import ApiError, too_large

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)

# Paths served without a key: the API's description and a liveness probe.
OPEN_PATHS = frozenset({"/openapi.json", "/docs", "/healthz", "/"})
# The web console's static files: it asks for a key itself and sends it on every API call.
OPEN_PREFIX = "/console/"
# Where the caller's Principal is kept in the request's scope state.
PRINCIPAL_STATE = "engram_principal"


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a body without a Content-Length grows past its limit (an
    HTTPException, so that FastAPI's body parsing lets it through as it is)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large(limit).message)


class Gate:
    """Admits requests: authenticated, and charged against their key's rate."""

    def __init__(self, keyring: KeyRing, rate: RateLimiter, streams: StreamSlots) -> None:
        self.keyring = keyring
        self.rate = rate
        self.streams = streams

    async def admit(self, headers: list[tuple[str, str]], peer: str) -> Principal:
        # Only the key's own header is handed on: the key ring reads `authorization` and
        # `x-api-key`, as from gRPC metadata.
        pairs: list[tuple[str, str | bytes]] = [
            (name, value) for name, value in headers if name in ("authorization", "x-api-key")
        ]
        try:
            principal = await self.keyring.authenticate(pairs, peer)
        except AuthError as err:
            message = _http_words(str(err))
            raise ApiError(401, message, "authentication_error", "invalid_api_key") from None
        except LimitExceeded as err:
            await asyncio.sleep(REFUSAL_DELAY)
            raise ApiError(429, str(err), "rate_limit_error", "rate_limit_exceeded") from None
        if principal.scoped:
            try:
                self.rate.charge(principal.key_id)
            except LimitExceeded as err:
                # The interceptor's tarpit: a flood slows itself down, not everyone else.
                await asyncio.sleep(REFUSAL_DELAY)
                raise ApiError(429, str(err), "rate_limit_error", "rate_limit_exceeded") from None
        return principal

    def open_stream(self) -> StreamGuard:
        """What a streamed reply holds while it lasts, as a gRPC Chat stream does: one of the
        caller's open-stream slots (ApiError 429 when none is left), and a watch that ends the
        stream once the caller's key is revoked or expires. Close it when the stream ends."""
        guard = StreamGuard()
        principal = current()
        if not principal.scoped:
            return guard
        try:
            guard.held.enter_context(self.streams.hold(principal.key_id))
        except LimitExceeded as err:
            raise ApiError(429, str(err), "rate_limit_error", "rate_limit_exceeded") from None
        stop: asyncio.Future[stopping.Status] = asyncio.get_running_loop().create_future()
        watch = asyncio.create_task(self._watch(principal.key_id, stop))
        guard.stop = stop
        guard.held.callback(watch.cancel)
        return guard

    async def _watch(self, key_id: str, stop: asyncio.Future[stopping.Status]) -> None:
        while not stop.done():
            await asyncio.sleep(STREAM_CHECK_SECONDS)
            refusal = await self.keyring.still_valid(key_id)
            if refusal is not None:
                log.info("closed an HTTP stream of API key %s: no longer valid", key_id)
                stopping.end(stop, grpc.StatusCode.UNAUTHENTICATED, refusal)


class StreamGuard:
    """A streamed reply's slot and key watch (engram.http.gate.Gate.open_stream)."""

    def __init__(self) -> None:
        self.held = ExitStack()
        self.stop: asyncio.Future[stopping.Status] | None = None

    def close(self) -> None:
        self.held.close()


def _http_words(message: str) -> str:
    return message.replace("send gRPC metadata", "send the header")


class GateMiddleware:
    """ASGI middleware: size, key and rate, before the route reads anything."""

    def __init__(self, app: ASGIApp, gate: Gate, limit_of: Callable[[str], int]) -> None:
        self.app = app
        self.gate = gate
        self.limit_of = limit_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
        limit = self.limit_of(scope["path"])
        try:
            declared = _content_length(headers)
            if declared > limit:
                raise too_large(limit)
            client = scope.get("client") or ("", 0)
            principal = await self.gate.admit(headers, peer_host(f"ipv4:{client[0]}:{client[1]}"))
        except ApiError as err:
            await err.response()(scope, receive, send)
            return
        set_current(principal)
        # Also in the scope, for what runs outside this request's context (the MCP tools).
        scope.setdefault("state", {})[PRINCIPAL_STATE] = principal
        await self.app(scope, _bounded(receive, limit), send)


def _is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIX)


def _content_length(headers: list[tuple[str, str]]) -> int:
    for name, value in headers:
        if name == "content-length":
            try:
                return int(value)
            except ValueError:
                raise ApiError(
                    400, "Content-Length is not a number", "invalid_request_error"
                ) from None
    return 0


def _bounded(receive: Receive, limit: int) -> Receive:
    read = 0

    async def bounded() -> Message:
        nonlocal read
        message = await receive()
        if message["type"] == "http.request":
            read += len(message.get("body", b""))
            if read > limit:
                raise BodyTooLarge(limit)
        return message

    return bounded
