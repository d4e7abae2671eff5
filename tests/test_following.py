"""Following a turn told to come back `later`: the turn's tokens stand in for a held-back query.

Under a stream of updates Temporal can hold a `turn_state` query back for seconds while it answers
updates at once; a queued message's reply then came seconds after its turn ended. These tests
drive `turn_ended` against a stand-in handle whose query never answers, so that only the
tokens can move it on.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError

from engram.following import TurnGone, turn_ended
from engram.vocabulary import TurnState
from engram.workflows.types import TurnResult


class Handle:
    """An agent's handle: `turn_state` answers as `states` says (never, for None or once they
    run out), and `wait_for_turn` answers with `result` (or is refused, when None)."""

    def __init__(self, result: TurnResult | None, states: list[str | None] | None = None) -> None:
        self.result = result
        self.states = states or []
        self.updates: list[str] = []
        self.queries = 0

    async def query(self, *_: Any, **__: Any) -> str:
        self.queries += 1
        state = self.states.pop(0) if self.states else None
        while state is None:
            await asyncio.Event().wait()
        return state

    async def execute_update(self, *_: Any, id: str, **__: Any) -> TurnResult:
        self.updates.append(id)
        if self.result is None:
            raise WorkflowUpdateFailedError(RuntimeError("unknown message"))
        return self.result


async def later() -> TurnResult:
    return TurnResult(message_id="m1", events=[], later=True)


def ended() -> TurnResult:
    return TurnResult(message_id="m1", events=[], first_seq=4, last_seq=7)


async def test_the_turns_tokens_join_its_wait_while_the_query_is_held_back() -> None:
    handle = Handle(ended())
    tokens = asyncio.Event()
    following = asyncio.ensure_future(turn_ended(handle, "m1", later(), tokens.wait))  # type: ignore[arg-type]
    await asyncio.sleep(0.2)
    assert not following.done() and handle.queries >= 1 and handle.updates == []
    tokens.set()
    result = await asyncio.wait_for(following, 1)
    assert result.last_seq == 7
    # The followers' shared wait, which the running turn admits: not an update of its own.
    assert handle.updates == ["wait-turn-m1"]


async def test_tokens_of_a_turn_archived_meanwhile_find_it_gone() -> None:
    # Queued at first; then held back while the tokens come; then, after the wait is refused, gone.
    handle = Handle(None, states=[TurnState.QUEUED, None, TurnState.UNKNOWN])
    tokens = asyncio.Event()
    following = asyncio.ensure_future(turn_ended(handle, "m1", later(), tokens.wait))  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    tokens.set()
    with pytest.raises(TurnGone):
        await asyncio.wait_for(following, 1)
    assert handle.updates == ["wait-turn-m1"]


async def test_without_tokens_the_query_says_when_the_turn_ended() -> None:
    handle = Handle(ended(), states=[TurnState.QUEUED, TurnState.ENDED])
    result = await asyncio.wait_for(turn_ended(handle, "m1", later()), 2)  # type: ignore[arg-type]
    assert result.first_seq == 4
    # An ended turn is read with an update of the caller's own, answered at once.
    assert len(handle.updates) == 1 and handle.updates[0].startswith("wait-turn-m1-")
