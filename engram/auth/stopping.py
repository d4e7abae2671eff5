"""Ending a streaming call at once, with a status, from outside the code producing its replies.

A stream's replies are produced in a task of their own while the call's task waits for either
the next reply or a stop: so a revoked key, a flood over the rate or an input over its bound ends
the stream within moments, even while the servicer waits on a long turn or the client sends
nothing. The servicer's code runs whole in that one task, so context variables (log fields, trace
spans) it sets and resets stay consistent.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from contextlib import suppress
from contextvars import ContextVar
from typing import Any, TypeVar

import grpc

T = TypeVar("T")
Status = tuple[grpc.StatusCode, str]

_current: ContextVar[asyncio.Future[Status] | None] = ContextVar("engram_stream_stop", default=None)


class StreamFailure(Exception):
    """Raised by the code producing a stream's replies in place of `context.abort`: the call
    ends with this status once every reply produced before it has been sent. (An abort from the
    producing task itself would end the call at once, and the replies still on their way to the
    client, those of a turn that ended well, would be lost.)"""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def in_stream() -> bool:
    """Whether this code produces the replies of a stream `until_stopped` forwards."""
    return _current.get() is not None


def stop_current(code: grpc.StatusCode, message: str) -> bool:
    """End the streaming call this code serves with `code` at once; False if nothing can (the
    caller then reports the failure itself)."""
    stop = _current.get()
    if stop is None:
        return False
    end(stop, code, message)
    return True


def end(stop: asyncio.Future[Status], code: grpc.StatusCode, message: str) -> None:
    """Resolve `stop` (the first status given wins)."""
    if not stop.done():
        stop.set_result((code, message))


def new_stop() -> asyncio.Future[Status]:
    """A stop for the call being served, which `stop_current` in its servicer resolves."""
    stop: asyncio.Future[Status] = asyncio.get_running_loop().create_future()
    _current.set(stop)
    return stop


async def until_stopped(
    replies: Any, stop: asyncio.Future[Status], context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[Any]:
    """Yield `replies` (an async iterator, or an awaitable of one) until `stop` resolves: then
    end the producing task and abort the call with the stop's status."""
    queue: asyncio.Queue[tuple[Any] | Exception | None] = asyncio.Queue(maxsize=1)

    async def produce() -> None:
        source = replies
        try:
            if inspect.isawaitable(source):
                source = await source
            if source is not None:
                async for reply in source:
                    await queue.put((reply,))
        except Exception as err:  # the servicer's abort (AbortError) included: re-raised below
            await queue.put(err)
        else:
            await queue.put(None)
        finally:
            close = getattr(source, "aclose", None)
            if close is not None:
                with suppress(Exception):
                    await close()

    producer = asyncio.create_task(produce())
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait((getter, stop), return_when=asyncio.FIRST_COMPLETED)
            if stop.done():  # first, even with a reply ready: the stop is news the client needs
                getter.cancel()
                producer.cancel()
                with suppress(asyncio.CancelledError):
                    await producer
                code, message = stop.result()
                await context.abort(code, message)
            item = getter.result()
            if item is None:
                return
            if isinstance(item, StreamFailure):
                await context.abort(item.code, item.message)
            if isinstance(item, Exception):
                raise item
            yield item[0]
    finally:
        producer.cancel()
        with suppress(asyncio.CancelledError, Exception):
            await producer
