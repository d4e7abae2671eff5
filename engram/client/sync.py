"""The blocking client: `Engram` (a connection) and `Agent` (a handle on one agent).

    with Engram("localhost:50051") as engram:
        agent = engram.create_agent(model="llama3.1", goal="Help with Postgres.")
        for event in agent.send("Why are joins on 'users' slow?"):
            ...

Every call carries the API key, when given, as `authorization: Bearer <key>`. A stream that drops
(a gateway killed or restarted, the network gone) is picked up again with backoff, and the caller
sees every event exactly once, in order.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc

from engram.client import requests
from engram.client.connection import DEFAULT_ADDRESS as DEFAULT_ADDRESS
from engram.client.connection import AgentListing, Reconnect, call_metadata, credentials
from engram.client.connection import ReconnectHook as ReconnectHook
from engram.client.errors import EngramError, TurnFailed
from engram.client.events import Error, Event, Final
from engram.client.hooks import Approver, ClientTools, ToolOutcome, as_decision, failure, outcome_of
from engram.client.records import AgentInfo, TurnRecord
from engram.client.turn import StreamCursor, TurnResume, Waits
from engram.v1 import agent_pb2, agent_pb2_grpc
from engram.vocabulary import Waiting


class Engram:
    """A connection to an Engram gateway."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        api_key: str | None = None,
        *,
        tls: bool = False,
        root_certificates: bytes | None = None,
        timeout: float = 30.0,
        reconnect_timeout: float = 60.0,
        on_reconnect: ReconnectHook | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.reconnect_timeout = reconnect_timeout
        self.on_reconnect = on_reconnect
        tls_credentials = credentials(tls, root_certificates)
        self._channel = (
            grpc.secure_channel(address, tls_credentials)
            if tls_credentials
            else grpc.insecure_channel(address)
        )
        self._stub = agent_pb2_grpc.AgentServiceStub(self._channel)
        self._metadata = call_metadata(api_key)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Engram:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- agents ---------------------------------------------------------------------------

    def create_agent(
        self,
        *,
        model: str = "",
        goal: str = "",
        system_prompt: str = "",
        tools: Sequence[requests.ToolSpec] = (),
        client_tools: Mapping[str, Callable[..., Any]] | None = None,
        approver: Approver | None = None,
        temperature: float | None = None,
        max_context_tokens: int | None = None,
        metadata: Mapping[str, str] | None = None,
        double_texting: str = "",
    ) -> Agent:
        """A new agent. `tools` names worker or MCP tools (or gives `agent_pb2.Tool`s);
        `client_tools` are functions this client runs, declared with schemas from their
        signatures; `approver` decides calls that wait for approval (None: a person does);
        `double_texting` says what becomes of a message sent while the agent works."""
        hooks = ClientTools(client_tools)
        request = requests.create_agent(
            model=model,
            goal=goal,
            system_prompt=system_prompt,
            tools=[*tools, *hooks.declarations()],
            temperature=temperature,
            max_context_tokens=max_context_tokens,
            metadata=metadata,
            double_texting=double_texting,
        )
        # Not resent on a dropped connection: that could create a second agent. It waits for the
        # gateway to be reachable instead.
        response = self._unary("CreateAgent", request, idempotent=False)
        return Agent(self, response.agent_id, hooks, approver)

    def agent(
        self,
        agent_id: str,
        *,
        client_tools: Mapping[str, Callable[..., Any]] | None = None,
        approver: Approver | None = None,
    ) -> Agent:
        """A handle on an existing agent (nothing is sent until it is used)."""
        return Agent(self, agent_id, ClientTools(client_tools), approver)

    def list_agents(self, status: str = "", limit: int | None = None) -> list[AgentInfo]:
        """Running agents (or those with `status`), newest first, as ListAgents lists them:
        stats are not filled in; `agent(id).info()` has them."""
        listing = AgentListing(status, limit)
        while (request := listing.next_request()) is not None:
            listing.add(self._unary("ListAgents", request))
        return listing.agents()

    def list_tools(self) -> list[agent_pb2.Tool]:
        return list(self._unary("ListTools", agent_pb2.ListToolsRequest()).tools)

    # --- plumbing -------------------------------------------------------------------------

    def _unary(self, name: str, request: Any, *, idempotent: bool = True) -> Any:
        method = getattr(self._stub, name)
        reconnect = self._reconnect()
        while True:
            try:
                return method(
                    request,
                    timeout=self.timeout,
                    metadata=self._metadata,
                    wait_for_ready=not idempotent,
                )
            except grpc.RpcError as err:
                time.sleep(reconnect.delay_after(err, retry=idempotent))

    def _reconnect(self) -> Reconnect:
        return Reconnect(self.reconnect_timeout, self.on_reconnect)

    def _chat(self, message: agent_pb2.ClientMessage) -> Any:
        return self._stub.Chat(iter([message]), metadata=self._metadata)

    def _replay(self, agent_id: str, after: int, include_history: bool = False) -> Any:
        request = agent_pb2.ReplayRequest(
            agent_id=agent_id, from_sequence=after, include_history=include_history
        )
        return self._stub.Replay(request, metadata=self._metadata)


