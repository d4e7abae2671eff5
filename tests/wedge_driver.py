"""A seeded random driver that mixes every AgentService call against a real engine, to find a
state from which an agent no longer answers (a "wedge"), a lost or doubled message, or a call
answered INTERNAL/UNKNOWN.

Lanes (threads) each own a few agents and run their own seeded sequence of operations on them and,
for the calls that need no particular state, on any agent; a chaos thread SIGKILLs the worker, a
gateway or the Temporal server at fixed points of the run and restarts it. The seed fixes each
lane's operations and the kills; how the lanes interleave is up to the scheduler.

Every user message carries a marker `[wh:...]` unique to it, so the final check can count it in
the agent's stored messages: a message whose `user_message` came back (its send acknowledged)
must be there exactly once, and no marker may be there twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct

from bench.soak import Parts
from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.cluster import Cluster
from tests.conftest import Reader
from tests.fake_llm import Messages, Reply, ToolUse, default_reply, text_of_content

T = TypeVar("T")

MAX_MESSAGE_BYTES = 64 * 1024
# Smaller than the 10 MiB defaults so that requests at the limits stay cheap; the engine is
# started with these.
MAX_ATTACHMENT_BYTES = 128 * 1024
MAX_ATTACHMENTS_BYTES = 192 * 1024
MARKER = re.compile(r"\[wh:[^\]]+\]")
TRAILING_MARKER = re.compile(r"\s*\[wh:[^\]]+\]$")
# Codes a call may end with: clear refusals, and the ones a killed process gives.
ALLOWED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
    }
)
CLIENT_TOOL_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"q": {"type": "string"}}}


def model(messages: Messages) -> Reply:
    """The fake LLM's answers: `call <tool> <json>` calls that tool (with a call id fixed by the
    message, so a regenerated reply makes the same call), a tool's result is reported, a run is
    finished at once, anything else echoed."""
    last = messages[-1] if messages else {"role": "user", "content": ""}
    if last["role"] == "tool":
        return f"Done: {text_of_content(last['content'])[:200]}."
    if any("call finish" in text_of_content(m.get("content")) for m in messages[:2]):
        return ToolUse([("finish", '{"answer": "run done"}')])
    content = text_of_content(last.get("content"))
    if content.startswith("call "):
        name, _, arguments = content.removeprefix("call ").partition(" ")
        arguments = TRAILING_MARKER.sub("", arguments) or "{}"
        call_id = "call_" + hashlib.sha256(content.encode()).hexdigest()[:16]
        return ToolUse([(name, arguments)], call_ids=[call_id])
    return default_reply(messages)


def nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@dataclass
class Lane:
    """The agents one thread owns: it alone pauses them and answers their tool calls."""

    index: int
    plain: str = ""
    tools: str = ""
    sub: str = ""
    texting: str = ""


@dataclass
class Stats:
    ops: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)
    codes: Counter[str] = field(default_factory=Counter)
    kills: Counter[str] = field(default_factory=Counter)
    acked: int = 0


class Driver:
    def __init__(self, data_dir: Path, llm_url: str, seed: int, ops: int, lanes: int = 6) -> None:
        self.seed, self.total_ops, self.lane_count = seed, ops, lanes
        self.effects = data_dir / "effects.log"
        self.cluster = Cluster(
            data_dir,
            llm_url,
            ENGRAM_TOOLS="tests.tool_module,tests.effect_tools",
            ENGRAM_TEST_EFFECTS=str(self.effects),
            ENGRAM_MAX_ATTACHMENT_BYTES=str(MAX_ATTACHMENT_BYTES),
            ENGRAM_MAX_ATTACHMENTS_BYTES=str(MAX_ATTACHMENTS_BYTES),
        )
        self.parts: Parts | None = None
        self.lock = threading.Lock()
        self.stats = Stats()
        self.problems: list[str] = []
        # agent id -> markers of its messages whose send was acknowledged
        self.acked: dict[str, set[str]] = {}
        self.agents: list[str] = []
        self.lanes: list[Lane] = []
        self.scheduled = ""
        self.schedules: set[str] = set()
        self.started_ops = self.done_ops = 0
        # operation tag (lane.number, the start of each marker) -> the operation's kind
        self.op_of: dict[str, str] = {}
        self.kill_windows: list[tuple[float, float]] = []
        self._stubs: dict[str, agent_pb2_grpc.AgentServiceStub] = {}
        self.kills_done = threading.Event()
        # The processes a thread starts die with that thread (engram.processes.die_with_parent):
        # the chaos thread, which restarts them, lives until the cluster is stopped.
        self.closed = threading.Event()

    # --- plumbing ------------------------------------------------------------------------

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)

    def stub(self, r: random.Random) -> agent_pb2_grpc.AgentServiceStub:
        assert self.parts is not None
        address = r.choice(self.parts.addresses())
        with self.lock:
            if address not in self._stubs:
                self._stubs[address] = agent_pb2_grpc.AgentServiceStub(
                    grpc.insecure_channel(address)
                )
            return self._stubs[address]

    def note_code(self, what: str, code: grpc.StatusCode, detail: str = "") -> None:
        with self.lock:
            self.stats.codes[code.name] += 1
        if code not in ALLOWED:
            self.problem(f"{what}: {code.name} {detail[:300]}")

    def call(
        self,
        what: str,
        fn: Callable[[], T],
        expect: grpc.StatusCode | None = None,
        retry: bool = False,
    ) -> T | None:
        """`fn()`, its failure checked: only allowed codes; `expect` (a refusal) must be what a
        refused call gets, unless a killed process answered first. A call that must get through
        (`retry`: an idempotent command) is tried again while a killed process is down."""
        for attempt in range(8 if retry else 1):
            try:
                result = fn()
                break
            except grpc.RpcError as err:
                code = err.code()
                self.note_code(what, code, str(err.details()))
                if expect is not None and code not in (expect, *DOWN):
                    self.problem(f"{what}: expected {expect.name}, got {code.name} {err.details()}")
                if code not in DOWN or not retry:
                    return None
                time.sleep(0.5 * (attempt + 1))
        else:
            return None
        if expect is not None:
            self.problem(f"{what}: expected {expect.name}, the call was accepted")
        return result

    def ack(self, agent_id: str, messages: list[agent_pb2.ServerMessage]) -> None:
        for m in messages:
            if m.HasField("user_message"):
                found = MARKER.search(m.user_message.content)
                if found:
                    with self.lock:
                        self.acked.setdefault(agent_id, set()).add(found.group())

    def check_order(self, what: str, messages: list[agent_pb2.ServerMessage]) -> None:
        seqs = [m.sequence_id for m in messages]
        if seqs != sorted(set(seqs)):
            self.problem(f"{what}: sequence ids repeat or go back: {seqs[:50]}")

    # --- setup ---------------------------------------------------------------------------

    def start(self) -> None:
        self.cluster.start_temporal()
        self.parts = Parts(self.cluster)
        stub = self.stub(random.Random(0))
        for i in range(self.lane_count):
            lane = Lane(i)
            lane.plain = self.create(stub, goal=f"lane {i} plain")
            lane.sub = self.create(stub, goal=f"lane {i} helper", double_texting="steer")
            lane.texting = self.create(stub, goal=f"lane {i} texting", double_texting="interrupt")
            confirm = agent_pb2.Tool(
                name="lookup", description="Look something up", requires_confirmation=True
            )
            confirm.parameters_schema.update(CLIENT_TOOL_SCHEMA)
            locate = agent_pb2.Tool(name="locate", description="Where the user is")
            locate.parameters_schema.update(CLIENT_TOOL_SCHEMA)
            lane.tools = self.create(
                stub,
                goal=f"lane {i} tools",
                tools=[
                    agent_pb2.Tool(name="deploy"),
                    confirm,
                    locate,
                    agent_pb2.Tool(name=f"agent_{lane.sub}"),
                    agent_pb2.Tool(name="create_helper"),
                ],
            )
            self.lanes.append(lane)
        self.scheduled = self.create(stub, goal="wake up on schedule")

    def create(
        self, stub: agent_pb2_grpc.AgentServiceStub, double_texting: str = "", **fields: Any
    ) -> str:
        request = agent_pb2.CreateAgentRequest(
            model="fake-model",
            config=agent_pb2.AgentConfig(double_texting=double_texting),
            **fields,
        )
        agent_id = str(stub.CreateAgent(request, timeout=30, wait_for_ready=True).agent_id)
        with self.lock:
            self.agents.append(agent_id)
        return agent_id

    # --- the run -------------------------------------------------------------------------

    def run(self, kills: int = 6) -> None:
        threads = [
            threading.Thread(target=self._lane, args=(lane,), daemon=True) for lane in self.lanes
        ]
        chaos = threading.Thread(target=self._chaos, args=(kills,), daemon=True)
        for t in threads:
            t.start()
        chaos.start()
        for t in threads:
            t.join(600)
            if t.is_alive():
                self.problem(f"lane thread {t.name} never finished")
        self.kills_done.wait(180)

    def _take(self) -> bool:
        """Whether an operation is left to run: lanes share the count, so a lane held up by a
        slow operation leaves more of them to the others."""
        with self.lock:
            if self.started_ops >= self.total_ops:
                return False
            self.started_ops += 1
            return True

    def _lane(self, lane: Lane) -> None:
        r = random.Random(f"{self.seed}-lane-{lane.index}")
        ops = self.operations()
        names, weights = zip(*[(name, w) for name, (w, _) in ops.items()], strict=True)
        n = -1
        while self._take():
            n += 1
            name = r.choices(names, weights)[0]
            tag = f"{lane.index}.{n}"
            with self.lock:
                self.stats.ops[name] += 1
                self.op_of[tag] = name
            began = time.monotonic()
            try:
                ops[name][1](r, lane, tag)
            except grpc.RpcError as err:
                self.note_code(f"op {name} {tag}", err.code(), str(err.details()))
            except Exception as err:  # a bug in the driver or an engine answer it cannot read
                self.problem(f"op {name} {tag} raised {type(err).__name__}: {err}")
            with self.lock:
                self.done_ops += 1
            took = time.monotonic() - began
            with self.lock:
                self.stats.seconds[name] = self.stats.seconds.get(name, 0.0) + took
            if PROGRESS:
                print(f"{time.monotonic():.1f} lane {lane.index} op {n} {name}", flush=True)
                if took > 10:
                    print(f"slow op {name} {tag} {took:.1f} s: {self.describe(r, lane)}")

    def _chaos(self, kills: int) -> None:
        try:
            self._kill_some(kills)
        except Exception as err:
            self.problem(f"chaos: {type(err).__name__}: {err}")
        self.kills_done.set()
        self.closed.wait()

    def close(self) -> None:
        self.cluster.stop()
        self.closed.set()

    def describe(self, r: random.Random, lane: Lane) -> str:
        stub = self.stub(r)
        shown = []
        for agent_id in (lane.plain, lane.tools, lane.sub, lane.texting):
            info = self.call("GetAgent", lambda a=agent_id: stub.GetAgent(_get(a), timeout=5))  # type: ignore[misc]
            if info is not None:
                shown.append(
                    f"{agent_id[:8]} {info.status} queued {info.queued_messages} pending "
                    f"{[(p.tool_name, p.waiting_for) for p in info.pending_calls]}"
                )
        return "; ".join(shown)

    def _kill_some(self, kills: int) -> None:
        assert self.parts is not None
        r = random.Random(f"{self.seed}-chaos")
        victims = (["worker", "gateway", "temporal"] * kills)[:kills]
        r.shuffle(victims)
        for k, victim in enumerate(victims):
            threshold = self.total_ops * (k + 1) / (kills + 1)
            while self.done_ops < threshold:
                time.sleep(0.05)
                if self.done_ops >= self.total_ops:
                    return
            start = time.monotonic()
            self.parts.kill_and_restart(victim, downtime=r.uniform(0.2, 1.0))
            if PROGRESS:
                print(f"{start:.1f} killed {victim}, back after {time.monotonic() - start:.1f} s")
            with self.lock:
                self.stats.kills[victim] += 1
                self.kill_windows.append((start, time.monotonic()))

    def operations(self) -> dict[str, tuple[int, Callable[[random.Random, Lane, str], None]]]:
        return {
            # Operations that make turns cost the engine most: cheap calls keep the count high
            # within CI's budget while every kind still comes up many times.
            "chat": (8, self.op_chat),
            "double_text": (3, self.op_double_text),
            "follow": (4, self.op_follow),
            "approval": (4, self.op_approval),
            "client_tool": (3, self.op_client_tool),
            "pause": (1, self.op_pause),
            "edit": (12, self.op_edit),
            "withdraw": (1, self.op_withdraw),
            "delegate": (1, self.op_delegate),
            "limits": (10, self.op_limits),
            "schedule": (3, self.op_schedule),
            "read": (32, self.op_read),
            "control": (8, self.op_control),
            "lifecycle": (1, self.op_lifecycle),
            "run": (1, self.op_run),
        }

    # --- chat ----------------------------------------------------------------------------

    def send(
        self,
        r: random.Random,
        agent_id: str,
        contents: list[str],
        *,
        resend: bool = True,
        timeout: float = 20.0,
        attachments: list[agent_pb2.Attachment] | None = None,
    ) -> list[agent_pb2.ServerMessage]:
        """The messages on one Chat stream, until it ends; resent (same message ids) through a
        gateway that answers when the call breaks."""
        ids = [f"wh-{uuid.uuid4().hex[:12]}" if resend else "" for _ in contents]
        messages = [
            agent_pb2.ClientMessage(
                agent_id=agent_id,
                message_id=i,
                user_input=agent_pb2.UserInput(content=c, attachments=attachments or []),
            )
            for i, c in zip(ids, contents, strict=True)
        ]
        got: list[agent_pb2.ServerMessage] = []
        for attempt in range(4 if resend else 1):
            stream: list[agent_pb2.ServerMessage] = []
            try:
                for m in self.stub(r).Chat(iter(messages), timeout=timeout):
                    stream.append(m)
                self.ack(agent_id, stream)
                got += stream
                self.check_order(f"chat to {agent_id}", stream)
                return got
            except grpc.RpcError as err:
                self.ack(agent_id, stream)
                got += stream
                self.note_code(f"chat to {agent_id}", err.code(), str(err.details()))
                if err.code() not in DOWN:
                    return got
            time.sleep(0.3 * (attempt + 1))
        return got

    def any_agent(self, r: random.Random) -> str:
        with self.lock:
            return r.choice(self.agents)

    def op_chat(self, r: random.Random, lane: Lane, tag: str) -> None:
        target = lane.plain if r.random() < 0.7 else self.any_agent(r)
        own = target in (lane.plain, lane.texting)
        self.send(
            r,
            target,
            [f"hello {r.randrange(10**6)} [wh:{tag}]"],
            resend=r.random() < 0.7,
            timeout=10 if own else 3,
        )

    def op_double_text(self, r: random.Random, lane: Lane, tag: str) -> None:
        target = r.choice([lane.texting, lane.plain, lane.sub])
        count = r.randint(2, 4)
        contents = [f"double {k} [wh:{tag}.{k}]" for k in range(count)]
        if r.random() < 0.5:
            self.send(r, target, contents)
            return
        # Each on its own stream, at once, as impatient users do.
        threads = [
            threading.Thread(target=self.send, args=(r, target, [c]), daemon=True) for c in contents
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(40)

    def op_follow(self, r: random.Random, lane: Lane, tag: str) -> None:
        target = r.choice([lane.plain, lane.texting, self.any_agent(r)])
        stub = self.stub(r)
        if r.random() < 0.5:
            # Follow a live turn: Replay from now, while a message is answered.
            info = self.call("GetAgent", lambda: stub.GetAgent(_get(target), timeout=5))
            start = info.last_sequence_id if info else 0
            call = stub.Replay(agent_pb2.ReplayRequest(agent_id=target, from_sequence=start))
            follower = Reader(call)
            self.send(r, target, [f"followed [wh:{tag}]"], timeout=10)
            if r.random() < 0.5:
                call.cancel()
            follower.done.wait(5)
            call.cancel()
            if follower.error is not None:
                self.note_code("Replay", follower.error.code(), str(follower.error.details()))
            self.check_order(f"Replay of {target}", follower.messages)
            if any(m.sequence_id <= start for m in follower.messages):
                self.problem(f"Replay of {target} from {start} sent older messages")
            return
        request = agent_pb2.ReplayRequest(
            agent_id=target,
            from_sequence=r.choice([0, 1, 5, 10**9]),
            include_history=r.random() < 0.3,
        )
        messages = self.call("Replay", lambda: list(stub.Replay(request, timeout=10)))
        if messages is not None:
            self.check_order(f"Replay of {target}", messages)

    # --- approvals and client tools ------------------------------------------------------

    def start_turn(self, r: random.Random, agent_id: str, content: str) -> Reader:
        message = agent_pb2.ClientMessage(
            agent_id=agent_id,
            message_id=f"wh-{uuid.uuid4().hex[:12]}",
            user_input=agent_pb2.UserInput(content=content),
        )
        return Reader(self.stub(r).Chat(iter([message]), timeout=30))

    def waiting(self, reader: Reader, status: str, timeout: float = 15) -> str:
        """The call id of the tool call the turn waits on for `status`, or ""."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            call_id = ""
            for m in list(reader.messages):
                if m.HasField("tool_call"):
                    call_id = m.tool_call.call_id
                if m.HasField("status") and m.status.status == status and call_id:
                    return call_id
            if reader.done.is_set():
                return ""
            time.sleep(0.02)
        return ""

    def finish_turn(self, agent_id: str, reader: Reader, what: str) -> None:
        if not reader.done.wait(15):
            self.settle(self.stub(random.Random(agent_id)), agent_id)
            reader.done.wait(15)
        self.ack(agent_id, reader.messages)
        self.check_order(what, reader.messages)
        if reader.error is not None:
            self.note_code(what, reader.error.code(), str(reader.error.details()))

    def decide(
        self,
        r: random.Random,
        agent_id: str,
        approval: agent_pb2.Approval,
        expect: grpc.StatusCode | None = None,
    ) -> None:
        stub = self.stub(r)
        if r.random() < 0.7:
            request = agent_pb2.ControlAgentRequest(agent_id=agent_id, approval=approval)
            self.call("approval", lambda: stub.ControlAgent(request, timeout=10), expect, True)
        else:
            message = agent_pb2.ClientMessage(agent_id=agent_id, approval=approval)
            self.call(
                "approval", lambda: list(stub.Chat(iter([message]), timeout=10)), expect, True
            )

    def op_approval(self, r: random.Random, lane: Lane, tag: str) -> None:
        service = f"svc-{tag}"
        reader = self.start_turn(
            r, lane.tools, f'call deploy {{"service": "{service}"}} [wh:{tag}]'
        )
        call_id = self.waiting(reader, "awaiting_approval")
        if not call_id:
            self.finish_turn(lane.tools, reader, "approval turn")
            self.unstick(r, lane)
            return
        for _ in range(r.randint(0, 2)):
            bad = r.choice(
                [
                    nested(5000),
                    nested(33),
                    json.dumps({"service": "x" * (MAX_MESSAGE_BYTES + 10)}),
                    "{not json",
                    "[1, 2]",
                ]
            )
            edited = agent_pb2.Approval(call_id=call_id, approved=True, edited_input_json=bad)
            self.decide(r, lane.tools, edited, expect=grpc.StatusCode.INVALID_ARGUMENT)
        if r.random() < 0.15:
            cancel = agent_pb2.ControlAgentRequest(agent_id=lane.tools, cancel=agent_pb2.Cancel())
            stub = self.stub(r)
            self.call("cancel", lambda: stub.ControlAgent(cancel, timeout=10), retry=True)
            self.finish_turn(lane.tools, reader, "cancelled approval turn")
            late = agent_pb2.Approval(call_id=call_id, approved=True)
            self.decide(r, lane.tools, late, expect=grpc.StatusCode.FAILED_PRECONDITION)
            return
        choice = r.choice(["approve", "deny", "edit", "respond", "edit_deep_ok"])
        approval = agent_pb2.Approval(call_id=call_id, decided_by=f"lane {lane.index}")
        if choice == "approve":
            approval.approved = True
        elif choice == "deny":
            approval.reason = "not now"
        elif choice == "edit":
            approval.approved = True
            approval.edited_input_json = json.dumps({"service": service + "-edited"})
        elif choice == "edit_deep_ok":
            # At the limits: 32 levels deep, just under 64 KiB; deploy rejects the shape, which
            # is the model's problem, not the workflow's.
            approval.approved = True
            approval.edited_input_json = json.dumps({"service": "s" * (MAX_MESSAGE_BYTES - 200)})
            if r.random() < 0.5:
                approval.edited_input_json = nested(31)
        else:
            approval.response = "already deployed"
        self.decide(r, lane.tools, approval)
        if r.random() < 0.3:
            self.decide(r, lane.tools, approval)  # the same answer again changes nothing
        if r.random() < 0.3:
            other = agent_pb2.Approval(call_id=call_id, approved=not approval.approved)
            other.reason = "changed my mind"
            self.decide(r, lane.tools, other, expect=grpc.StatusCode.FAILED_PRECONDITION)
        self.finish_turn(lane.tools, reader, "approval turn")

    def op_client_tool(self, r: random.Random, lane: Lane, tag: str) -> None:
        confirm = r.random() < 0.5
        tool = "lookup" if confirm else "locate"
        reader = self.start_turn(r, lane.tools, f'call {tool} {{"q": "{tag}"}} [wh:{tag}]')
        if confirm:
            call_id = self.waiting(reader, "awaiting_approval")
            if call_id:
                self.decide(r, lane.tools, agent_pb2.Approval(call_id=call_id, approved=True))
        call_id = self.waiting(reader, "awaiting_result")
        if not call_id:
            self.finish_turn(lane.tools, reader, "client tool turn")
            self.unstick(r, lane)
            return
        stub = self.stub(r)
        if r.random() < 0.3:
            big = agent_pb2.ToolResult(call_id=call_id, output="x" * (MAX_MESSAGE_BYTES + 1))
            request = agent_pb2.ControlAgentRequest(agent_id=lane.tools, tool_result=big)
            self.call(
                "oversized tool_result",
                lambda: stub.ControlAgent(request, timeout=10),
                grpc.StatusCode.INVALID_ARGUMENT,
            )
        output = "y" * MAX_MESSAGE_BYTES if r.random() < 0.2 else f"found {tag}"
        result = agent_pb2.ToolResult(call_id=call_id, output=output)
        if r.random() < 0.5:
            request = agent_pb2.ControlAgentRequest(agent_id=lane.tools, tool_result=result)
            self.call("tool_result", lambda: stub.ControlAgent(request, timeout=10), retry=True)
        else:
            message = agent_pb2.ClientMessage(agent_id=lane.tools, tool_result=result)
            self.call(
                "tool_result", lambda: list(stub.Chat(iter([message]), timeout=10)), retry=True
            )
        self.finish_turn(lane.tools, reader, "client tool turn")

    def unstick(self, r: random.Random, lane: Lane) -> None:
        """Leave the lane's agents usable after an operation a kill cut short."""
        for agent_id in (lane.plain, lane.tools, lane.sub, lane.texting):
            self.settle(self.stub(r), agent_id)

    def settle(self, stub: agent_pb2_grpc.AgentServiceStub, agent_id: str) -> None:
        info = self.call("GetAgent", lambda: stub.GetAgent(_get(agent_id), timeout=10))
        if info is None or info.status == "deleted":
            return
        if info.status == "paused":
            resume = agent_pb2.ControlAgentRequest(agent_id=agent_id, resume=agent_pb2.Resume())
            self.call("resume", lambda: stub.ControlAgent(resume, timeout=10), retry=True)
        for pending in info.pending_calls:
            if pending.waiting_for == "approval":
                command = agent_pb2.ControlAgentRequest(
                    agent_id=agent_id,
                    approval=agent_pb2.Approval(call_id=pending.call_id, reason="settled"),
                )
            else:
                command = agent_pb2.ControlAgentRequest(
                    agent_id=agent_id,
                    tool_result=agent_pb2.ToolResult(call_id=pending.call_id, output="settled"),
                )
            self.call("settle", lambda c=command: stub.ControlAgent(c, timeout=10), retry=True)  # type: ignore[misc]

    # --- controls, edits, delegation -----------------------------------------------------

    def op_pause(self, r: random.Random, lane: Lane, tag: str) -> None:
        stub = self.stub(r)
        target = r.choice([lane.plain, lane.sub])
        pause = agent_pb2.ControlAgentRequest(
            agent_id=target, pause=agent_pb2.Pause(reason="coffee")
        )
        self.call("pause", lambda: stub.ControlAgent(pause, timeout=10))
        senders = [
            threading.Thread(
                target=self.send,
                args=(r, target, [f"while paused {k} [wh:{tag}.{k}]"]),
                daemon=True,
            )
            for k in range(r.randint(1, 3))
        ]
        for t in senders:
            t.start()
        time.sleep(0.2)
        self.call("GetAgent", lambda: stub.GetAgent(_get(target), timeout=10))
        if r.random() < 0.5:
            resume = agent_pb2.ControlAgentRequest(agent_id=target, resume=agent_pb2.Resume())
            self.call("resume", lambda: stub.ControlAgent(resume, timeout=10), retry=True)
        else:
            request = agent_pb2.SetAgentStatusRequest(agent_id=target, status="active")
            self.call(
                "SetAgentStatus", lambda: stub.SetAgentStatus(request, timeout=10), retry=True
            )
        for t in senders:
            t.join(40)

    def op_edit(self, r: random.Random, lane: Lane, tag: str) -> None:
        stub = self.stub(r)
        target = r.choice([lane.plain, lane.texting, lane.tools])
        good: list[dict[str, Any]] = [
            {"goal": f"goal {tag}"},
            {"temperature": r.choice([0.0, 0.5, 2.0])},
            {"memory": {f"note{r.randrange(40)}": "n" * r.choice([1, 2000])}},
            {"memory": {f"note{r.randrange(40)}": None}},
            {"system_prompt": "s" * r.choice([10, MAX_MESSAGE_BYTES])},
            {"max_context_tokens": r.choice([0, 4096])},
        ]
        if target == lane.texting:
            good.append({"double_texting": r.choice(["queue", "steer", "interrupt", "reject"])})
        bad: list[dict[str, Any]] = [
            {},
            {"colour": "blue"},
            {"temperature": 3},
            {"memory": {"n": "x" * 2001}},
            {"goal": "g" * (MAX_MESSAGE_BYTES + 1)},
            {"double_texting": "shout"},
            {"tools": ["no_such_tool"]},
        ]
        ok = r.random() < 0.6
        patch = Struct()
        patch.update(r.choice(good if ok else bad))
        edit = agent_pb2.Edit(patch=patch, description=f"edit {tag}")
        expect = None if ok else grpc.StatusCode.INVALID_ARGUMENT
        if r.random() < 0.7:
            request = agent_pb2.ControlAgentRequest(agent_id=target, edit=edit)
            self.call("edit", lambda: stub.ControlAgent(request, timeout=10), expect)
        else:
            message = agent_pb2.ClientMessage(agent_id=target, edit=edit)
            self.call("edit", lambda: list(stub.Chat(iter([message]), timeout=10)), expect)

    def op_withdraw(self, r: random.Random, lane: Lane, tag: str) -> None:
        """A delegated task queued behind a paused helper, withdrawn by cancelling its caller."""
        stub = self.stub(r)
        pause = agent_pb2.ControlAgentRequest(agent_id=lane.sub, pause=agent_pb2.Pause())
        self.call("pause", lambda: stub.ControlAgent(pause, timeout=10))
        task = json.dumps({"task": f"withdrawn task [wh:{tag}.task]"})
        reader = self.start_turn(r, lane.tools, f"call agent_{lane.sub} {task} [wh:{tag}]")
        deadline = time.monotonic() + 10
        while not any(m.HasField("tool_call") for m in list(reader.messages)):
            if reader.done.is_set() or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            info = self.call("GetAgent", lambda: stub.GetAgent(_get(lane.sub), timeout=5))
            if info is not None and info.queued_messages:
                break
            time.sleep(0.1)
        cancel = agent_pb2.ControlAgentRequest(agent_id=lane.tools, cancel=agent_pb2.Cancel())
        self.call("cancel", lambda: stub.ControlAgent(cancel, timeout=10), retry=True)
        self.finish_turn(lane.tools, reader, "withdrawing turn")
        resume = agent_pb2.ControlAgentRequest(agent_id=lane.sub, resume=agent_pb2.Resume())
        self.call("resume", lambda: stub.ControlAgent(resume, timeout=10), retry=True)

    def op_delegate(self, r: random.Random, lane: Lane, tag: str) -> None:
        if r.random() < 0.1:
            arguments = json.dumps({"goal": "help once", "task": f"helper task [wh:{tag}.task]"})
            content = f"call create_helper {arguments} [wh:{tag}]"
        else:
            task = json.dumps({"task": f"sub task [wh:{tag}.task]"})
            content = f"call agent_{lane.sub} {task} [wh:{tag}]"
        self.send(r, lane.tools, [content], timeout=15)

    def op_control(self, r: random.Random, lane: Lane, tag: str) -> None:
        stub = self.stub(r)
        target = r.choice([lane.plain, lane.texting])
        kind = r.choice(["cancel", "retry", "status", "status", "nothing", "cancel_live"])
        if kind == "cancel":
            request = agent_pb2.ControlAgentRequest(agent_id=target, cancel=agent_pb2.Cancel())
            self.call("cancel", lambda: stub.ControlAgent(request, timeout=10))
        elif kind == "retry":
            request = agent_pb2.ControlAgentRequest(agent_id=target, retry=agent_pb2.Retry())
            self.call("retry", lambda: stub.ControlAgent(request, timeout=10))
        elif kind == "status":
            wanted = r.choice(["paused", "active", "cancelled", "idle", "bogus"])
            set_status = agent_pb2.SetAgentStatusRequest(agent_id=target, status=wanted)
            expect = grpc.StatusCode.INVALID_ARGUMENT if wanted == "bogus" else None
            self.call("SetAgentStatus", lambda: stub.SetAgentStatus(set_status, timeout=10), expect)
            active = agent_pb2.SetAgentStatusRequest(agent_id=target, status="active")
            self.call("SetAgentStatus", lambda: stub.SetAgentStatus(active, timeout=10), retry=True)
        elif kind == "nothing":
            request = agent_pb2.ControlAgentRequest(agent_id=target)
            self.call(
                "empty control",
                lambda: stub.ControlAgent(request, timeout=10),
                grpc.StatusCode.INVALID_ARGUMENT,
            )
        else:
            # Cancel on the stream of a turn in progress (or just ended).
            messages = [
                agent_pb2.ClientMessage(
                    agent_id=target, user_input=agent_pb2.UserInput(content=f"stop me [wh:{tag}]")
                ),
                agent_pb2.ClientMessage(agent_id=target, cancel=agent_pb2.Cancel()),
            ]
            got = self.call("Chat cancel", lambda: list(stub.Chat(iter(messages), timeout=15)))
            if got is not None:
                self.ack(target, got)

    def op_run(self, r: random.Random, lane: Lane, tag: str) -> None:
        stub = self.stub(r)
        run = agent_pb2.Run(instructions=f"call finish {tag}")
        request = agent_pb2.ControlAgentRequest(agent_id=lane.plain, run=run)
        self.call("run", lambda: stub.ControlAgent(request, timeout=10))

    # --- limits --------------------------------------------------------------------------

    def op_limits(self, r: random.Random, lane: Lane, tag: str) -> None:
        marker = f" [wh:{tag}]"
        kind = r.choice(["content", "content_over", "empty", "attach", "attach_over", "attach_bad"])
        target = lane.plain
        if kind == "content":
            filler = "é" * ((MAX_MESSAGE_BYTES - len(marker)) // 2)
            content = filler + "x" * (MAX_MESSAGE_BYTES - len(marker) - len(filler.encode()))
            self.send(r, target, [content + marker])
            return
        stub = self.stub(r)
        files: list[agent_pb2.Attachment] = []
        content = f"with files{marker}"
        if kind == "content_over":
            content = "x" * (MAX_MESSAGE_BYTES + 1 - len(marker)) + marker
        elif kind == "empty":
            content = " "
        elif kind == "attach":
            files = [
                agent_pb2.Attachment(name="a.txt", mime_type="text/plain", data=b"a" * size)
                for size in (MAX_ATTACHMENT_BYTES, MAX_ATTACHMENTS_BYTES - MAX_ATTACHMENT_BYTES)
            ]
            self.send(r, target, [content], attachments=files)
            return
        elif kind == "attach_over":
            size = r.choice([MAX_ATTACHMENT_BYTES + 1, MAX_ATTACHMENTS_BYTES // 2 + 1])
            files = [
                agent_pb2.Attachment(name=f"{k}.txt", mime_type="text/plain", data=b"b" * size)
                for k in range(1 if size == MAX_ATTACHMENT_BYTES + 1 else 2)
            ]
        else:
            files = [agent_pb2.Attachment(name="x.bin", mime_type="application/zip", data=b"PK")]
        message = agent_pb2.ClientMessage(
            agent_id=target, user_input=agent_pb2.UserInput(content=content, attachments=files)
        )
        self.call(
            f"limits {kind}",
            lambda: list(stub.Chat(iter([message]), timeout=10)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )

    # --- schedules, reads, lifecycle -----------------------------------------------------

    def op_schedule(self, r: random.Random, lane: Lane, tag: str) -> None:
        stub = self.stub(r)
        kind = r.choice(["create", "create", "list", "delete", "bad"])
        agent_id = self.scheduled
        if kind == "create" and len(self.schedules) < 2:
            name = f"wh-{tag}"
            request = agent_pb2.CreateScheduleRequest(
                agent_id=agent_id,
                name=name,
                every=Duration(seconds=r.randint(2, 5)),
                instructions=f"call finish for {name}",
                overlap=r.choice(["", "skip", "buffer_one"]),
            )
            if self.call("CreateSchedule", lambda: stub.CreateSchedule(request, timeout=10)):
                with self.lock:
                    self.schedules.add(name)
        elif kind == "delete" and self.schedules:
            with self.lock:
                name = r.choice(sorted(self.schedules))
                self.schedules.discard(name)
            delete = agent_pb2.DeleteScheduleRequest(agent_id=agent_id, name=name)
            self.call("DeleteSchedule", lambda: stub.DeleteSchedule(delete, timeout=10), retry=True)
        elif kind == "bad":
            bad = r.choice(
                [
                    agent_pb2.CreateScheduleRequest(agent_id=agent_id, name="-bad", cron=["* * *"]),
                    agent_pb2.CreateScheduleRequest(agent_id=agent_id, name="x"),
                    agent_pb2.CreateScheduleRequest(
                        agent_id=agent_id, name="x", every=Duration(nanos=5000)
                    ),
                    agent_pb2.CreateScheduleRequest(
                        agent_id=agent_id, name="x", cron=["* * * * *"], overlap="pile_up"
                    ),
                ]
            )
            self.call(
                "bad schedule",
                lambda: stub.CreateSchedule(bad, timeout=10),
                grpc.StatusCode.INVALID_ARGUMENT,
            )
        else:
            listed = agent_pb2.ListSchedulesRequest(agent_id=agent_id)
            self.call("ListSchedules", lambda: stub.ListSchedules(listed, timeout=10))

    def op_read(self, r: random.Random, lane: Lane, tag: str) -> None:
        stub = self.stub(r)
        kind = r.choice(["get", "get", "list", "history", "tools", "missing", "malformed"])
        target = self.any_agent(r)
        if kind == "get":
            info = self.call("GetAgent", lambda: stub.GetAgent(_get(target), timeout=10))
            if info is not None and info.status == "needs_attention":
                self.problem(f"agent {target} needs attention: {info.attention}")
        elif kind == "list":
            status = r.choice(
                ["", "idle", "thinking", "paused", "deleted", "waiting", "autonomous"]
            )
            size = r.choice([0, 1, 7, 1000, 5000])
            request = agent_pb2.ListAgentsRequest(status_filter=status, page_size=size)
            self.call("ListAgents", lambda: stub.ListAgents(request, timeout=10))
            if r.random() < 0.2:
                bad = agent_pb2.ListAgentsRequest(page_size=-1)
                self.call(
                    "ListAgents",
                    lambda: stub.ListAgents(bad, timeout=10),
                    grpc.StatusCode.INVALID_ARGUMENT,
                )
        elif kind == "history":
            history = agent_pb2.GetHistoryRequest(agent_id=target)
            self.call("GetHistory", lambda: stub.GetHistory(history, timeout=10))
        elif kind == "tools":
            self.call("ListTools", lambda: stub.ListTools(agent_pb2.ListToolsRequest(), timeout=10))
        elif kind == "missing":
            missing = str(uuid.uuid4())
            self.call(
                "GetAgent missing",
                lambda: stub.GetAgent(_get(missing), timeout=10),
                grpc.StatusCode.NOT_FOUND,
            )
        else:
            self.call(
                "GetAgent malformed",
                lambda: stub.GetAgent(_get("not-a-uuid"), timeout=10),
                grpc.StatusCode.INVALID_ARGUMENT,
            )

    def op_lifecycle(self, r: random.Random, lane: Lane, tag: str) -> None:
        stub = self.stub(r)
        parent = lane.plain if r.random() < 0.3 else ""
        request = agent_pb2.CreateAgentRequest(goal=f"short-lived {tag}", model="fake-model")
        request.parent_id = parent
        created = self.call("CreateAgent", lambda: stub.CreateAgent(request, timeout=15))
        if created is None:
            return
        agent_id = created.agent_id
        with self.lock:
            self.agents.append(agent_id)
        self.send(r, agent_id, [f"before deletion [wh:{tag}]"])
        how = r.choice(["delete", "force", "status"])
        if how == "status":
            deleted = agent_pb2.SetAgentStatusRequest(agent_id=agent_id, status="deleted")
            done = self.call("delete", lambda: stub.SetAgentStatus(deleted, timeout=15))
        else:
            delete = agent_pb2.DeleteAgentRequest(agent_id=agent_id, force=how == "force")
            done = self.call("delete", lambda: stub.DeleteAgent(delete, timeout=15))
        if done is None:
            return
        message = agent_pb2.ClientMessage(
            agent_id=agent_id, user_input=agent_pb2.UserInput(content="after deletion")
        )
        self.call(
            f"chat to deleted ({how})",
            lambda: list(stub.Chat(iter([message]), timeout=10)),
            grpc.StatusCode.FAILED_PRECONDITION,
        )

    # --- the end -------------------------------------------------------------------------

    def settle_all(self, stub: agent_pb2_grpc.AgentServiceStub) -> None:
        for name in sorted(self.schedules):
            delete = agent_pb2.DeleteScheduleRequest(agent_id=self.scheduled, name=name)
            self.call(
                "DeleteSchedule",
                lambda d=delete: stub.DeleteSchedule(d, timeout=10),  # type: ignore[misc]
                retry=True,
            )
        for _ in range(3):
            for agent_id in list(self.agents):
                self.settle(stub, agent_id)
            time.sleep(0.5)


PROGRESS = bool(os.environ.get("ENGRAM_WEDGE_PROGRESS"))
DOWN = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _get(agent_id: str) -> agent_pb2.GetAgentRequest:
    return agent_pb2.GetAgentRequest(agent_id=agent_id)


def stored_markers(
    messages: Iterator[agent_pb2.ServerMessage] | list[agent_pb2.ServerMessage],
) -> Counter[str]:
    """How often each message marker is among an agent's stored user messages."""
    found: Counter[str] = Counter()
    for m in messages:
        # A retry (ControlAgent retry) runs a failed turn's message again, as asked.
        if m.HasField("user_message") and "#retry" not in m.message_id:
            for marker in MARKER.findall(m.user_message.content)[:1]:
                found[marker] += 1
    return found
