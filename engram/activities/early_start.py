"""The model's request sent while Temporal is still recording the turn that makes it.

A turn is recorded in one workflow task (the update accepted, the LLM activity scheduled), and the
activity starts only once the server has committed that task and handed the activity back. The
model need not wait for the commit: when the workflow schedules `stream_chat` (never on replay),
the worker sends the same request at once, and the activity, when it starts on this worker, takes
that response instead of sending its own. Nothing is read from the response before the activity
runs, and the activity runs only after the commit: no token reaches a client for a message that was
not recorded, and the model's time to first token runs alongside the commit instead of after it.

When the early request is not the one the activity needs, it is closed unread and the activity
sends its own; the model did work for nothing, and nobody sees it:
- the workflow task is not committed (the worker dies, the task fails, the workflow was closed
  meanwhile): no activity comes; the request is closed after EXPIRY seconds, or dies with the
  process;
- the activity starts on another worker: that worker sends its own request; this one expires;
- the activity's request differs (another attempt, a circuit opened meanwhile, the tenant's budget
  refused the call, the prompt changed): it is closed and the activity sends its own;
- the early request could not be prepared (a prompt text missing from the store, say): the
  activity prepares its own and meets the problem itself.
An endpoint's answer to the early request is the activity's, errors included: a failing endpoint
is not asked twice. A call the tenant's daily budget would refuse is not sent early (the budget is
asked first, and the activity holds it as before).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from temporalio import workflow
from temporalio.worker import (
    Interceptor,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)
from temporalio.workflow import ActivityHandle

from engram.observability import metrics
from engram.workflows.types import LLMRequest

log = logging.getLogger(__name__)

# What the workflow schedules and the worker answers early.
ACTIVITY = "stream_chat"
# An early request nobody claimed is closed after this long (seconds). The activity is usually
# handed back with the commit, within milliseconds; only a task that was never committed, or an
# activity that went to another worker, leaves one waiting.
EXPIRY = 30.0

# workflow id, run id, message id, first text seq, tool rounds so far: one LLM call of one turn.
Key = tuple[str, str, str, int, int]


@dataclass
class Opened:
    """A request sent: to which endpoint, with which body, and its response, unread (or how the
    endpoint refused it, which the activity then meets as if it had sent the request itself)."""

    endpoint: str
    body: dict[str, Any]
    response: Any = None  # openai.AsyncStream, closed with .close()
    error: BaseException | None = None


Opener = Callable[[LLMRequest], Awaitable[Opened | None]]


def key_of(workflow_id: str | None, run_id: str | None, request: LLMRequest) -> Key:
    return (
        workflow_id or "",
        run_id or "",
        request.message_id,
        request.first_text_seq,
        len(request.tool_rounds),
    )


@dataclass
class _Early:
    task: asyncio.Task[Opened | None]
    expiry: asyncio.TimerHandle


class EarlyStarts:
    """The early requests of one worker, by the call they were sent for."""

    def __init__(self, opener: Opener, expiry: float = EXPIRY) -> None:
        self.opener = opener
        self.expiry = expiry
        self.loop: asyncio.AbstractEventLoop | None = None
        self._calls: dict[Key, _Early] = {}
        self._closing: set[asyncio.Future[None]] = set()
        # Sent, taken by their activity, and closed unread (also counted in /metrics).
        self.started = self.claimed = self.wasted = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the worker's activities run on, where the requests are sent from."""
        self.loop = loop

    def start_soon(self, key: Key, request: LLMRequest) -> None:
        """Send `request` early. Called from the workflow's thread, so it only queues the send."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._start, key, request)

    def _start(self, key: Key, request: LLMRequest) -> None:
        assert self.loop is not None
        self.discard(key)
        task = self.loop.create_task(self._open(request))
        self._calls[key] = _Early(task, self.loop.call_later(self.expiry, self.discard, key))
        self.started += 1

    async def _open(self, request: LLMRequest) -> Opened | None:
        try:
            return await self.opener(request)
        except Exception as err:  # the activity prepares its own and meets the problem itself
            log.debug("early request not sent: %s", err)
            return None

    async def claim(self, key: Key, endpoint: str, body: dict[str, Any]) -> Any | None:
        """The response of the early request for `key` if it is this very request to this
        endpoint; None (and the early one closed) otherwise."""
        early = self._calls.pop(key, None)
        if early is None:
            return None
        early.expiry.cancel()
        try:
            opened = await asyncio.shield(early.task)
        except asyncio.CancelledError:
            self._wasted()
            self._close_when_done(early.task)
            raise
        if opened is None:
            self._wasted()
            return None
        if opened.endpoint != endpoint or opened.body != body:
            self._wasted()
            await _close(opened)
            return None
        self.claimed += 1
        metrics.llm_early_request("claimed")
        if opened.error is not None:
            raise opened.error
        return opened.response

    def discard(self, key: Key) -> None:
        """Close the early request for `key`, if one is still unclaimed."""
        early = self._calls.pop(key, None)
        if early is None:
            return
        early.expiry.cancel()
        self._wasted()
        self._close_when_done(early.task)

    def pending(self) -> int:
        return len(self._calls)

    def _wasted(self) -> None:
        self.wasted += 1
        metrics.llm_early_request("wasted")

    def _close_when_done(self, task: asyncio.Task[Opened | None]) -> None:
        if not task.done():
            task.cancel()
            return
        opened = None if task.cancelled() else task.result()
        if opened is not None:
            closing = asyncio.ensure_future(_close(opened))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)


async def _close(opened: Opened) -> None:
    if opened.response is not None:
        with contextlib.suppress(Exception):
            await opened.response.close()


class EarlyStartInterceptor(Interceptor):
    """Sends a new LLM call's request when its workflow schedules it, for activities on
    `task_queue` (this worker's)."""

    def __init__(self, early: EarlyStarts, task_queue: str) -> None:
        self.early = early
        self.task_queue = task_queue

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        early, task_queue = self.early, self.task_queue

        class Inbound(WorkflowInboundInterceptor):
            def init(self, outbound: WorkflowOutboundInterceptor) -> None:
                super().init(_Outbound(outbound, early, task_queue))

        return Inbound


class _Outbound(WorkflowOutboundInterceptor):
    def __init__(
        self, next: WorkflowOutboundInterceptor, early: EarlyStarts, task_queue: str
    ) -> None:
        super().__init__(next)
        self.early = early
        self.task_queue = task_queue

    def start_activity(self, input: StartActivityInput) -> ActivityHandle[Any]:
        if (
            input.activity == ACTIVITY
            and not workflow.unsafe.is_replaying()
            and (input.task_queue or workflow.info().task_queue) == self.task_queue
            and input.args
            and isinstance(input.args[0], LLMRequest)
        ):
            info = workflow.info()
            request = input.args[0]
            # The lists the workflow may go on changing after this call (their items it does not),
            # and the tenant as the activity will know it (its priority's fairness key).
            request = dataclasses.replace(
                request,
                messages=list(request.messages),
                tool_rounds=list(request.tool_rounds),
                tenant=request.tenant
                or (input.priority.fairness_key if input.priority else None)
                or info.priority.fairness_key
                or "",
            )
            self.early.start_soon(key_of(info.workflow_id, info.run_id, request), request)
        return super().start_activity(input)
