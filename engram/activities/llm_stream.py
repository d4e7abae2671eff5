"""The LLM call: one activity per turn, streaming from any OpenAI-compatible endpoint.

Tokens go to the gateway while they are generated (see relay_publisher); the activity's result,
recorded once in workflow history, is the turn's durable record. Progress is heartbeated, so a
retry after a worker crash knows what the client was already shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, cast

import httpx2
import openai
from openai.types.chat import ChatCompletionMessageParam
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from engram import WORKFLOW_ID_PREFIX
from engram.activities import attachments, prompt_texts, reply_checkpoint, tenant_budget
from engram.activities.early_start import EarlyStarts, Opened, key_of
from engram.activities.failover import Breakers
from engram.activities.llm_errors import LLMFailure, classify
from engram.activities.relay_publisher import RelayChannels, TurnRelay, received
from engram.activities.tenant_budget import TenantBudgetExhausted, TenantBudgets
from engram.llm_settings import LLMEndpoint, LLMEndpoints
from engram.messages import to_piece, to_server_message
from engram.observability import llm as observe
from engram.prices import PriceTable, quote
from engram.transcripts import BlobStore
from engram.v1 import agent_pb2
from engram.vocabulary import ErrorCode, EventKind, Notice, Query, TurnOutcome
from engram.workflows.llm_outcome import cancelled, failed, pieces_detail
from engram.workflows.tokens import CHARS_PER_TOKEN
from engram.workflows.types import (
    AnnounceInput,
    Event,
    EventsAfterInput,
    EventsPage,
    LLMRequest,
    LLMResult,
    ReplyCheckpoint,
    StreamPiece,
    SummaryRequest,
    ToolCall,
)

SUMMARY_INSTRUCTIONS = (
    "You keep the memory of a long conversation. Rewrite the summary so far to also cover the "
    "new exchanges. Keep every fact, name, number, preference and decision; drop small talk. "
    "Answer with the summary only."
)
HEARTBEAT_EVERY = 1.0
# A coalesced message grows no further than this; the next token starts a new one.
MAX_COALESCED_CHARS = 16_384
# The longest a token waits for the relay while the model's stream is read (seconds).
YIELD_TO_RELAY_EVERY = 0.002
_COALESCED = (EventKind.TEXT, EventKind.THOUGHT)
# What an endpoint raises when it fails: before the stream (openai's) or while it is read.
_ENDPOINT_ERRORS = (openai.APIConnectionError, openai.APIStatusError, httpx2.TransportError)


class LLMActivities:
    def __init__(
        self,
        endpoint: LLMEndpoint | LLMEndpoints,
        relay: RelayChannels | None = None,
        temporal: Client | None = None,
        store: BlobStore | None = None,
        prices: PriceTable | None = None,
        budgets: TenantBudgets | None = None,
    ) -> None:
        self.endpoints = endpoint if isinstance(endpoint, LLMEndpoints) else LLMEndpoints(endpoint)
        self.endpoint = self.endpoints.default
        # One per endpoint, shared by every call this worker makes.
        self.breakers = Breakers(self.endpoints.breaker_failures, self.endpoints.breaker_cooldown)
        # What each model costs: calls are priced, and budgets quoted, by it.
        self.prices = prices or PriceTable.load()
        # Each tenant's daily budget, held call by call in the store (none: spend is not kept).
        self.budgets = budgets or TenantBudgets(None)
        # Where attachments' bytes are (the prompt carries only their hashes).
        self.store = store
        self.relay = relay or RelayChannels()
        # To find a turn's new gateway after its first one died.
        self.temporal = temporal
        self._clients: dict[str, openai.AsyncOpenAI] = {}
        self.client = self._client(self.endpoint)
        # A new call's request, sent while its workflow task is committed (early_start.py).
        self.early = EarlyStarts(self._open_early)

    def _client(self, endpoint: LLMEndpoint) -> openai.AsyncOpenAI:
        # By name too: two names for one server may hold different keys.
        key = _endpoint_key(endpoint)
        client = self._clients.get(key)
        if client is None:
            client = openai.AsyncOpenAI(
                base_url=endpoint.base_url,
                # Local servers need no key, but the client insists on one.
                api_key=endpoint.api_key or "unused",
                # Temporal retries durably, with backoff; the client's own retries would hide it.
                max_retries=0,
                timeout=endpoint.timeout,
            )
            self._clients[key] = client
        return client

    @activity.defn(name="stream_chat")
    async def stream_chat(self, request: LLMRequest) -> LLMResult:
        info = activity.info()
        try:
            return await self._stream_chat_call(request, info)
        finally:
            # Unclaimed: the call was refused, or went to another model, before it was sent.
            self.early.discard(key_of(info.workflow_id, info.workflow_run_id, request))

    async def _stream_chat_call(self, request: LLMRequest, info: activity.Info) -> LLMResult:
        to_store: dict[str, bytes] = {}
        if prompt_texts.needs_store(request):
            try:
                request, to_store = await asyncio.to_thread(
                    prompt_texts.resolved, self.store, request
                )
            except prompt_texts.TextMissing as err:
                # The workflow sends the texts inline instead (workflows/prompt_refs.py).
                return failed([], ErrorCode.TEXT_MISSING, str(err))
        model = self.endpoint.serve_every_model_as or request.model
        if (refused := quote.refused(self.prices, model, request)) is not None:
            return refused  # never sent: the workflow waits for a larger budget
        tenant = request.tenant or info.priority.fairness_key or ""
        worst = quote.worst_case(self.prices, model, request)
        try:
            async with self.budgets.spending(tenant, model, worst) as spending:
                storing = asyncio.ensure_future(self._store_texts(to_store))
                try:
                    result = await self._stream_chat(request, info)
                finally:
                    stored = await storing
                spending.cost_usd = result.cost_usd
        except TenantBudgetExhausted as err:
            return tenant_budget.refused(err)  # never sent: the workflow waits
        result.stored = stored
        return result

    async def _store_texts(self, texts: dict[str, bytes]) -> list[str]:
        """Put the prompt's new long texts in the store, while the model answers."""
        if not texts or self.store is None:
            return []
        try:
            return await asyncio.to_thread(prompt_texts.store_all, self.store, texts)
        except Exception as err:  # they are sent inline again next time
            activity.logger.warning("cannot store the prompt's texts: %s", err)
            return []

    async def _stream_chat(self, request: LLMRequest, info: activity.Info) -> LLMResult:
        pieces = await reply_checkpoint.resumed(self.store, info.heartbeat_details)
        if info.attempt > 1:
            pieces = await self._streamed_so_far(request, pieces)
        relay = TurnRelay(self.relay, request.reply_to)

        def publish(piece: StreamPiece) -> None:
            if _coalesce(piece, pieces, relay.unsent_tail(), request.first_text_seq):
                return
            seq = request.first_text_seq + len(pieces)
            piece.at = time.time()
            pieces.append(piece)
            event = Event(
                seq=seq,
                kind=piece.kind,
                text=piece.text,
                code=piece.code,
                message_id=request.message_id,
                ts=piece.at,
            )
            relay.send(to_server_message(request.agent_id, event))

        for event in request.prelude:
            relay.send(to_server_message(request.agent_id, event))
        endpoint, model = self._route(request.model)
        shown = self._continuable(pieces, endpoint)
        if pieces and shown is None:
            # An earlier attempt already streamed part of a reply that cannot be resumed.
            publish(StreamPiece(kind=EventKind.RESTART, text=""))
        first_exchange = not request.tool_rounds and not any(
            m.role == "assistant" for m in request.messages
        )
        if endpoint.serve_every_model_as and model != request.model and first_exchange:
            # Told once, on the agent's first exchange, rather than on every turn.
            notice = f"model {request.model} is not available here; {model} answers instead"
            publish(StreamPiece(kind=EventKind.STATUS, text=notice, code=Notice.MODEL_SUBSTITUTED))

        heartbeats = asyncio.create_task(self._keep_alive(request, pieces, relay))
        try:
            return await self._walk_chain(request, info, pieces, publish, shown or "")
        except asyncio.CancelledError:
            details = activity.cancellation_details()
            if details is None or not details.cancel_requested:
                raise  # worker shutdown or timeout: let Temporal retry elsewhere
            return cancelled(pieces)
        finally:
            heartbeats.cancel()
            await relay.close()

    def _route(self, name: str) -> tuple[LLMEndpoint, str]:
        endpoint, model = self.endpoints.route(name)
        return endpoint, endpoint.serve_every_model_as or model

    async def _walk_chain(
        self,
        request: LLMRequest,
        info: activity.Info,
        pieces: list[StreamPiece],
        publish: Any,
        shown: str,
    ) -> LLMResult:
        """The reply from the agent's model or, when it fails, from the next of its fallbacks,
        going on from what the failed one streamed. The last model's failure is the call's."""
        chain = [request.model, *request.fallback_models]
        threshold = self.endpoints.quota_wait_after
        quota: float | None = None
        why = ""
        for index, name in enumerate(chain):
            endpoint, model = self._route(name)
            breaker = self.breakers.of(_endpoint_key(endpoint))
            last = index == len(chain) - 1
            # The last model is called even while failing: there is nothing else to try.
            if not breaker.allow() and not last:
                why = why or f"{name} is failing"
                continue
            if why:
                text = f"{why}; {name} answers instead"
                publish(StreamPiece(kind=EventKind.STATUS, text=text, code=Notice.MODEL_FAILOVER))
                shown = self._continuable(pieces, endpoint) or ""
                if not shown and _streamed_since_restart(pieces):
                    publish(StreamPiece(kind=EventKind.RESTART, text=""))
            observe.call(request.agent_id, request.message_id, model)
            try:
                result = await self._answer(request, endpoint, model, pieces, publish, shown)
            except _ENDPOINT_ERRORS as err:
                failure = classify(err, endpoint.base_url, info.attempt)
                observe.error(failure.code)
                if not failure.endpoint_fault:
                    # The request itself is at fault (a 4xx): another model would not mend it.
                    activity.logger.warning("turn failed: %s", failure.message)
                    return failed(pieces, failure.code, failure.message)
                breaker.failed()
                if failure.quota_wait is not None and failure.quota_wait > threshold:
                    quota = min(quota or failure.quota_wait, failure.quota_wait)
                if last or not failure.fails_over(threshold):
                    return self._chain_failed(request, pieces, failure, quota, err)
                activity.logger.warning("%s failed over: %s", name, failure.message)
                why = f"{name} failed ({failure.message})"
                continue
            except BaseException:
                breaker.released()
                raise
            breaker.succeeded()
            quote.priced(result, self.prices, model, observe.reported())
            observe.cost(request.tenant or info.priority.fairness_key or "", model, result.cost_usd)
            return result
        raise AssertionError("the chain's last model is always called")

    def _chain_failed(
        self,
        request: LLMRequest,
        pieces: list[StreamPiece],
        failure: LLMFailure,
        quota: float | None,
        err: BaseException,
    ) -> LLMResult:
        """No model of the chain answered: wait out a quota on the workflow's timer, have Temporal
        try again, or end the turn."""
        if quota is not None and request.wait_for_quota:
            activity.logger.warning("out of quota for %.0f s: %s", quota, failure.message)
            result = failed(pieces, failure.code, failure.message)
            result.quota_wait = quota
            return result
        if failure.retryable:
            raise failure.retry_error(pieces) from err
        activity.logger.warning("turn failed: %s", failure.message)
        return failed(pieces, failure.code, failure.message)

    async def _answer(
        self,
        request: LLMRequest,
        endpoint: LLMEndpoint,
        model: str,
        pieces: list[StreamPiece],
        publish: Any,
        shown: str,
    ) -> LLMResult:
        refused = False
        try:
            tokens, calls = await self._generate(
                request, endpoint, model, publish, request.tools, shown
            )
        except openai.BadRequestError as err:
            # Some models (many on Ollama) refuse any request that offers tools; the refusal
            # comes before the stream starts.
            if not request.tools or "tool" not in str(err.message).lower():
                raise
            activity.logger.warning("model %s refuses tools: %s", model, err.message)
            refused = True
            tokens, calls = await self._generate(request, endpoint, model, publish, [], shown)
        return LLMResult(
            outcome=TurnOutcome.COMPLETED,
            pieces=pieces,
            tokens=tokens or _count_text(pieces),
            tool_calls=calls,
            tools_refused=refused,
        )

    @activity.defn(name="load_reply")
    async def load_reply(self, checkpoint: ReplyCheckpoint) -> list[StreamPiece]:
        """What a call that failed for good had streamed, for the turn's record."""
        return await reply_checkpoint.resumed(self.store, [vars(checkpoint)])

    @activity.defn(name="announce")
    async def announce(self, request: AnnounceInput) -> None:
        """Relay events the workflow recorded (a tool call that waits for the client, say)."""
        relay = TurnRelay(self.relay, request.reply_to)
        for event in request.events:
            relay.send(to_server_message(request.agent_id, event))
        await relay.close()

    @activity.defn(name="summarize")
    async def summarize(self, request: SummaryRequest) -> str:
        """Fold older turns into the running summary: what the model keeps of them."""
        transcript = "\n".join(f"{m.role}: {m.content}" for m in request.messages)
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": SUMMARY_INSTRUCTIONS},
            {
                "role": "user",
                "content": f"Summary so far:\n{request.previous or '(none)'}\n\n"
                f"New exchanges:\n{transcript}",
            },
        ]
        endpoint, model = self._route(request.model)
        request_task = asyncio.ensure_future(
            self._client(endpoint).chat.completions.create(model=model, messages=messages)
        )
        try:
            # Heartbeat while waiting, so a crashed worker's summary is retried within seconds.
            while not request_task.done():
                activity.heartbeat()
                await asyncio.wait({request_task}, timeout=HEARTBEAT_EVERY)
            completion = request_task.result()
            if completion.usage is not None:
                observe.usage(completion.usage.model_dump())
        except openai.APIError as err:
            raise ApplicationError(f"summary failed at {endpoint.base_url}: {err}") from err
        finally:
            request_task.cancel()
        return (completion.choices[0].message.content or "").strip() if completion.choices else ""

    async def _keep_alive(
        self, request: LLMRequest, pieces: list[StreamPiece], relay: TurnRelay
    ) -> None:
        checkpoints = reply_checkpoint.ReplyCheckpoints(self.store) if self.store else None
        while True:
            # Heartbeats carry cancellation back to the activity: a model that is slow to start
            # must not make a cancel wait for its first token.
            activity.heartbeat(await _progress(checkpoints, pieces))
            if relay.broken and self.temporal is not None:
                # The gateway died; a client that reconnected elsewhere named its new gateway.
                address = await self._current_reply_to(request)
                if address and address != relay.address:
                    await relay.redirect(address)
            await asyncio.sleep(HEARTBEAT_EVERY)

    async def _current_reply_to(self, request: LLMRequest) -> str:
        assert self.temporal is not None
        try:
            page: EventsPage = await self.temporal.get_workflow_handle(
                WORKFLOW_ID_PREFIX + request.agent_id
            ).query(
                Query.EVENTS_AFTER,
                EventsAfterInput(seq=request.first_text_seq),
                result_type=EventsPage,
            )
        except Exception as err:  # a failed lookup only delays the redirect
            activity.logger.warning("cannot read the turn's gateway: %s", err)
            return ""
        if page.in_flight is None or page.in_flight.message_id != request.message_id:
            return ""
        return page.in_flight.reply_to

    async def _streamed_so_far(
        self, request: LLMRequest, heartbeated: list[StreamPiece]
    ) -> list[StreamPiece]:
        """What earlier attempts streamed: the gateway may have received more than was
        heartbeated before a crash, and none of it may be numbered again."""
        messages = await received(
            self.relay, request.reply_to, request.agent_id, request.message_id
        )
        relayed: list[StreamPiece] = []
        for msg in messages:
            if msg.sequence_id != request.first_text_seq + len(relayed):
                continue
            piece = to_piece(msg)
            if piece is not None:
                relayed.append(piece)
        # What the gateway holds is exactly what was sent; a heartbeat may have caught the last
        # piece before more tokens were coalesced into it.
        return relayed if relayed and len(relayed) >= len(heartbeated) else heartbeated

    async def _chat_messages(self, request: LLMRequest) -> list[ChatCompletionMessageParam]:
        """The prompt (attachments read from the store), then this turn's rounds of tool use."""
        store = self.store

        def blob(sha256: str) -> bytes | None:
            return store.get_blob(sha256) if store is not None else None

        if any(m.attachments for m in request.messages):
            try:
                room = request.context_tokens * CHARS_PER_TOKEN // 2
                prompt = await asyncio.to_thread(
                    lambda: [attachments.render(m, blob, room) for m in request.messages]
                )
            except attachments.MissingAttachment as err:
                raise ApplicationError(str(err), type="LLM_ERROR", non_retryable=True) from err
        else:
            prompt = [{"role": m.role, "content": m.content} for m in request.messages]
        return cast(list[ChatCompletionMessageParam], prompt + _tool_rounds(request))

    def _continuable(self, pieces: list[StreamPiece], endpoint: LLMEndpoint) -> str | None:
        """The reply shown so far, if `endpoint` can go on from it; None to regenerate."""
        if not pieces or endpoint.continuation == "off":
            return None
        restart = max((i for i, p in enumerate(pieces) if p.kind == EventKind.RESTART), default=-1)
        return "".join(p.text for p in pieces[restart + 1 :] if p.kind == EventKind.TEXT)

    async def _open_early(self, request: LLMRequest) -> Opened | None:
        """Send the request the activity's first attempt will send for `request` (as
        stream_chat, _walk_chain and _generate build it), unless it would not be sent."""
        if prompt_texts.needs_store(request):
            request, _ = await asyncio.to_thread(prompt_texts.resolved, self.store, request)
        priced_as = self.endpoint.serve_every_model_as or request.model
        if quote.refused(self.prices, priced_as, request) is not None:
            return None
        endpoint, model = self._route(request.model)
        if self.breakers.of(_endpoint_key(endpoint)).open:
            return None
        worst = quote.worst_case(self.prices, priced_as, request)
        if not await self.budgets.allows(request.tenant, priced_as, worst):
            return None
        body = await self._body(request, endpoint, model, request.tools, "")
        opened = Opened(_endpoint_key(endpoint), body)
        try:
            opened.response = await self._send(endpoint, body)
        except _ENDPOINT_ERRORS as err:
            opened.error = err
        return opened

    async def _body(
        self,
        request: LLMRequest,
        endpoint: LLMEndpoint,
        model: str,
        tools: list[dict[str, Any]],
        shown: str,
    ) -> dict[str, Any]:
        messages = await self._chat_messages(request)
        extra: dict[str, Any] = {}
        if shown:
            messages.append({"role": "assistant", "content": shown})
            if endpoint.continuation == "vllm":
                extra = {"continue_final_message": True, "add_generation_prompt": False}
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            **extra,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if tools:
            body["tools"] = tools
        return body

    async def _send(self, endpoint: LLMEndpoint, body: dict[str, Any]) -> Any:
        # The prompt is already in wire form (plain dicts of strings): `chat.completions.create`
        # would walk every message of it again to validate it, about 0.1 ms a message, before
        # sending a byte, and build a pydantic model of every chunk (about 70 us each, most of
        # the engine's CPU on a long reply). The same client's `post` sends the request as it is
        # and streams each chunk as the JSON it came as, with the same auth, errors and SSE
        # handling.
        return await self._client(endpoint).post(
            "/chat/completions",
            body=body,
            options={"security": {"bearer_auth": True}},
            cast_to=object,
            stream=True,
            stream_cls=openai.AsyncStream[object],
        )

    async def _generate(
        self,
        request: LLMRequest,
        endpoint: LLMEndpoint,
        model: str,
        publish: Any,
        tools: list[dict[str, Any]],
        shown: str = "",
    ) -> tuple[int, list[ToolCall]]:
        """Stream the reply's text to `publish` (going on from `shown`, the part of it a cut-off
        attempt streamed); the tokens used and the tools the model called."""
        body = await self._body(request, endpoint, model, tools, shown)
        response = None
        info = activity.info()
        if info.attempt == 1 and not shown:
            key = key_of(info.workflow_id, info.workflow_run_id, request)
            response = await self.early.claim(key, _endpoint_key(endpoint), body)
        stream = response if response is not None else await self._send(endpoint, body)
        tokens = 0
        yielded = 0.0
        # Tool calls arrive in fragments, by index: the name first, the arguments in pieces.
        calls: dict[int, ToolCall] = {}
        async with contextlib.aclosing(stream):
            async for chunk in stream:
                if not isinstance(chunk, dict):
                    continue
                usage = chunk.get("usage")
                if usage:
                    tokens = usage.get("total_tokens") or 0
                    observe.usage(usage)
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta")
                    if not delta:
                        continue
                    if content := delta.get("content"):
                        publish(StreamPiece(kind=EventKind.TEXT, text=content))
                    # vLLM, DeepSeek and llama.cpp say reasoning_content; Ollama and others say
                    # reasoning. Neither is in OpenAI's schema.
                    thought = delta.get("reasoning_content") or delta.get("reasoning")
                    if thought and isinstance(thought, str) and request.thinking:
                        publish(StreamPiece(kind=EventKind.THOUGHT, text=thought))
                    for fragment in delta.get("tool_calls") or ():
                        index = fragment.get("index", 0)
                        call = calls.setdefault(
                            index, ToolCall(call_id=f"call_{index}", name="", arguments="")
                        )
                        call.call_id = fragment.get("id") or call.call_id
                        function = fragment.get("function") or {}
                        call.name = call.name or function.get("name") or ""
                        call.arguments += function.get("arguments") or ""
                # A fast model's chunks arrive already buffered, and reading them need not yield
                # to the relay: let it send now and then (the first token at once). What came
                # meanwhile goes out coalesced, in one message.
                now = time.monotonic()
                if now - yielded >= YIELD_TO_RELAY_EVERY:
                    yielded = now
                    await asyncio.sleep(0)
        return tokens, [calls[i] for i in sorted(calls)]


