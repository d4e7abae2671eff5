"""A call's metadata as (key, value) pairs, which is what gRPC hands servicers at run time."""

from __future__ import annotations

from typing import Any

import grpc

Pairs = list[tuple[str, str | bytes]]


def pairs(context: grpc.aio.ServicerContext[Any, Any]) -> Pairs:
    # The stubs describe a Mapping; the runtime gives a tuple of (key, value) pairs, which may
    # repeat a key. Taking it as pairs keeps every value.
    raw: Any = context.invocation_metadata() or ()
    return [(str(key), value) for key, value in raw]
