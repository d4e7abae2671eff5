"""Server-sent events: framing, and a streamed reply whose first message is awaited before the
HTTP status is sent (so a refused turn is a 4xx, not a 200 stream that fails)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, TypeVar

from starlette.responses import StreamingResponse

from engram.auth import stopping
from engram.http.calls import HttpContext
from engram.http.errors import ApiError, from_exception
from engram.http.gate import StreamGuard

T = TypeVar("T")

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def frame(data: Any, *, event: str | None = None, event_id: str | None = None) -> bytes:
    """One SSE event; `data` is sent as JSON unless it is a str."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    lines.extend(f"data: {line}" for line in text.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


async def opened(source: AsyncIterator[T]) -> AsyncGenerator[T, None]:
    """`source`, its first item already awaited: a failure to start raises here, before any
    response is sent."""
    try:
        first = await anext(source)
    except StopAsyncIteration:
        first = None
        empty = True
    else:
        empty = False

    async def rest() -> AsyncGenerator[T, None]:
        try:
            if not empty:
                yield first  # type: ignore[misc]
            async for item in source:
                yield item
        finally:
            close = getattr(source, "aclose", None)
            if close is not None:
                await close()

    return rest()


def stream(
    events: AsyncIterator[bytes], on_error: Callable[[ApiError], bytes], guard: StreamGuard
) -> StreamingResponse:
    """A text/event-stream response of `events`; a failure mid-stream (the caller's key
    revoked included) is sent as the event `on_error` makes of it, and ends the stream. `guard`
    is closed when the stream ends."""

    async def body() -> AsyncIterator[bytes]:
        try:
            source = events
            if guard.stop is not None:
                source = stopping.until_stopped(events, guard.stop, HttpContext())  # type: ignore[arg-type]
            async for chunk in source:
                yield chunk
        except Exception as err:
            yield on_error(from_exception(err))
        finally:
            guard.close()

    return StreamingResponse(body(), media_type="text/event-stream", headers=HEADERS)