class Agent:
    """One agent: chat with it, answer its tool calls, control and read it."""

    def __init__(
        self,
        engram: Engram,
        agent_id: str,
        client_tools: ClientTools | None = None,
        approver: Approver | None = None,
    ) -> None:
        self.engram = engram
        self.agent_id = agent_id
        self.client_tools = client_tools or ClientTools()
        self.approver = approver

    def __repr__(self) -> str:
        return f"Agent({self.agent_id!r})"

    # --- chat -----------------------------------------------------------------------------

    def send(self, content: str, *, message_id: str | None = None) -> Turn:
        """Send a message; iterate the result for the turn's events, as they come."""
        return Turn(self, content, message_id or str(uuid.uuid4()))

    def reply(self, content: str, *, message_id: str | None = None) -> str:
        """Send a message and return the whole reply; raises TurnFailed if the turn failed."""
        with self.send(content, message_id=message_id) as turn:
            for event in turn:
                if isinstance(event, Final):
                    return event.content
                if isinstance(event, Error):
                    raise TurnFailed(event.code, event.message)
        raise EngramError(grpc.StatusCode.UNKNOWN, "the turn ended without a reply")

    def replay(self, from_sequence: int = 0, *, include_history: bool = False) -> Iterator[Event]:
        """Every event after `from_sequence` (from the start with include_history), then the turn
        in progress until it ends; picked up again where it was if the connection drops."""
        cursor = StreamCursor(None if include_history else from_sequence)
        reconnect = self.engram._reconnect()
        while True:
            after = cursor.last_seq if cursor.last_seq is not None else 0
            call = self.engram._replay(
                self.agent_id, after, include_history and cursor.last_seq is None
            )
            try:
                for message in call:
                    event = cursor.accept(message)
                    if event is not None:
                        reconnect.progressed()
                        yield event
                return
            except grpc.RpcError as err:
                time.sleep(reconnect.delay_after(err))
            finally:
                call.cancel()

    # --- tool calls -----------------------------------------------------------------------

    def approve(
        self,
        call_id: str,
        *,
        edited_input: Mapping[str, Any] | str | None = None,
        stop_asking: bool = False,
        decided_by: str = "",
    ) -> str:
        """Run the call (with `edited_input` instead of the model's, if given)."""
        return self._control(
            requests.approval(
                self.agent_id,
                call_id,
                approved=True,
                edited_input=edited_input,
                stop_asking=stop_asking,
                decided_by=decided_by,
            )
        )

    def deny(self, call_id: str, reason: str = "", *, decided_by: str = "") -> str:
        """Do not run the call; the model is told `reason`."""
        return self._control(
            requests.approval(self.agent_id, call_id, reason=reason, decided_by=decided_by)
        )

    def respond(self, call_id: str, text: str, *, decided_by: str = "") -> str:
        """Answer in the tool's place: `text` is its result; it does not run."""
        return self._control(
            requests.approval(self.agent_id, call_id, response=text, decided_by=decided_by)
        )

    def submit_tool_result(
        self, call_id: str, output: str, *, is_error: bool = False, error_message: str = ""
    ) -> str:
        """The result of a client tool's call."""
        return self._control(
            requests.tool_result(
                self.agent_id, call_id, output, is_error=is_error, error_message=error_message
            )
        )

    # --- controls -------------------------------------------------------------------------

    def pause(self, reason: str = "") -> str:
        return self._control(requests.control(self.agent_id, "pause", reason))

    def resume(self) -> str:
        return self._control(requests.control(self.agent_id, "resume"))

    def cancel(self) -> str:
        """Stop the turn in progress (its stream ends with an `Error` coded CANCELLED)."""
        return self._control(requests.control(self.agent_id, "cancel"))

    def retry(self) -> str:
        """Queue the last failed or cancelled turn again (follow it with `replay`)."""
        return self._control(requests.control(self.agent_id, "retry"), idempotent=False)

    def edit(
        self,
        *,
        goal: str | None = None,
        system_prompt: str | None = None,
        temperature: float | None = None,
        max_context_tokens: int | None = None,
        memory: Mapping[str, str | None] | None = None,
        double_texting: str | None = None,
        description: str = "",
    ) -> str:
        """Change the agent from its next turn; only what is given changes."""
        return self._control(
            requests.edit(
                self.agent_id,
                goal=goal,
                system_prompt=system_prompt,
                temperature=temperature,
                max_context_tokens=max_context_tokens,
                memory=memory,
                double_texting=double_texting,
                description=description,
            )
        )

    def delete(self, *, force: bool = False) -> None:
        """Stop the agent; its transcript stays readable."""
        self.engram._unary(
            "DeleteAgent", agent_pb2.DeleteAgentRequest(agent_id=self.agent_id, force=force)
        )

    def fork(self, at_sequence: int) -> str:
        """A new agent that remembers this one's transcript up to message `at_sequence`; its id."""
        request = agent_pb2.ForkAgentRequest(agent_id=self.agent_id, at_sequence=at_sequence)
        return str(self.engram._unary("ForkAgent", request, idempotent=False).agent_id)

    def rewind(self, to_sequence: int) -> str:
        """Forget everything after message `to_sequence`; the id of the branch keeping it."""
        request = agent_pb2.RewindAgentRequest(agent_id=self.agent_id, to_sequence=to_sequence)
        return str(self.engram._unary("RewindAgent", request, idempotent=False).branch_agent_id)

    # --- reads ----------------------------------------------------------------------------

    def info(self) -> AgentInfo:
        return AgentInfo.of(
            self.engram._unary("GetAgent", agent_pb2.GetAgentRequest(agent_id=self.agent_id))
        )

    def history(self) -> list[TurnRecord]:
        response = self.engram._unary(
            "GetHistory", agent_pb2.GetHistoryRequest(agent_id=self.agent_id)
        )
        return [TurnRecord.of(t) for t in response.turns]

    def search(self, query: str, *, page: int = 0) -> agent_pb2.SearchHistoryResponse:
        """Full-text search over the whole transcript, best matches first (SearchHistory)."""
        request = agent_pb2.SearchHistoryRequest(agent_id=self.agent_id, query=query, page=page)
        response: agent_pb2.SearchHistoryResponse = self.engram._unary("SearchHistory", request)
        return response

    # --- plumbing -------------------------------------------------------------------------

    def _control(self, request: agent_pb2.ControlAgentRequest, *, idempotent: bool = True) -> str:
        return str(self.engram._unary("ControlAgent", request, idempotent=idempotent).status)

    def _answer(self, waits: Waits) -> None:
        """Run the hook for a call that now waits, if there is one for it."""
        try:
            call_id = waits.call.call_id
            if waits.waiting_for == Waiting.RESULT and waits.call.name in self.client_tools:
                self._control(requests.outcome(self.agent_id, call_id, self._run_tool(waits)))
            elif waits.waiting_for == Waiting.APPROVAL and self.approver is not None:
                decision = as_decision(self.approver(waits.call))
                if decision is not None:
                    self._control(requests.decision(self.agent_id, call_id, decision))
        except EngramError as err:
            # Someone else answered first (or the turn was cancelled): the stream says what next.
            if err.code != grpc.StatusCode.FAILED_PRECONDITION:
                raise

    def _run_tool(self, waits: Waits) -> ToolOutcome:
        try:
            result = self.client_tools.start(waits.call, self.agent_id)
            if inspect.isawaitable(result):
                result = asyncio.run(_awaited(result))
            return outcome_of(result)
        except Exception as err:
            return failure(err)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class Turn(Iterator[Event]):
    """The events of one turn, from its input to its `Final` or `Error`, each exactly once.

    The message is sent when the turn is made; iterating reads the reply. Close it (or leave a
    `with` block) to stop reading early: the turn itself goes on.
    """

    def __init__(self, agent: Agent, content: str, message_id: str) -> None:
        self.agent = agent
        self.content = content
        self.message_id = message_id
        self._resume = TurnResume(agent.agent_id, content, message_id, agent.engram._reconnect())
        self._call = agent.engram._chat(self._resume.message)
        self._events = self._run()

    def __next__(self) -> Event:
        return next(self._events)

    def __enter__(self) -> Turn:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._events.close()
        self._call.cancel()

    @property
    def last_sequence_id(self) -> int | None:
        """The last event's sequence id seen so far."""
        return self._resume.tracker.last_seq

    def _run(self) -> Generator[Event, None, None]:
        engram, resume = self.agent.engram, self._resume
        while True:
            try:
                for message in self._call:
                    event = resume.accept(message)
                    if event is None:
                        continue
                    yield event
                    waits = resume.tracker.waits(event)
                    if waits is not None:
                        self.agent._answer(waits)
                    if resume.tracker.ended:
                        return
                time.sleep(resume.ended_early())
            except grpc.RpcError as err:
                time.sleep(resume.dropped(err))
            finally:
                self._call.cancel()
            self._call = (
                engram._replay(resume.agent_id, resume.tracker.last_seq or 0)
                if resume.replay
                else engram._chat(resume.message)
            )