async def _progress(
    checkpoints: reply_checkpoint.ReplyCheckpoints | None, pieces: list[StreamPiece]
) -> object:
    """A heartbeat's detail: a checkpoint in the store, or the pieces themselves without one."""
    if checkpoints is not None:
        try:
            return await checkpoints.save(pieces)
        except Exception as err:  # a store that failed once must not stop the reply
            activity.logger.warning("cannot store the reply so far: %s", err)
    return pieces_detail(pieces)


def _coalesce(
    piece: StreamPiece,
    pieces: list[StreamPiece],
    unsent: agent_pb2.ServerMessage | None,
    first_seq: int,
) -> bool:
    """Add `piece` to the last one published if that one is of the same kind and has not left for
    the gateway yet (it is busy: the model is faster than the path to the client). The reply goes
    out in fewer, larger messages, with no token held back while the path is free, and the
    sequence ids stay contiguous because the record is of the messages as sent."""
    if (
        unsent is None
        or not pieces
        or piece.kind not in _COALESCED
        or pieces[-1].kind != piece.kind
        or unsent.sequence_id != first_seq + len(pieces) - 1
        or len(pieces[-1].text) >= MAX_COALESCED_CHARS
    ):
        return False
    pieces[-1].text += piece.text
    if piece.kind == EventKind.TEXT:
        unsent.text.content = pieces[-1].text
    else:
        unsent.thought.content = pieces[-1].text
    return True


