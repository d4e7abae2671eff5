"""The turn's calls to the model: the LLM activity, its prompt sent by reference, a budget that
holds a call back until it is raised, and a failed call read back as a result.

Workflow code. A call the agent's own budget or its tenant's daily budget would cross is never
sent: the turn waits in the workflow (no update held, no worker slot) for an Edit, a resume or the
next UTC day, and a cancel or a deletion ends the wait.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from engram.activities.llm_stream import LLMActivities
from engram.vocabulary import TENANT_ATTRIBUTE, ErrorCode, Notice
from engram.workflows import cost, patches
from engram.workflows.ledger import TurnLedger
from engram.workflows.llm_outcome import LLM_RETRY, cancelled, failed_result
from engram.workflows.prompt_refs import PromptTexts
from engram.workflows.turn import TurnInProgress
from engram.workflows.types import AgentState, LLMRequest, LLMResult


class ModelCalls:
    def __init__(
        self,
        state: AgentState,
        turn: TurnInProgress,
        ledger: TurnLedger,
        *,
        status_changed: Callable[[], None],
        announce: Callable[[], Awaitable[None]],
    ) -> None:
        self.state = state
        self.turn = turn
        self.ledger = ledger
        self.texts = PromptTexts(state)
        self._status_changed = status_changed
        self._announce = announce
        # A resume or an Edit came while a call waits for its tenant's daily budget: try again.
        self.budget_nudged = False

    async def call(self, request: LLMRequest, *, interruptible: bool = False) -> LLMResult:
        # Set at start, for good (an eagerly started activity may not carry the fairness key).
        request.tenant = workflow.info().typed_search_attributes.get(TENANT_ATTRIBUTE) or ""
        budget = bool(self.state.spec.settings.max_cost_usd) and patches.check(patches.COST_BUDGET)
        tenant_waits = patches.check(patches.TENANT_BUDGET)
        if not budget and not tenant_waits:
            return await self._priced_call(request, interruptible)
        while True:
            if budget:
                request = cost.budgeted(request, self.state)
            result = await self._priced_call(request, interruptible)
            if budget and result.error_code == ErrorCode.BUDGET_EXHAUSTED:
                goes_on = await self._budget_raised(result.error_message)
            elif tenant_waits and result.error_code == ErrorCode.TENANT_BUDGET_EXHAUSTED:
                goes_on = await self._tenant_budget_waited(result.error_message)
            else:
                return result
            if not goes_on:
                return cancelled([])

    def _stopping(self) -> bool:
        return self.turn.cancelling or self.ledger.deleting

    async def _budget_raised(self, why: str) -> bool:
        """The call was not sent: it could cross the budget. Wait for an Edit to raise the budget
        (True) or for a cancel or delete (False)."""
        budget = self.state.spec.settings.max_cost_usd
        self.state.budget_exhausted = True
        self._status_changed()
        self.turn.status(
            Notice.BUDGET_EXHAUSTED,
            f"budget exhausted: {cost.usd(self.state.cost_usd)} spent of "
            f"{cost.usd(budget)}; {why}. Raise max_cost_usd with an Edit to go on.",
            _now(),
        )
        await self._announce()
        await workflow.wait_condition(
            lambda: self.state.spec.settings.max_cost_usd != budget or self._stopping()
        )
        self.state.budget_exhausted = False
        self._status_changed()
        if self._stopping():
            return False
        self.turn.status(
            Notice.BUDGET_RAISED,
            f"budget now {cost.usd(self.state.spec.settings.max_cost_usd)}: going on",
            _now(),
        )
        return True

    async def _tenant_budget_waited(self, why: str) -> bool:
        """The call was not sent: it could cross its tenant's daily budget, which the workflow
        cannot see raised. Wait for a resume or an Edit (the budget may have been raised), or the
        next UTC day, then try again (True); or for a cancel or delete (False)."""
        self.state.budget_exhausted = True
        self.budget_nudged = False
        self._status_changed()
        self.turn.status(
            Notice.BUDGET_EXHAUSTED,
            f"tenant budget exhausted: {why}. Raise the tenant's daily budget (engram keys "
            "budget) and resume the agent to go on; otherwise it tries again at the next UTC day.",
            _now(),
        )
        await self._announce()
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self.budget_nudged or self._stopping(),
                timeout=cost.until_next_utc_day(_now()),
                timeout_summary="tenant budget: the next UTC day",
            )
        self.state.budget_exhausted = False
        self._status_changed()
        if self._stopping():
            return False
        self.turn.status(Notice.BUDGET_RAISED, "trying the call again", _now())
        return True

    async def _priced_call(self, request: LLMRequest, interruptible: bool) -> LLMResult:
        if not patches.check(patches.PROMPT_BY_REFERENCE):
            return await self._llm_activity(request, interruptible)
        sent = self.texts.referenced(request)
        result = await self._llm_activity(sent, interruptible)
        if result.error_code == ErrorCode.TEXT_MISSING:
            self.texts.forget()
            sent = self.texts.referenced(request)
            result = await self._llm_activity(sent, interruptible)
        self.texts.remember(sent, result)
        return result

    async def _llm_activity(self, request: LLMRequest, interruptible: bool) -> LLMResult:
        llm_call = workflow.start_activity_method(
            LLMActivities.stream_chat,
            request,
            summary=f"{request.model}: {len(request.tool_rounds)} tool rounds so far",
            start_to_close_timeout=timedelta(minutes=10),
            # Short, so a turn whose worker died moves to another worker within seconds.
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=LLM_RETRY,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        self.turn.calling(llm_call, interruptible=interruptible)
        try:
            return await llm_call
        except ActivityError as err:
            return await self._failed_llm_call(err)

    async def _failed_llm_call(self, err: ActivityError) -> LLMResult:
        result = failed_result(err)
        if result.checkpoint is not None and patches.check(patches.REPLY_CHECKPOINTS):
            # The last attempt's heartbeat named where its reply so far is, not the reply.
            with contextlib.suppress(ActivityError):
                result.pieces = await workflow.execute_activity_method(
                    LLMActivities.load_reply,
                    result.checkpoint,
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=LLM_RETRY,
                )
        result.checkpoint = None
        return result


def _now() -> float:
    return workflow.now().timestamp()
