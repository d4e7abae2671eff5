"""The gRPC side of auth: every client call is authenticated and metered before it runs.

The interceptor wraps each method's handler, so the checks run inside the call (where they can
abort it with a status) and the caller's `Principal` is set in the call's own context for the
servicer to read. The internal TokenRelay (checked by its own secret) and the health service
(probes carry no key) are let through; any other service, present or future, needs a key.

No request body is read before its key is checked. gRPC reads a unary call's message before its
handler runs, so every method is served as its client-streaming counterpart: the handler checks
the key from the call's metadata, and only then reads the one message (as bytes, refused past
`SMALL_REQUEST_BYTES` unless the method is Chat, whose messages carry attachments) and decodes
it. A refused call's body is never read beyond what HTTP/2 flow control lets into the socket.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import grpc

from engram.auth import metadata, stopping
from engram.auth.failures import peer_host
from engram.auth.keyring import AuthError, KeyRing
from engram.auth.limits import LimitExceeded, Limits, RateLimiter, StreamSlots
from engram.auth.principal import Principal, set_current

log = logging.getLogger(__name__)

UNCHECKED_PREFIXES = (
    "/engram.relay.v1.TokenRelay/",
    "/grpc.health.v1.Health/",
)
CHAT_METHOD = "/dura.api.v1.AgentService/Chat"

Context = grpc.aio.ServicerContext[Any, Any]
if TYPE_CHECKING:  # the stubs' generics; at run time these classes take no parameters
    Handler = grpc.RpcMethodHandler[Any, Any]
    Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    Interceptor = grpc.aio.ServerInterceptor
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler]]


# How long a call refused for its rate waits before it hears so (see the tarpit below).
REFUSAL_DELAY = 0.25
# How often an open stream's key is checked again; with the key ring's 1 s refresh, a stream
# ends within about 1.5 s of its key's revocation or expiry.
STREAM_CHECK_SECONDS = 0.5
# What any method but Chat may be sent: several 64 KiB fields and a list of tools fit easily.
SMALL_REQUEST_BYTES = 1024 * 1024


class AuthInterceptor(Interceptor):
    def __init__(
        self,
        keyring: KeyRing,
        limits: Limits,
        rate: RateLimiter | None = None,
        chat_streams: StreamSlots | None = None,
    ) -> None:
        self.keyring = keyring
        # Given by the gateway when its HTTP API shares them: one budget per key over both.
        self.rate = rate or RateLimiter(limits.rate, limits.burst)
        self.chat_streams = chat_streams or StreamSlots(limits.chat_streams)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        # None (an unknown method) at run time, whatever the stubs say: gRPC answers UNIMPLEMENTED.
        handler: Handler | None = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(UNCHECKED_PREFIXES):
            return handler  # type: ignore[return-value]
        return self._wrap(handler, method)

    async def _admit(self, context: Context) -> Principal:
        """Authenticate and charge the call; aborts it (raising) if refused."""
        try:
            principal = await self.keyring.authenticate(
                metadata.pairs(context), peer_host(context.peer())
            )
        except AuthError as err:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(err))
        except LimitExceeded as err:
            await asyncio.sleep(REFUSAL_DELAY)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
        if principal.scoped:
            try:
                self.rate.charge(principal.key_id)
            except LimitExceeded as err:
                # A tarpit: the refusal comes after a pause that costs this gateway nothing, so a
                # client that floods past its limit slows itself down rather than everyone else.
                await asyncio.sleep(REFUSAL_DELAY)
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
        set_current(principal)
        return principal

    def _wrap(self, handler: Handler, method: str) -> Handler:
        serializer = {"response_serializer": handler.response_serializer}
        limit = 0 if method == CHAT_METHOD else SMALL_REQUEST_BYTES
        decode = handler.request_deserializer
        if handler.unary_unary is not None:
            unary = self._unary(self._single(handler.unary_unary, decode, limit))
            return grpc.stream_unary_rpc_method_handler(unary, **serializer)
        if handler.unary_stream is not None:
            streaming = self._streaming(
                self._single(handler.unary_stream, decode, limit), method, metered=False
            )
            return grpc.stream_stream_rpc_method_handler(streaming, **serializer)
        codec = {"request_deserializer": decode, **serializer}
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(self._unary(handler.stream_unary), **codec)
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(handler.stream_stream, method, metered=True), **codec
        )

    @staticmethod
    def _single(
        behavior: Callable[..., Any], decode: Callable[[bytes], Any] | None, limit: int
    ) -> Callable[..., Any]:
        """A unary-request behavior served from a request stream: it is given the one message,
        read (as bytes) only now that the call is admitted, bounded and decoded."""

        async def read(context: Context) -> Any:
            raw = await context.read()
            if not isinstance(raw, bytes):  # grpc.aio.EOF: the client sent no message
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the request has no message")
            if 0 < limit < len(raw):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the request is {len(raw)} bytes; this method takes at most {limit}",
                )
            try:
                return decode(raw) if decode is not None else raw
            except Exception:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid message"
                )

        def call(_requests: Any, context: Context) -> Any:
            if inspect.isasyncgenfunction(behavior):

                async def replies() -> AsyncIterator[Any]:
                    async for reply in behavior(await read(context), context):
                        yield reply

                return replies()

            async def reply() -> Any:
                result = behavior(await read(context), context)
                return await result if inspect.isawaitable(result) else result

            return reply()

        return call

    def _unary(self, behavior: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        async def call(request: Any, context: Context) -> Any:
            await self._admit(context)
            result = behavior(request, context)
            return await result if inspect.isawaitable(result) else result

        return call

    def _streaming(
        self, behavior: Callable[..., Any], method: str, *, metered: bool
    ) -> Callable[..., AsyncIterator[Any]]:
        async def call(request: Any, context: Context) -> AsyncIterator[Any]:
            principal = await self._admit(context)
            slot: AbstractContextManager[None] = nullcontext()
            if principal.scoped and method == CHAT_METHOD:
                try:
                    slot = self.chat_streams.hold(principal.key_id)
                    slot.__enter__()
                except LimitExceeded as err:
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
            stop = stopping.new_stop()
            watch = asyncio.create_task(self._watch(principal, stop)) if principal.scoped else None
            try:
                if metered and principal.scoped:
                    request = self._metered(request, principal, stop)
                replies = stopping.until_stopped(behavior(request, context), stop, context)
                async for message in replies:
                    yield message
            finally:
                if watch is not None:
                    watch.cancel()
                slot.__exit__(None, None, None)

        return call

    async def _watch(self, principal: Principal, stop: asyncio.Future[stopping.Status]) -> None:
        # A stream outlives the check made when it opened: a key revoked or expired since ends
        # it even while the client sends nothing and the servicer waits on a long turn.
        while not stop.done():
            await asyncio.sleep(STREAM_CHECK_SECONDS)
            refusal = await self.keyring.still_valid(principal.key_id)
            if refusal is not None:
                log.info("closed a stream of API key %s: no longer valid", principal.key_id)
                stopping.end(stop, grpc.StatusCode.UNAUTHENTICATED, refusal)

    async def _metered(
        self,
        requests: AsyncIterator[Any],
        principal: Principal,
        stop: asyncio.Future[stopping.Status],
    ) -> AsyncIterator[Any]:
        # Every message on a stream is checked and costs what a call costs: a stream must be
        # neither a way around a revocation nor around the rate limit. A refusal ends the whole
        # call at once (the servicer is cancelled), so nothing further is read here.
        async for request in requests:
            refusal = await self.keyring.still_valid(principal.key_id)
            if refusal is not None:
                stopping.end(stop, grpc.StatusCode.UNAUTHENTICATED, refusal)
                await asyncio.Event().wait()  # the servicer reading this is cancelled meanwhile
            try:
                self.rate.charge(principal.key_id)
            except LimitExceeded as err:
                stopping.end(stop, grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
                await asyncio.Event().wait()
            yield request