def _tool_rounds(request: LLMRequest) -> list[dict[str, Any]]:
    """This turn's rounds of tool use, in OpenAI's wire form, each followed by what the user
    added after its results (a round without calls carries only that)."""
    messages: list[dict[str, Any]] = []
    for round_ in request.tool_rounds:
        if round_.calls:
            messages.append(
                {
                    "role": "assistant",
                    # "" rather than null: some servers (llama.cpp's) insist on a string.
                    "content": round_.text,
                    "tool_calls": [
                        {
                            "id": c.call_id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        }
                        for c in round_.calls
                    ],
                }
            )
        messages += [
            {"role": "tool", "tool_call_id": c.call_id, "content": result}
            for c, result in zip(round_.calls, round_.results, strict=True)
        ]
        messages += [{"role": "user", "content": text} for text in round_.then]
    return messages


def _streamed_since_restart(pieces: list[StreamPiece]) -> bool:
    """Whether text or thought of a reply not yet voided by a RESTART was streamed."""
    for piece in reversed(pieces):
        if piece.kind == EventKind.RESTART:
            return False
        if piece.kind in _COALESCED:
            return True
    return False


def _endpoint_key(endpoint: LLMEndpoint) -> str:
    return f"{endpoint.name}={endpoint.base_url}"


def _count_text(pieces: list[StreamPiece]) -> int:
    return sum(1 for p in pieces if p.kind == EventKind.TEXT)
