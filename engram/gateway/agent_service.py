"""AgentService: the public gRPC API, mapped onto agent workflows.

CreateAgent starts a workflow; Chat turns each user input into a `chat` update and streams the
turn back; controls are updates and signals; reads are queries and visibility lists.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.json_format import MessageToDict, ParseDict
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus, WorkflowHandle
from temporalio.client import WorkflowUpdateStage as Stage

from engram import WORKFLOW_ID_PREFIX
from engram.agent_start import NewAgent, start_agent
from engram.gateway import attachments, sub_agents, tool_specs, validation
from engram.gateway.errors import GatewayError, from_temporal, invalid
from engram.gateway.schedules import Schedules
from engram.gateway.tenancy import AgentAccess
from engram.gateway.token_hub import TokenHub, TurnFeed
from engram.gateway.transcript_reader import TranscriptReader
from engram.gateway.turn_stream import Cursor, Messages, TurnMerge, follow_turn
from engram.messages import timestamp, to_server_message
from engram.observability import metrics
from engram.observability.turns import ObservedTurn
from engram.tools.agents import helper_tool
from engram.transcripts import TranscriptStore
from engram.v1 import agent_pb2, agent_pb2_grpc
from engram.vocabulary import (
    PARENT_ATTRIBUTE,
    STATUS_ATTRIBUTE,
    AgentStatus,
    Command,
    ToolName,
)
from engram.workflows.agent_workflow import AgentWorkflow
from engram.workflows.types import (
    AgentInfo,
    AgentSpec,
    AgentTool,
    ChatInput,
    EditInput,
    Event,
    RunInput,
    RunState,
    TurnResult,
)

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


async def _abort(context: Context, err: Exception, agent_id: str) -> None:
    status = from_temporal(err, agent_id)
    if status.code == grpc.StatusCode.INTERNAL:
        log.error("request for agent %s failed", agent_id, exc_info=err)
    await context.abort(status.code, status.message)


class AgentService(agent_pb2_grpc.AgentServiceServicer):
    def __init__(
        self,
        client: Client,
        hub: TokenHub,
        settings: GatewaySettings,
        store: TranscriptStore,
        access: AgentAccess | None = None,
    ) -> None:
        self.client = client
        # Which agents the caller (engram.auth.principal) may see; everything with auth off.
        self.access = access or AgentAccess(client)
        self.hub = hub
        self.settings = settings
        self.store = store
        self.transcript = TranscriptReader(store)
        self.schedules = Schedules(client)

    def _agent(self, agent_id: str) -> WorkflowHandle[AgentWorkflow, str]:
        return self.client.get_workflow_handle_for(AgentWorkflow.run, WORKFLOW_ID_PREFIX + agent_id)

    async def _owned(
        self, agent_id: str, *, read: bool = False
    ) -> WorkflowHandle[AgentWorkflow, str]:
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
        await self.access.check_quota()
        agent_id = str(uuid.uuid4())
        spec = AgentSpec(
            agent_id=agent_id,
            goal=request.goal,
            model=model,
            system_prompt=request.system_prompt,
            metadata=dict(request.metadata),
            tools=[MessageToDict(tool) for tool in request.tools],
            config=MessageToDict(request.config),
            temperature=request.config.temperature or None,
            max_context_tokens=request.config.max_context_tokens,
            parent_id=parent_id,
        )
        info = await start_agent(
            self.client,
            NewAgent(
                spec=spec,
                tools=tools,
                tenant=self.access.tenant(),
                auto_approve_read_only=request.config.auto_approve_read_only,
                autonomous=request.config.autonomous,
                max_history_events=self.settings.max_history_events,
            ),
        )
        return agent_pb2.CreateAgentResponse(agent_id=agent_id, agent=_agent_message(info))

    @_reports_errors
    async def GetAgent(
        self, request: agent_pb2.GetAgentRequest, context: Context
    ) -> agent_pb2.Agent:
        handle = await self._owned(validation.agent_id(request.agent_id), read=True)
        info, description = await asyncio.gather(
            handle.query(AgentWorkflow.describe), handle.describe()
        )
        if description.status != WorkflowExecutionStatus.RUNNING:
            info.status = AgentStatus.DELETED  # a force-deleted agent never got to say so itself
        return _agent_message(info)

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
        else:
            query += " AND ExecutionStatus = 'Running'"
            if status:
                query += f" AND {STATUS_ATTRIBUTE.name} = '{status}'"
        query += self.access.list_filter()
        executions = self.client.list_workflows(
            query, page_size=page_size, next_page_token=_decode_token(request.page_token)
        )
        await executions.fetch_next_page()
        agents = [await _listed_agent(e) for e in executions.current_page or []]
        token = executions.next_page_token
        return agent_pb2.ListAgentsResponse(
            agents=agents,
            next_page_token=base64.urlsafe_b64encode(token).decode() if token else "",
        )

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
                await handle.signal(AgentWorkflow.delete)
        await self.schedules.delete_all(agent_id)
        return empty_pb2.Empty()

    @_reports_errors
    async def ControlAgent(
        self, request: agent_pb2.ControlAgentRequest, context: Context
    ) -> agent_pb2.ControlAgentResponse:
        agent_id = validation.agent_id(request.agent_id)
        command = request.WhichOneof("command")
        if command is None:
            raise invalid(
                "one of pause, resume, cancel, retry, edit, approval, tool_result or run is "
                "required"
            )
        handle = await self._owned(agent_id)
        if command == "edit":
            change = await self._edit(request.edit, agent_id)
            status = await handle.execute_update(AgentWorkflow.edit, change)
        elif command == "approval":
            status = await self._decide(handle, request.approval)
        elif command == "tool_result":
            status = await self._tool_result(handle, request.tool_result)
        elif command == "run":
            run = RunInput(run_id=f"run-{uuid.uuid4()}", instructions=request.run.instructions)
            status = await handle.execute_update(AgentWorkflow.start_run, run)
        else:
            status = await handle.execute_update(AgentWorkflow.control, Command(command))
        return agent_pb2.ControlAgentResponse(status=status)

    @_reports_errors
    async def SetAgentStatus(
        self, request: agent_pb2.SetAgentStatusRequest, context: Context
    ) -> agent_pb2.SetAgentStatusResponse:
        agent_id = validation.agent_id(request.agent_id)
        handle = await self._owned(agent_id)
        wanted = request.status.strip().lower()
        if wanted == AgentStatus.DELETED:
            await handle.signal(AgentWorkflow.delete)
            await self.schedules.delete_all(agent_id)
            return agent_pb2.SetAgentStatusResponse(status=AgentStatus.DELETED)
        if wanted not in STATUS_COMMANDS:
            choices = ", ".join([*STATUS_COMMANDS, AgentStatus.DELETED])
            raise invalid(f"status must be one of {choices}")
        status = await handle.execute_update(AgentWorkflow.control, STATUS_COMMANDS[wanted])
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

    async def _edit(self, request: agent_pb2.Edit, agent_id: str) -> EditInput:
        """An Edit, checked, with the tools it names resolved against the workers' catalog."""
        change, tools = validation.edit(request)
        if tools is not None:
            change.tools = await self._resolve_tools(tools, agent_id)
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
        page = await (await self._owned(agent_id, read=True)).query(AgentWorkflow.history)
        turns = await self.transcript.turns(agent_id, page)
        return agent_pb2.GetHistoryResponse(
            turns=[
                agent_pb2.Turn(
                    message_id=t.message_id,
                    user=t.user,
                    reply=t.reply,
                    outcome=t.outcome,
                    error=t.error,
                    first_sequence_id=t.first_seq,
                    last_sequence_id=t.last_seq,
                    started_at=timestamp(t.started_at),
                    ended_at=timestamp(t.ended_at) if t.ended_at else None,
                )
                for t in turns
            ]
        )

    # --- streams --------------------------------------------------------------------------

    async def Chat(
        self, request_iterator: AsyncIterator[agent_pb2.ClientMessage], context: Context
    ) -> AsyncIterator[agent_pb2.ServerMessage]:
        # Inputs are submitted as they arrive (so they queue durably, in order, and a cancel can
        # reach the turn in progress); turns stream back one at a time.
        turns: asyncio.Queue[_PendingTurn | Exception | None] = asyncio.Queue()
        reader = asyncio.create_task(self._read_chat(request_iterator, turns))
        cursor = Cursor()
        metrics.CHAT_STREAMS.inc()
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
    ) -> None:
        try:
            async for message in request_iterator:
                turn = await self._submit(message)
                if turn is not None:
                    turns.put_nowait(turn)
        except Exception as err:
            turns.put_nowait(from_temporal(err, "") if not isinstance(err, GatewayError) else err)
        else:
            turns.put_nowait(None)

    async def _submit(self, message: agent_pb2.ClientMessage) -> _PendingTurn | None:
        agent_id = validation.agent_id(message.agent_id)
        handle = self._agent(agent_id)
        kind = message.WhichOneof("payload")
        try:
            await self.access.check(agent_id)
            if kind == "user_input":
                files = attachments.check(
                    message.user_input.attachments,
                    self.settings.max_attachment_bytes,
                    self.settings.max_attachments_bytes,
                )
                content = validation.content(
                    message.user_input.content, self.settings.max_message_bytes, bool(files)
                )
                message_id = validation.message_id(message.message_id or str(uuid.uuid4()))
                observed = ObservedTurn(agent_id, message_id)
                # Claim check: the bytes go to the store; history gets the references.
                for ref, data in files:
                    await asyncio.to_thread(self.store.put_blob, ref.sha256, data)
                # Listen before submitting: the first tokens may come before the update returns.
                feed = self.hub.open((agent_id, message_id))
                try:
                    with observed.submitting():
                        update = await handle.start_update(
                            AgentWorkflow.chat,
                            ChatInput(
                                message_id,
                                content,
                                self.settings.advertise_address,
                                [ref for ref, _ in files],
                            ),
                            id=f"chat-{message_id}",
                            wait_for_stage=Stage.ACCEPTED,
                        )
                except BaseException:
                    self.hub.release(feed)
                    observed.abandon()
                    raise
                result = asyncio.ensure_future(turn_ended(handle, message_id, update.result()))
                return _PendingTurn(agent_id, message_id, feed, result, observed)
            if kind in (Command.PAUSE, Command.RESUME, Command.CANCEL):
                await handle.execute_update(AgentWorkflow.control, Command(kind))
                return None
            if kind == "edit":
                change = await self._edit(message.edit, agent_id)
                await handle.execute_update(AgentWorkflow.edit, change)
                return None
            if kind == "approval":
                await self._decide(handle, message.approval)
                return None
            if kind == "tool_result":
                await self._tool_result(handle, message.tool_result)
                return None
            if kind == "run":
                return await self._start_run(agent_id, handle, message)
            raise invalid(
                "a ClientMessage needs user_input, pause, resume, cancel, edit, approval, "
                "tool_result or run"
            )
        except Exception as err:
            raise from_temporal(err, agent_id) from err

    async def _start_run(
        self,
        agent_id: str,
        handle: WorkflowHandle[AgentWorkflow, str],
        message: agent_pb2.ClientMessage,
    ) -> _PendingTurn:
        """Start a run from a Chat stream, which then follows it as it would a turn."""
        run_id = validation.message_id(message.message_id or f"run-{uuid.uuid4()}")
        feed = self.hub.open((agent_id, run_id))
        observed = ObservedTurn(agent_id, run_id)
        try:
            with observed.submitting():
                await handle.execute_update(
                    AgentWorkflow.start_run,
                    RunInput(
                        run_id=run_id,
                        instructions=message.run.instructions,
                        reply_to=self.settings.advertise_address,
                    ),
                )
        except BaseException:
            self.hub.release(feed)
            observed.abandon()
            raise
        result = asyncio.ensure_future(turn_ended(handle, run_id))
        return _PendingTurn(agent_id, run_id, feed, result, observed)

    async def _decide(
        self, handle: WorkflowHandle[AgentWorkflow, str], approval: agent_pb2.Approval
    ) -> str:
        decision = tool_specs.decision(approval)
        return await handle.execute_update(AgentWorkflow.decide, decision)

    async def _tool_result(
        self, handle: WorkflowHandle[AgentWorkflow, str], result: agent_pb2.ToolResult
    ) -> str:
        answer = tool_specs.client_result(result, self.settings.max_message_bytes)
        return await handle.execute_update(AgentWorkflow.submit_tool_result, answer)

    async def _follow(
        self, turn: _PendingTurn, cursor: Cursor
    ) -> AsyncIterator[agent_pb2.ServerMessage]:
        async def record() -> Messages:
            return await self._turn_messages(turn.agent_id, await turn.result)

        # A Chat stream carries its own turns; following everything the agent does is Replay's.
        merge = TurnMerge(turn.message_id, after=cursor.last.get(turn.agent_id))
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
        turn.result.cancel()

    async def Replay(
        self, request: agent_pb2.ReplayRequest, context: Context
    ) -> AsyncIterator[agent_pb2.ServerMessage]:
        try:
            agent_id = validation.agent_id(request.agent_id)
            if request.from_sequence < 0:
                raise invalid("from_sequence must not be negative")
            start = 0 if request.include_history else request.from_sequence
            handle = await self._owned(agent_id, read=True)
            page = await handle.query(AgentWorkflow.events_since, start)
            last = start
            for event in await self.transcript.events_after(agent_id, start, page):
                yield to_server_message(agent_id, event)
                last = event.seq
            live = page.in_flight
            if live is None:
                return

            async def record() -> Messages:
                result = await turn_ended(handle, live.message_id)
                return await self._turn_messages(agent_id, result)

            merge = TurnMerge(live.message_id, after=last, everything=True)
            # Listen before asking for the turn's events, then read what was stored meanwhile:
            # an event the workflow sent elsewhere (or nowhere, for a run's step) before it knew
            # of this client is in the store, and everything after is sent here.
            with self.hub.reading((agent_id, live.message_id)) as feed:
                if live.reply_to != self.settings.advertise_address:
                    here = self.settings.advertise_address
                    await handle.signal(AgentWorkflow.relay_to, args=[live.message_id, here])
                    merge.add(await self._stored_since(agent_id, last))
                async for message in follow_turn(
                    merge, feed, record(), functools.partial(self._stored_since, agent_id)
                ):
                    yield message
        except Exception as err:
            await _abort(context, err, request.agent_id)

    async def _stored_since(self, agent_id: str, seq: int) -> Messages:
        page = await self._agent(agent_id).query(AgentWorkflow.events_since, seq)
        return _messages(agent_id, await self.transcript.events_after(agent_id, seq, page))

    async def _turn_messages(self, agent_id: str, result: TurnResult) -> Messages:
        return _messages(agent_id, await self.transcript.turn_events(agent_id, result))


