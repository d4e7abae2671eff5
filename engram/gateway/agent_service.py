"""AgentService: the public gRPC API, mapped onto agent workflows.

CreateAgent starts a workflow; Chat turns each user input into a `chat` update and streams the
turn back; controls are updates and signals; reads are queries and visibility lists. The calls
to the workflow are engram.gateway.agent_calls'; converting messages is proto_mapping's.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf import empty_pb2
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from engram.agent_start import start_agent
from engram.auth import stopping
from engram.auth.limits import InputBounds, LimitExceeded, Limits, StreamInputs, Ticket
from engram.codec.encrypted_store import blob_name
from engram.following import QUERY_TRIES, TurnGone, timed_out
from engram.gateway import (
    agent_calls,
    attachments,
    history_search,
    proto_mapping,
    sub_agents,
    tool_specs,
    validation,
)
from engram.gateway.agent_calls import AgentCommand, AgentHandle, turn_ended
from engram.gateway.errors import GatewayError, from_temporal, invalid
from engram.gateway.forks import Forks
from engram.gateway.schedules import Schedules
from engram.gateway.tenancy import AgentAccess
from engram.gateway.token_hub import TokenHub, TurnFeed
from engram.gateway.transcript_reader import TranscriptReader
from engram.gateway.turn_stream import Cursor, Messages, TurnMerge, cancel_quietly, follow_turn
from engram.messages import to_server_message
from engram.observability import metrics
from engram.observability.turns import ObservedTurn
from engram.tools.agents import helper_tool
from engram.transcripts import BlobStore, EventStore, SearchStore, ToolCatalogStore
from engram.v1 import agent_pb2, agent_pb2_grpc
from engram.vocabulary import STATUS_ATTRIBUTE, AgentStatus, Command, ToolName
from engram.workflows.types import AgentTool, ChatInput, EditInput, RunInput, TurnResult

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Response = TypeVar("Response")
Context = grpc.aio.ServicerContext[Any, Any]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# SetAgentStatus's words for the controls.
STATUS_COMMANDS = {
    "paused": Command.PAUSE,
    "active": Command.RESUME,
    "idle": Command.RESUME,
    "running": Command.RESUME,
    "cancelled": Command.CANCEL,
}


class AgentStore(EventStore, SearchStore, BlobStore, ToolCatalogStore, Protocol):
    """What the API reads and writes in the store: transcripts, attachments, the tool catalog."""


@dataclass(frozen=True)
class GatewaySettings:
    # host:port at which workers reach this gateway's TokenRelay.
    advertise_address: str
    max_message_bytes: int = 64 * 1024
    # Attachments' bytes, each and together per message.
    max_attachment_bytes: int = attachments.DEFAULT_LIMIT
    max_attachments_bytes: int = attachments.DEFAULT_LIMIT
    default_model: str = ""
    # Continue-as-new threshold given to new agents.
    max_history_events: int = 10_000


def _reports_errors(
    method: Callable[[Any, Request, Context], Awaitable[Response]],
) -> Callable[[Any, Request, Context], Awaitable[Response]]:
    """Answer every failure with a gRPC status and a plain message, never a stack trace."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Request, context: Context) -> Response:
        try:
            return await method(self, request, context)
        except Exception as err:
            await _abort(context, err, getattr(request, "agent_id", ""))
            raise  # unreachable: abort raises

    return wrapper


def _gateway_error(err: Exception) -> GatewayError:
    return err if isinstance(err, GatewayError) else from_temporal(err, "")


async def _abort(context: Context, err: Exception, agent_id: str) -> None:
    status = from_temporal(err, agent_id)
    if status.code == grpc.StatusCode.INTERNAL:
        log.error("request for agent %s failed", agent_id, exc_info=err)
    if stopping.in_stream():
        # Ended by the interceptor, after the replies already produced have gone out.
        raise stopping.StreamFailure(status.code, status.message)
    await context.abort(status.code, status.message)


