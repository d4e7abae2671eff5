"""The asyncio client, on grpc.aio: `AsyncEngram` and `AsyncAgent`, mirroring `engram.client.sync`.

    async with AsyncEngram("localhost:50051") as engram:
        agent = await engram.create_agent(model="llama3.1", goal="Help with Postgres.")
        async for event in agent.send("Why are joins on 'users' slow?"):
            ...

Client tools and approvers may be plain or async functions; plain ones run in a thread, so that a
slow tool does not hold up the event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from engram.client import requests
from engram.client.connection import (
    DEFAULT_ADDRESS,
    AgentListing,
    Reconnect,
    ReconnectHook,
    call_metadata,
    credentials,
)
from engram.client.errors import EngramError, TurnFailed
from engram.client.events import Error, Event, Final
from engram.client.hooks import (
    AsyncApprover,
    ClientTools,
    ToolOutcome,
    as_decision,
    failure,
    outcome_of,
)
from engram.client.records import AgentInfo, TurnRecord
from engram.client.turn import StreamCursor, TurnResume, Waits
from engram.v1 import agent_pb2, agent_pb2_grpc
from engram.vocabulary import Waiting


class AsyncEngram:
    """A connection to an Engram gateway, for asyncio programs."""

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
            grpc.aio.secure_channel(address, tls_credentials)
            if tls_credentials
            else grpc.aio.insecure_channel(address)
        )
        self._stub = agent_pb2_grpc.AgentServiceStub(self._channel)
        self._metadata = call_metadata(api_key)

    async def close(self) -> None:
        await self._channel.close(None)

    async def __aenter__(self) -> AsyncEngram:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def create_agent(
        self,
        *,
        model: str = "",
        goal: str = "",
        system_prompt: str = "",
        tools: Sequence[requests.ToolSpec] = (),
        client_tools: Mapping[str, Callable[..., Any]] | None = None,
        approver: AsyncApprover | None = None,
        temperature: float | None = None,
        max_context_tokens: int | None = None,
        metadata: Mapping[str, str] | None = None,
        double_texting: str = "",
    ) -> AsyncAgent:
        """As `Engram.create_agent`."""
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
        response = await self._unary("CreateAgent", request, idempotent=False)
        return AsyncAgent(self, response.agent_id, hooks, approver)

    def agent(
        self,
        agent_id: str,
        *,
        client_tools: Mapping[str, Callable[..., Any]] | None = None,
        approver: AsyncApprover | None = None,
    ) -> AsyncAgent:
        return AsyncAgent(self, agent_id, ClientTools(client_tools), approver)

    async def list_agents(self, status: str = "", limit: int | None = None) -> list[AgentInfo]:
        listing = AgentListing(status, limit)
        while (request := listing.next_request()) is not None:
            listing.add(await self._unary("ListAgents", request))
        return listing.agents()

    async def list_tools(self) -> list[agent_pb2.Tool]:
        return list((await self._unary("ListTools", agent_pb2.ListToolsRequest())).tools)

    async def _unary(self, name: str, request: Any, *, idempotent: bool = True) -> Any:
        method = getattr(self._stub, name)
        reconnect = self._reconnect()
        while True:
            try:
                return await method(
                    request,
                    timeout=self.timeout,
                    metadata=self._metadata,
                    wait_for_ready=not idempotent,
                )
            except grpc.RpcError as err:
                await asyncio.sleep(reconnect.delay_after(err, retry=idempotent))

    def _reconnect(self) -> Reconnect:
        return Reconnect(self.reconnect_timeout, self.on_reconnect)

    def _chat(self, message: agent_pb2.ClientMessage) -> Any:
        return self._stub.Chat([message], metadata=self._metadata)

    def _replay(self, agent_id: str, after: int, include_history: bool = False) -> Any:
        request = agent_pb2.ReplayRequest(
            agent_id=agent_id, from_sequence=after, include_history=include_history
        )
        return self._stub.Replay(request, metadata=self._metadata)


class AsyncAgent:
    """One agent, for asyncio programs: the methods of `engram.client.Agent`, awaited."""

    def __init__(
        self,
        engram: AsyncEngram,
        agent_id: str,
        client_tools: ClientTools | None = None,
        approver: AsyncApprover | None = None,
    ) -> None:
        self.engram = engram
        self.agent_id = agent_id
        self.client_tools = client_tools or ClientTools()
        self.approver = approver

    def __repr__(self) -> str:
        return f"AsyncAgent({self.agent_id!r})"

    def send(self, content: str, *, message_id: str | None = None) -> AsyncTurn:
        """Send a message (now); `async for` over the result for the turn's events."""
        return AsyncTurn(self, content, message_id or str(uuid.uuid4()))

    async def reply(self, content: str, *, message_id: str | None = None) -> str:
        turn = self.send(content, message_id=message_id)
        try:
            async for event in turn:
                if isinstance(event, Final):
                    return event.content
                if isinstance(event, Error):
                    raise TurnFailed(event.code, event.message)
        finally:
            await turn.aclose()
        raise EngramError(grpc.StatusCode.UNKNOWN, "the turn ended without a reply")

    async def replay(
        self, from_sequence: int = 0, *, include_history: bool = False
    ) -> AsyncIterator[Event]:
        """As `Agent.replay`."""
        cursor = StreamCursor(None if include_history else from_sequence)
        reconnect = self.engram._reconnect()
        while True:
            after = cursor.last_seq if cursor.last_seq is not None else 0
            call = self.engram._replay(
                self.agent_id, after, include_history and cursor.last_seq is None
            )
            try:
                async for message in call:
                    event = cursor.accept(message)
                    if event is not None:
                        reconnect.progressed()
                        yield event
                return
            except grpc.RpcError as err:
                await asyncio.sleep(reconnect.delay_after(err))
            finally:
                call.cancel()

    async def approve(
        self,
        call_id: str,
        *,
        edited_input: Mapping[str, Any] | str | None = None,
        stop_asking: bool = False,
        decided_by: str = "",
    ) -> str:
        return await self._control(
            requests.approval(
                self.agent_id,
                call_id,
                approved=True,
                edited_input=edited_input,
                stop_asking=stop_asking,
                decided_by=decided_by,
            )
        )

    async def deny(self, call_id: str, reason: str = "", *, decided_by: str = "") -> str:
        return await self._control(
            requests.approval(self.agent_id, call_id, reason=reason, decided_by=decided_by)
        )

    async def respond(self, call_id: str, text: str, *, decided_by: str = "") -> str:
        return await self._control(
            requests.approval(self.agent_id, call_id, response=text, decided_by=decided_by)
        )

    async def submit_tool_result(
        self, call_id: str, output: str, *, is_error: bool = False, error_message: str = ""
    ) -> str:
        return await self._control(
            requests.tool_result(
                self.agent_id, call_id, output, is_error=is_error, error_message=error_message
            )
        )

    async def pause(self, reason: str = "") -> str:
        return await self._control(requests.control(self.agent_id, "pause", reason))

    async def resume(self) -> str:
        return await self._control(requests.control(self.agent_id, "resume"))

    async def cancel(self) -> str:
        return await self._control(requests.control(self.agent_id, "cancel"))

    async def retry(self) -> str:
        return await self._control(requests.control(self.agent_id, "retry"), idempotent=False)

    async def edit(
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
        return await self._control(
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

    async def delete(self, *, force: bool = False) -> None:
        await self.engram._unary(
            "DeleteAgent", agent_pb2.DeleteAgentRequest(agent_id=self.agent_id, force=force)
        )

    async def info(self) -> AgentInfo:
        return AgentInfo.of(
            await self.engram._unary("GetAgent", agent_pb2.GetAgentRequest(agent_id=self.agent_id))
        )

    async def history(self) -> list[TurnRecord]:
        response = await self.engram._unary(
            "GetHistory", agent_pb2.GetHistoryRequest(agent_id=self.agent_id)
        )
        return [TurnRecord.of(t) for t in response.turns]

    async def _control(
        self, request: agent_pb2.ControlAgentRequest, *, idempotent: bool = True
    ) -> str:
        response = await self.engram._unary("ControlAgent", request, idempotent=idempotent)
        return str(response.status)

    async def _answer(self, waits: Waits) -> None:
        try:
            call_id = waits.call.call_id
            if waits.waiting_for == Waiting.RESULT and waits.call.name in self.client_tools:
                ran = await self._run_tool(waits)
                await self._control(requests.outcome(self.agent_id, call_id, ran))
            elif waits.waiting_for == Waiting.APPROVAL and self.approver is not None:
                answer = self.approver(waits.call)
                decision = as_decision(await answer if inspect.isawaitable(answer) else answer)
                if decision is not None:
                    await self._control(requests.decision(self.agent_id, call_id, decision))
        except EngramError as err:
            if err.code != grpc.StatusCode.FAILED_PRECONDITION:
                raise

    async def _run_tool(self, waits: Waits) -> ToolOutcome:
        try:
            result = await asyncio.to_thread(self.client_tools.start, waits.call, self.agent_id)
            if inspect.isawaitable(result):
                result = await result
            return outcome_of(result)
        except Exception as err:
            return failure(err)


class AsyncTurn(AsyncIterator[Event]):
    """The events of one turn, each exactly once; as `engram.client.Turn`."""

    def __init__(self, agent: AsyncAgent, content: str, message_id: str) -> None:
        self.agent = agent
        self.content = content
        self.message_id = message_id
        self._resume = TurnResume(agent.agent_id, content, message_id, agent.engram._reconnect())
        self._call = agent.engram._chat(self._resume.message)
        self._events = self._run()

    async def __anext__(self) -> Event:
        return await self._events.__anext__()

    async def __aenter__(self) -> AsyncTurn:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._events.aclose()
        self._call.cancel()

    @property
    def last_sequence_id(self) -> int | None:
        return self._resume.tracker.last_seq

    async def _run(self) -> AsyncGenerator[Event, None]:
        engram, resume = self.agent.engram, self._resume
        while True:
            try:
                async for message in self._call:
                    event = resume.accept(message)
                    if event is None:
                        continue
                    yield event
                    waits = resume.tracker.waits(event)
                    if waits is not None:
                        await self.agent._answer(waits)
                    if resume.tracker.ended:
                        return
                await asyncio.sleep(resume.ended_early())
            except grpc.RpcError as err:
                await asyncio.sleep(resume.dropped(err))
            finally:
                self._call.cancel()
            self._call = (
                engram._replay(resume.agent_id, resume.tracker.last_seq or 0)
                if resume.replay
                else engram._chat(resume.message)
            )