@dataclass
class _PendingTurn:
    """A submitted user input whose turn a Chat stream has yet to send."""

    agent_id: str
    message_id: str
    feed: TurnFeed
    result: asyncio.Future[TurnResult]
    # Its metrics, trace span and log fields, from the moment the input arrived.
    observed: ObservedTurn


async def turn_ended(
    handle: WorkflowHandle[AgentWorkflow, str],
    message_id: str,
    first: Awaitable[TurnResult] | None = None,
) -> TurnResult:
    """The turn's whole record once it has ended. A run that continues as new mid-turn answers
    its waiters "continued": they wait again, on the agent's next run."""
    result = await (first or handle.execute_update(AgentWorkflow.wait_turn, message_id))
    while result.continued:
        # Until the old run has handed over, it answers at once: give it a moment.
        await asyncio.sleep(0.05)
        result = await handle.execute_update(AgentWorkflow.wait_turn, message_id)
    return result


def _messages(agent_id: str, events: list[Event]) -> Messages:
    return [to_server_message(agent_id, e) for e in events]


def _agent_message(info: AgentInfo) -> agent_pb2.Agent:
    spec = info.spec
    duration = Duration()
    duration.FromNanoseconds(round(info.busy_seconds * 1e9))
    return agent_pb2.Agent(
        agent_id=spec.agent_id,
        goal=spec.goal,
        status=info.status,
        created_at=timestamp(info.created_at),
        updated_at=timestamp(info.updated_at),
        metadata=spec.metadata,
        stats=agent_pb2.AgentStats(
            total_steps=info.steps,
            tool_calls=info.tool_calls,
            total_duration=duration,
            tokens_used=info.tokens_used,
        ),
        model=spec.model,
        system_prompt=spec.system_prompt,
        tools=[tool_specs.to_proto(t) for t in info.tools]
        or [ParseDict(t, agent_pb2.Tool()) for t in spec.tools],
        config=ParseDict(spec.config, agent_pb2.AgentConfig()),
        queued_messages=info.queued_messages,
        last_sequence_id=info.last_seq,
        memory=[
            agent_pb2.MemoryNote(name=n.name, content=n.content, updated_at=timestamp(n.updated_at))
            for n in info.notes
        ],
        pending_calls=[
            agent_pb2.PendingToolCall(
                call_id=p.call_id,
                tool_name=p.tool,
                input_json=p.arguments,
                waiting_for=p.waiting_for,
                since=timestamp(p.since),
                deadline=timestamp(p.deadline) if p.deadline else None,
                message_id=p.message_id,
            )
            for p in info.pending
        ],
        run=_run_info(info.run, info.status) if info.run is not None else None,
        parent_id=spec.parent_id,
        children=info.children,
    )