class AgentService(agent_pb2_grpc.AgentServiceServicer):
    def __init__(
        self,
        client: Client,
        hub: TokenHub,
        settings: GatewaySettings,
        store: AgentStore,
        access: AgentAccess | None = None,
        inputs: InputBounds | None = None,
    ) -> None:
        self.client = client
        # Which agents the caller (engram.auth.principal) may see; everything with auth off.
        self.access = access or AgentAccess(client)
        self.inputs = inputs or InputBounds(
            Limits.stream_inputs, Limits.agent_inputs, Limits.tenant_inputs
        )
        self.hub = hub
        self.settings = settings
        self.store = store
        self.transcript = TranscriptReader(store)
        self.forks = Forks(client, store)
        self.schedules = Schedules(client)
        # Where workers send the tokens of turns this gateway streams.
        self.reply_to = settings.advertise_address

    def _agent(self, agent_id: str) -> AgentHandle:
        return agent_calls.agent_handle(self.client, agent_id)

    async def _owned(self, agent_id: str, *, read: bool = False) -> AgentHandle:
        """The agent's handle, if the caller's tenant owns it (or, to `read`, is an admin);
        otherwise NOT_FOUND, exactly as for an agent that does not exist."""
        await self.access.check(agent_id, read=read)
        return self._agent(agent_id)

    # --- lifecycle ------------------------------------------------------------------------

    @_reports_errors
    async def CreateAgent(
        self, request: agent_pb2.CreateAgentRequest, context: Context
    ) -> agent_pb2.CreateAgentResponse:
        model = validation.create_request(request, self.settings.default_model)
        parent_id = validation.agent_id(request.parent_id) if request.parent_id else ""
        if parent_id:
            await sub_agents.live_agent(self.client, self.access, parent_id)
        tools = await self._resolve_tools(request.tools)
        agent_id = str(uuid.uuid4())
        new = proto_mapping.new_agent(
            request,
            agent_id=agent_id,
            model=model,
            parent_id=parent_id,
            tools=tools,
            tenant=self.access.tenant(),
            max_history_events=self.settings.max_history_events,
        )
        async with self.access.creating() as started:
            info = await start_agent(self.client, new)
            started(agent_id)
        return agent_pb2.CreateAgentResponse(
            agent_id=agent_id, agent=proto_mapping.agent_message(info)
        )

    @_reports_errors
    async def GetAgent(
        self, request: agent_pb2.GetAgentRequest, context: Context
    ) -> agent_pb2.Agent:
        handle = await self._owned(validation.agent_id(request.agent_id), read=True)
        description = await handle.describe()
        for attempt in range(QUERY_TRIES):
            problem = await agent_calls.task_problem(self.client, description)
            if problem:
                # It cannot answer: what Temporal knows of it, and why.
                agent = await proto_mapping.listed_agent(description)
                agent.status, agent.attention = AgentStatus.NEEDS_ATTENTION, problem
                return agent
            try:
                info = await agent_calls.describe(handle)
            except Exception as err:
                if description.status != WorkflowExecutionStatus.RUNNING:
                    return await proto_mapping.listed_agent(description)  # history unreadable
                if not timed_out(err) or attempt == QUERY_TRIES - 1:
                    raise
                # A worker may be replaying it after a restart, or its task may be failing.
                description = await handle.describe()
                continue
            if description.status != WorkflowExecutionStatus.RUNNING:
                info.status = AgentStatus.DELETED  # force-deleted: it never got to say so
            return proto_mapping.agent_message(info)
        raise AssertionError("unreachable")

    @_reports_errors
    async def ListAgents(
        self, request: agent_pb2.ListAgentsRequest, context: Context
    ) -> agent_pb2.ListAgentsResponse:
        status = validation.status_filter(request.status_filter)
        if request.page_size < 0:
            raise invalid("page_size must not be negative")
        page_size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        query = "WorkflowType = 'AgentWorkflow'"
        if status == validation.AUTONOMOUS:
            query += " AND ExecutionStatus = 'Running'"
            query += f" AND {STATUS_ATTRIBUTE.name} IN ('{AgentStatus.WORKING}', "
            query += f"'{AgentStatus.SLEEPING}')"
        elif status == AgentStatus.DELETED:
            query += " AND ExecutionStatus != 'Running' AND ExecutionStatus != 'ContinuedAsNew'"
        elif status == AgentStatus.THINKING:
            # A chat turn is not filed under `thinking` (it passes in seconds; agents of older
            # releases still are): ask the agents that may be in one.
            query += " AND ExecutionStatus = 'Running'"
            query += f" AND {STATUS_ATTRIBUTE.name} IN ('{AgentStatus.IDLE}', "
            query += f"'{AgentStatus.PAUSED}', '{AgentStatus.THINKING}')"
        else:
            query += " AND ExecutionStatus = 'Running'"
            if status:
                query += f" AND {STATUS_ATTRIBUTE.name} = '{status}'"
        query += self.access.list_filter()
        executions = self.client.list_workflows(
            query, page_size=page_size, next_page_token=proto_mapping.page_token(request.page_token)
        )
        try:
            await executions.fetch_next_page()
        except RPCError as err:
            if request.page_token and err.status in (
                RPCStatusCode.UNKNOWN,
                RPCStatusCode.INVALID_ARGUMENT,
            ):
                # A token that decodes but is not one Temporal issued.
                raise invalid("page_token is not a token this service issued") from None
            raise
        agents = [await proto_mapping.listed_agent(e) for e in executions.current_page or []]
        if status == AgentStatus.THINKING:
            agents = await self._thinking(agents)
        return agent_pb2.ListAgentsResponse(
            agents=agents, next_page_token=proto_mapping.next_page_token(executions.next_page_token)
        )

    async def _thinking(self, listed: list[agent_pb2.Agent]) -> list[agent_pb2.Agent]:
        """Those of `listed` answering a message now, as their describe query says (a page may
        come out shorter than asked; its token still leads on)."""

        async def live(agent: agent_pb2.Agent) -> str:
            handle = self._agent(agent.agent_id)
            try:
                return (await agent_calls.describe(handle)).status
            except Exception:  # gone or not answering: not known to be thinking
                return agent.status

        statuses = await asyncio.gather(*(live(agent) for agent in listed))
        for agent, status in zip(listed, statuses, strict=True):
            agent.status = status
        return [a for a in listed if a.status == AgentStatus.THINKING]

    @_reports_errors
    async def DeleteAgent(
        self, request: agent_pb2.DeleteAgentRequest, context: Context
    ) -> empty_pb2.Empty:
        agent_id = validation.agent_id(request.agent_id)
        handle = await self._owned(agent_id)
        description = await handle.describe()
        if description.status == WorkflowExecutionStatus.RUNNING:
            if request.force:
                await handle.terminate(reason="DeleteAgent(force=true)")
            else:
                await agent_calls.delete(handle)
        await self.schedules.delete_all(agent_id)
        return empty_pb2.Empty()

    @_reports_errors
    async def ControlAgent(
        self, request: agent_pb2.ControlAgentRequest, context: Context
    ) -> agent_pb2.ControlAgentResponse:
        agent_id = validation.agent_id(request.agent_id)
        kind = request.WhichOneof("command")
        if kind is None:
            raise invalid(
                "one of pause, resume, cancel, retry, edit, approval, tool_result or run is "
                "required"
            )
        handle = await self._owned(agent_id)
        command = await self._command(agent_id, kind, getattr(request, kind))
        return agent_pb2.ControlAgentResponse(status=await agent_calls.send(handle, command))

    @_reports_errors
    async def SetAgentStatus(
        self, request: agent_pb2.SetAgentStatusRequest, context: Context
    ) -> agent_pb2.SetAgentStatusResponse:
        agent_id = validation.agent_id(request.agent_id)
        handle = await self._owned(agent_id)
        wanted = request.status.strip().lower()
        if wanted == AgentStatus.DELETED:
            await agent_calls.delete(handle)
            await self.schedules.delete_all(agent_id)
            return agent_pb2.SetAgentStatusResponse(status=AgentStatus.DELETED)
        if wanted not in STATUS_COMMANDS:
            choices = ", ".join([*STATUS_COMMANDS, AgentStatus.DELETED])
            raise invalid(f"status must be one of {choices}")
        status = await agent_calls.send(handle, STATUS_COMMANDS[wanted])
        return agent_pb2.SetAgentStatusResponse(status=status)

    @_reports_errors
    async def ListTools(
        self, request: agent_pb2.ListToolsRequest, context: Context
    ) -> agent_pb2.ListToolsResponse:
        catalog = await asyncio.to_thread(self.store.tools)
        # Engram's own tool for making helpers is given like the workers' (`agent_<id>`, one per
        # agent, is not listed).
        tools = [t for t in catalog if t.name != ToolName.CREATE_HELPER] + [helper_tool()]
        return agent_pb2.ListToolsResponse(tools=[tool_specs.to_proto(t) for t in tools])

    # --- schedules: recurring wake-ups (engram/gateway/schedules.py) -----------------------

    @_reports_errors
    async def CreateSchedule(
        self, request: agent_pb2.CreateScheduleRequest, context: Context
    ) -> agent_pb2.Schedule:
        checked = validation.create_schedule(request)
        handle = await self._owned(checked.agent_id)
        return await self.schedules.create(checked, handle, self.access.tenant())

    @_reports_errors
    async def ListSchedules(
        self, request: agent_pb2.ListSchedulesRequest, context: Context
    ) -> agent_pb2.ListSchedulesResponse:
        agent_id = validation.agent_id(request.agent_id)
        handle = await self._owned(agent_id, read=True)
        return agent_pb2.ListSchedulesResponse(
            schedules=await self.schedules.listed(handle, agent_id)
        )

    @_reports_errors
    async def DeleteSchedule(
        self, request: agent_pb2.DeleteScheduleRequest, context: Context
    ) -> empty_pb2.Empty:
        agent_id = validation.agent_id(request.agent_id)
        name = validation.schedule_name(request.name)
        await self.schedules.delete(await self._owned(agent_id), agent_id, name)
        return empty_pb2.Empty()

    async def _command(
        self, agent_id: str, kind: str, payload: Any, message_id: str = "", reply_to: str = ""
    ) -> AgentCommand:
        """The command in a ControlAgent request's or a Chat message's oneof (`kind`, its field
        name, and `payload`, its message), checked: both carry the same kinds."""
        if kind == "edit":
            return await self._edit(payload, agent_id)
        if kind == "approval":
            return tool_specs.decision(payload)
        if kind == "tool_result":
            return tool_specs.client_result(payload, self.settings.max_message_bytes)
        if kind == "run":
            return proto_mapping.run_input(payload, message_id, reply_to)
        return Command(kind)

    async def _edit(self, request: agent_pb2.Edit, agent_id: str) -> EditInput:
        """An Edit, checked, with the tools it names resolved against the workers' catalog."""
        change, tools = validation.edit(request)
        if tools is not None:
            change.tools = await self._resolve_tools(tools, agent_id)
        if change.approvals:
            known = change.tools
            if known is None:
                known = tool_specs.as_offered(await asyncio.to_thread(self.store.tools))
            tool_specs.check_approvals(change.approvals, known)
        return change

    async def _resolve_tools(
        self, requested: Sequence[agent_pb2.Tool], agent_id: str = ""
    ) -> list[AgentTool]:
        """The tools of agent `agent_id` ("" for a new one): the workers' and other agents."""
        if not requested:
            return []
        catalog = await asyncio.to_thread(self.store.tools)
        agents = await sub_agents.agent_tools(requested, self.client, self.access, agent_id)
        return tool_specs.resolve(requested, catalog + agents)

    @_reports_errors
    async def GetHistory(
        self, request: agent_pb2.GetHistoryRequest, context: Context
    ) -> agent_pb2.GetHistoryResponse:
        agent_id = validation.agent_id(request.agent_id)
        page = await agent_calls.history(await self._owned(agent_id, read=True))
        turns = await self.transcript.turns(agent_id, page)
        return agent_pb2.GetHistoryResponse(turns=[proto_mapping.turn_message(t) for t in turns])

    @_reports_errors
    async def SearchHistory(
        self, request: agent_pb2.SearchHistoryRequest, context: Context
    ) -> agent_pb2.SearchHistoryResponse:
        agent_id = validation.agent_id(request.agent_id)
        query = history_search.query_of(request, agent_id)
        held = await agent_calls.events_since(await self._owned(agent_id, read=True), 0)
        return history_search.response(await history_search.search(self.store, query, held))

    @_reports_errors
    async def ForkAgent(
        self, request: agent_pb2.ForkAgentRequest, context: Context
    ) -> agent_pb2.ForkAgentResponse:
        handle = await self._owned(validation.agent_id(request.agent_id))
        async with self.access.creating() as started:
            forked = await self.forks.fork(handle, request.at_sequence, self.access.tenant())
            started(forked)
        return agent_pb2.ForkAgentResponse(agent_id=forked)

    @_reports_errors
    async def RewindAgent(
        self, request: agent_pb2.RewindAgentRequest, context: Context
    ) -> agent_pb2.RewindAgentResponse:
        agent_id = validation.agent_id(request.agent_id)
        handle = await self._owned(agent_id)
        async with self.access.creating() as started:
            branch = await self.forks.rewind(handle, request.to_sequence, self.access.tenant())
            started(branch)
        return agent_pb2.RewindAgentResponse(agent_id=agent_id, branch_agent_id=branch)

    # --- streams --------------------------------------------------------------------------

    async def Chat(
        self, request_iterator: AsyncIterator[agent_pb2.ClientMessage], context: Context
    ) -> AsyncIterator[agent_pb2.ServerMessage]:
        # Inputs are read as they arrive (each counted against the stream's and its agent's
        # bounds) and submitted in order (so they queue durably, and a cancel can reach the turn
        # in progress); turns stream back one at a time.
        turns: asyncio.Queue[_PendingTurn | Exception | None] = asyncio.Queue()
        cursor = Cursor()
        metrics.CHAT_STREAMS.inc()
        with self.inputs.stream() as inputs:
            reader = asyncio.create_task(self._read_chat(request_iterator, turns, inputs))
            try:
                while (turn := await turns.get()) is not None:
                    if isinstance(turn, Exception):
                        await _abort(context, turn, "")
                        return
                    try:
                        async for message in self._follow(turn, cursor):
                            yield message
                    except Exception as err:
                        await _abort(context, err, turn.agent_id)
            finally:
                metrics.CHAT_STREAMS.dec()
                reader.cancel()
                while not turns.empty():
                    if isinstance(pending := turns.get_nowait(), _PendingTurn):
                        self._close(pending)
                        pending.observed.abandon()

    async def _read_chat(
        self,
        request_iterator: AsyncIterator[agent_pb2.ClientMessage],
        turns: asyncio.Queue[_PendingTurn | Exception | None],
        inputs: StreamInputs,
    ) -> None:
        # Read without waiting for submissions: an input over a bound is refused the moment it
        # arrives, rather than after those before it were handled.
        inbox: asyncio.Queue[tuple[agent_pb2.ClientMessage, Ticket] | None] = asyncio.Queue()
        submitter = asyncio.create_task(self._submit_all(inbox, turns))
        try:
            async for message in request_iterator:
                try:
                    ticket = inputs.accept(message.agent_id)
                except LimitExceeded as err:
                    if not stopping.stop_current(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err)):
                        turns.put_nowait(from_temporal(err, ""))
                    return
                inbox.put_nowait((message, ticket))
            inbox.put_nowait(None)
            await submitter
        except asyncio.CancelledError:
            raise
        except Exception as err:
            turns.put_nowait(_gateway_error(err))
        finally:
            submitter.cancel()

    async def _submit_all(
        self,
        inbox: asyncio.Queue[tuple[agent_pb2.ClientMessage, Ticket] | None],
        turns: asyncio.Queue[_PendingTurn | Exception | None],
    ) -> None:
        try:
            while (item := await inbox.get()) is not None:
                message, ticket = item
                turn = await self._submit(message)
                if turn is None:
                    ticket.done()  # a command, applied
                else:
                    turn.answered = ticket.done
                    turns.put_nowait(turn)
        except Exception as err:
            turns.put_nowait(_gateway_error(err))
        else:
            turns.put_nowait(None)

    async def _submit(self, message: agent_pb2.ClientMessage) -> _PendingTurn | None:
        agent_id = validation.agent_id(message.agent_id)
        handle = self._agent(agent_id)
        kind = message.WhichOneof("payload")
        try:
            await self.access.check(agent_id)
            if kind == "user_input":
                return await self._send_message(agent_id, handle, message)
            if kind is None:
                raise invalid(
                    "a ClientMessage needs user_input, pause, resume, cancel, edit, approval, "
                    "tool_result or run"
                )
            command = await self._command(
                agent_id, kind, getattr(message, kind), message.message_id, self.reply_to
            )
            if isinstance(command, RunInput):
                # A run started from a Chat stream is followed as a turn would be.
                run = command

                async def start() -> None:
                    await agent_calls.send(handle, run)

                return await self._followed(handle, ObservedTurn(agent_id, run.run_id), start)
            await agent_calls.send(handle, command)
            return None
        except Exception as err:
            raise from_temporal(err, agent_id) from err

    async def _send_message(
        self, agent_id: str, handle: AgentHandle, message: agent_pb2.ClientMessage
    ) -> _PendingTurn:
        files = attachments.check(
            message.user_input.attachments,
            self.settings.max_attachment_bytes,
            self.settings.max_attachments_bytes,
            functools.partial(blob_name, self.store),
        )
        content = validation.content(
            message.user_input.content, self.settings.max_message_bytes, bool(files)
        )
        message_id = validation.message_id(message.message_id or str(uuid.uuid4()))
        observed = ObservedTurn(agent_id, message_id)
        # Claim check: the bytes go to the store; history gets the references.
        for ref, data in files:
            await asyncio.to_thread(self.store.put_blob, ref.sha256, data)
        chat = ChatInput(message_id, content, self.reply_to, [ref for ref, _ in files])

        async def submit() -> Awaitable[TurnResult]:
            return (await agent_calls.start_chat(handle, chat)).result()

        return await self._followed(handle, observed, submit)

    async def _followed(
        self,
        handle: AgentHandle,
        observed: ObservedTurn,
        submit: Callable[[], Awaitable[Awaitable[TurnResult] | None]],
    ) -> _PendingTurn:
        """Submit a turn (a message or a run) for this stream to follow; `submit` may return
        the turn's result to come."""
        agent_id, message_id = observed.agent_id, observed.message_id
        # Listen before submitting: the first tokens may come before the update returns.
        feed = self.hub.open((agent_id, message_id))
        try:
            with observed.submitting():
                first = await submit()
        except BaseException:
            self.hub.release(feed)
            observed.abandon()
            raise
        result = asyncio.ensure_future(turn_ended(handle, message_id, first, feed.heard))
        return _PendingTurn(agent_id, message_id, feed, result, observed)

    async def _follow(
        self, turn: _PendingTurn, cursor: Cursor
    ) -> AsyncIterator[agent_pb2.ServerMessage]:
        after = cursor.last.get(turn.agent_id)

        async def record() -> Messages:
            try:
                result = await turn.result
            except TurnGone:
                return await self._gone_turn(turn.agent_id, turn.message_id, after or 0)
            return await self._turn_messages(turn.agent_id, result)

        # A Chat stream carries its own turns; following everything the agent does is Replay's.
        merge = TurnMerge(turn.message_id, after=after)
        try:
            with turn.observed.following() as sent:
                async for message in follow_turn(
                    merge, turn.feed, record(), functools.partial(self._stored_since, turn.agent_id)
                ):
                    yield message
                    sent(message)
                    cursor.last[turn.agent_id] = message.sequence_id
        finally:
            self._close(turn)

    def _close(self, turn: _PendingTurn) -> None:
        self.hub.release(turn.feed)
        cancel_quietly(turn.result)
        turn.answered()

    async def Replay(
        self, request: agent_pb2.ReplayRequest, context: Context
    ) -> AsyncIterator[agent_pb2.ServerMessage]:
        try:
            agent_id = validation.agent_id(request.agent_id)
            if request.from_sequence < 0:
                raise invalid("from_sequence must not be negative")
            start = 0 if request.include_history else request.from_sequence
            handle = await self._owned(agent_id, read=True)
            page = await agent_calls.events_since(handle, start)
            last = start
            for event in await self.transcript.events_after(agent_id, start, page):
                yield to_server_message(agent_id, event)
                last = event.seq
            live = page.in_flight
            if live is None:
                return

            async def record(feed: TurnFeed) -> Messages:
                try:
                    result = await turn_ended(handle, live.message_id, heard=feed.heard)
                except TurnGone:
                    return await self._gone_turn(agent_id, live.message_id, last)
                return await self._turn_messages(agent_id, result)

            merge = TurnMerge(live.message_id, after=last, everything=True)
            # Listen before asking for the turn's events, then read what was stored meanwhile:
            # an event the workflow sent elsewhere (or nowhere, for a run's step) before it knew
            # of this client is in the store, and everything after is sent here.
            with self.hub.reading((agent_id, live.message_id)) as feed:
                if live.reply_to != self.reply_to:
                    await agent_calls.relay_to(handle, live.message_id, self.reply_to)
                    merge.add(await self._stored_since(agent_id, last))
                async for message in follow_turn(
                    merge, feed, record(feed), functools.partial(self._stored_since, agent_id)
                ):
                    yield message
        except Exception as err:
            await _abort(context, err, request.agent_id)

    async def _stored_since(self, agent_id: str, seq: int) -> Messages:
        page = await agent_calls.events_since(self._agent(agent_id), seq)
        events = await self.transcript.events_after(agent_id, seq, page)
        return proto_mapping.messages(agent_id, events)

    async def _gone_turn(self, agent_id: str, message_id: str, after: int) -> Messages:
        """An ended turn that has left the agent's state, from what is stored after `after`."""
        return [m for m in await self._stored_since(agent_id, after) if m.message_id == message_id]

    async def _turn_messages(self, agent_id: str, result: TurnResult) -> Messages:
        events = await self.transcript.turn_events(agent_id, result)
        return proto_mapping.messages(agent_id, events)


@dataclass
class _PendingTurn:
    """A submitted user input whose turn a Chat stream has yet to send."""

    agent_id: str
    message_id: str
    feed: TurnFeed
    result: asyncio.Future[TurnResult]
    # Its metrics, trace span and log fields, from the moment the input arrived.
    observed: ObservedTurn
    # Gives back its place under the stream's and agent's bounds on inputs.
    answered: Callable[[], None] = lambda: None