def _run_info(run: RunState, status: str) -> agent_pb2.RunInfo:
    state = "waiting_for_user" if run.waiting_for_user else status
    return agent_pb2.RunInfo(
        run_id=run.run_id,
        state=state,
        steps=run.steps,
        tokens=run.tokens,
        started_at=timestamp(run.started_at),
        sleeping_until=timestamp(run.sleeping_until) if run.sleeping_until else None,
    )


async def _listed_agent(execution: WorkflowExecution) -> agent_pb2.Agent:
    memo = await execution.memo()
    running = execution.status == WorkflowExecutionStatus.RUNNING
    status = (
        execution.typed_search_attributes.get(STATUS_ATTRIBUTE) if running else AgentStatus.DELETED
    )
    updated = execution.close_time or execution.start_time
    return agent_pb2.Agent(
        agent_id=execution.id.removeprefix(WORKFLOW_ID_PREFIX),
        goal=memo.get("goal", ""),
        status=status or AgentStatus.IDLE,
        created_at=timestamp(float(memo.get("created_at", execution.start_time.timestamp()))),
        updated_at=timestamp(updated.timestamp()),
        metadata=memo.get("metadata", {}),
        model=memo.get("model", ""),
        parent_id=execution.typed_search_attributes.get(PARENT_ATTRIBUTE) or "",
    )


def _decode_token(token: str) -> bytes | None:
    if not token:
        return None
    try:
        return base64.urlsafe_b64decode(token.encode())
    except (binascii.Error, ValueError):
        raise invalid("page_token is not a token this service issued") from None
