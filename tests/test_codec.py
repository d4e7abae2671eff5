"""Encryption at rest: the payload codec, its codec server and the encrypted transcript store.

Everything is real: AES-GCM from `cryptography`, a SQLite file on disk, the codec server on a
loopback port spoken to over HTTP, recorded agent histories replayed by Temporal's Replayer, and
an agent run on the real dev server whose stored history is read back without the keys.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from engram.codec import (
    EncryptedTranscriptStore,
    EncryptionKeyError,
    Keyring,
    KeyringError,
    data_converter,
    encrypted_data_converter,
    keyring_from_env,
    new_key_entry,
)
from engram.codec.claim_check import with_claim_check
from engram.codec.payload_codec import ENCODING, KEY_ID_METADATA, PayloadCipher
from engram.codec.server import CodecServer, CodecServerSettings
from engram.transcripts import open_transcript_store
from engram.transcripts.sqlite_store import SqliteTranscriptStore
from engram.vocabulary import EventKind, TurnOutcome
from engram.worker import workflow_runner
from engram.workflows.agent_workflow import AgentWorkflow
from engram.workflows.types import ChatMessage, Event, LLMRequest, Turn
from engram.workflows.wake_up import WakeUpWorkflow
from tests.workflow_harness import FakeActivities, Harness, local_environment

ROOT = Path(__file__).parent.parent
HISTORIES = {p.stem: p.read_text() for p in sorted((ROOT / "tests" / "histories").glob("*.json"))}
SECRET = "the vault code is 7431-ORCHID"
# Protobuf message types the SDK never passes through a codec (by default): left as they are.
NOT_CODEC_ENCODED = {"temporal.api.common.v1.Header", "temporal.api.common.v1.SearchAttributes"}


def ring(*ids: str) -> Keyring:
    return Keyring.parse(",".join(new_key_entry(i) for i in ids))


def with_key(keyring: Keyring, key_id: str) -> Keyring:
    """A ring holding only `key_id` of `keyring`."""
    return Keyring(tuple(k for k in keyring.keys if k[0] == key_id))


# --- the keyring ---------------------------------------------------------------------------


def test_keyring_parses_entries_newest_last(tmp_path: Path) -> None:
    a, b = new_key_entry("a"), new_key_entry("b")
    assert Keyring.parse(f"{a}, {b}").ids == ["a", "b"]
    assert Keyring.parse(f"{a}, {b}").newest[0] == "b"
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# rotated 2025-01\n{a}\n{b}  # current\n")
    keys_file.chmod(0o600)
    loaded = keyring_from_env({"ENGRAM_ENCRYPTION_KEYS_FILE": str(keys_file)})
    assert loaded is not None and loaded.ids == ["a", "b"]
    assert keyring_from_env({}) is None
    # Key material never reaches a log line through repr.
    assert a.split(":")[1] not in repr(loaded)


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"ENGRAM_ENCRYPTION_KEYS": ""}, "empty"),
        ({"ENGRAM_ENCRYPTION_KEYS": " , "}, "holds no keys"),
        ({"ENGRAM_ENCRYPTION_KEYS": "k1:" + base64.b64encode(b"short").decode()}, "32"),
        ({"ENGRAM_ENCRYPTION_KEYS": "k1:not base64!"}, "base64"),
        ({"ENGRAM_ENCRYPTION_KEYS": "no-colon"}, "id:base64key"),
        ({"ENGRAM_ENCRYPTION_KEYS": f"{new_key_entry('x')},{new_key_entry('x')}"}, "twice"),
        ({"ENGRAM_ENCRYPTION_KEYS_FILE": "/nonexistent/keys"}, "cannot read"),
        (
            {"ENGRAM_ENCRYPTION_KEYS": new_key_entry("a"), "ENGRAM_ENCRYPTION_KEYS_FILE": "f"},
            "both",
        ),
    ],
)
def test_a_wrong_keyring_refuses_instead_of_turning_encryption_off(
    env: dict[str, str], complaint: str
) -> None:
    with pytest.raises(KeyringError, match=complaint):
        keyring_from_env(env)


# --- the payload codec ---------------------------------------------------------------------


def payloads_of(message: Message) -> Iterator[Payload]:
    """Every payload in a protobuf message that the SDK passes through the codec."""
    if isinstance(message, Payload):
        yield message
        return
    if message.DESCRIPTOR.full_name in NOT_CODEC_ENCODED:
        return
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        if descriptor.message_type.GetOptions().map_entry:
            values = [v for v in value.values() if isinstance(v, Message)]
        elif descriptor.is_repeated:
            values = list(value)
        else:
            values = [value]
        for item in values:
            yield from payloads_of(item)


def codec_payloads(event: HistoryEvent) -> Iterator[Payload]:
    """The payloads of a history event that went through the codec when it was written.

    A marker's details are the core SDK's own (a patch's id, a local activity's bookkeeping in
    `data`), except a local activity's `result`.
    """
    if not event.HasField("marker_recorded_event_attributes"):
        yield from payloads_of(event)
    elif "result" in event.marker_recorded_event_attributes.details:
        yield from event.marker_recorded_event_attributes.details["result"].payloads


def history_payloads(name: str) -> list[Payload]:
    history = WorkflowHistory.from_json(name, HISTORIES[name])
    return [p for event in history.events for p in codec_payloads(event)]


async def test_values_round_trip_and_are_unreadable_in_between() -> None:
    converter = encrypted_data_converter(ring("k1"))
    event = Event(seq=7, kind=EventKind.FINAL_ANSWER, text=SECRET, message_id="m1", ts=1.5)
    values: list[object] = [event, SECRET, {"nested": [SECRET, 1, None]}, b"\x00raw", None, ""]
    encoded = await converter.encode(values)
    for payload in encoded:
        assert payload.metadata["encoding"] == ENCODING
        assert payload.metadata[KEY_ID_METADATA] == b"k1"
        assert SECRET.encode() not in payload.SerializeToString()
    decoded = await converter.decode(encoded, [Event, str, dict, bytes, type(None), str])
    assert decoded == values
    # Fresh nonces: the same value never encrypts to the same bytes twice.
    again = await converter.encode(values)
    assert [p.data for p in again] != [p.data for p in encoded]


async def test_failures_are_encrypted_too() -> None:
    converter = encrypted_data_converter(ring("k1"))
    from temporalio.api.failure.v1 import Failure
    from temporalio.exceptions import ApplicationError

    failure = Failure()
    await converter.encode_failure(ApplicationError(f"tool said: {SECRET}"), failure)
    assert SECRET.encode() not in failure.SerializeToString()
    restored = await converter.decode_failure(failure)
    assert str(restored) == f"tool said: {SECRET}"


async def test_rotation_new_payloads_use_the_newest_key_old_ones_still_open() -> None:
    keys = ring("2024", "2025")
    old = await encrypted_data_converter(with_key(keys, "2024")).encode([SECRET])
    rotated = encrypted_data_converter(keys)
    new = await rotated.encode([SECRET])
    assert old[0].metadata[KEY_ID_METADATA] == b"2024"
    assert new[0].metadata[KEY_ID_METADATA] == b"2025"
    assert await rotated.decode([old[0], new[0]], [str, str]) == [SECRET, SECRET]


async def test_a_missing_key_fails_loudly_naming_it() -> None:
    keys = ring("2024", "2025")
    sealed = await encrypted_data_converter(with_key(keys, "2024")).encode([SECRET])
    with pytest.raises(EncryptionKeyError, match=r"'2024'.*not in the keyring") as raised:
        await encrypted_data_converter(with_key(keys, "2025")).decode(sealed, [str])
    assert raised.value.key_id == "2024"


async def test_a_wrong_key_under_the_right_id_fails_loudly_naming_it() -> None:
    sealed = await encrypted_data_converter(ring("k1")).encode([SECRET])
    impostor = encrypted_data_converter(ring("k1"))  # same id, other key material
    with pytest.raises(EncryptionKeyError, match=r"'k1'.*does not open"):
        await impostor.decode(sealed, [str])


async def test_relabelled_or_altered_payloads_fail() -> None:
    keys = ring("a", "b")
    cipher = PayloadCipher(keys)
    sealed = cipher.encode(Payload(metadata={"encoding": b"json/plain"}, data=b'"x"'))
    relabelled = Payload()
    relabelled.CopyFrom(sealed)
    relabelled.metadata[KEY_ID_METADATA] = b"a"
    with pytest.raises(EncryptionKeyError, match="'a'"):
        cipher.decode(relabelled)
    flipped = Payload()
    flipped.CopyFrom(sealed)
    flipped.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(EncryptionKeyError):
        cipher.decode(flipped)


async def test_payloads_written_before_encryption_still_read() -> None:
    plain = await DataConverter.default.encode([SECRET, {"a": 1}])
    assert await encrypted_data_converter(ring("k1")).decode(plain, [str, dict]) == [
        SECRET,
        {"a": 1},
    ]


def readme_prompt() -> LLMRequest:
    """An LLM activity input as a long-lived agent sends it: a long system prompt and many
    turns of prose (the README's paragraphs, standing in for real conversation)."""
    paragraphs = [p for p in (ROOT / "README.md").read_text().split("\n\n") if len(p) > 200]
    messages = [ChatMessage(role="system", content="\n\n".join(paragraphs[:6]))]
    for i, paragraph in enumerate(paragraphs[6:46]):
        messages.append(ChatMessage(role="user" if i % 2 == 0 else "assistant", content=paragraph))
    return LLMRequest(
        agent_id=str(uuid.uuid4()),
        message_id=str(uuid.uuid4()),
        model="gpt-4o-mini",
        messages=messages,
        prelude=[],
        first_text_seq=1,
    )


def test_compression_more_than_pays_for_encryption() -> None:
    cipher = PayloadCipher(ring("k1"))
    recorded = [p for name in HISTORIES for p in history_payloads(name)]
    plain = sum(p.ByteSize() for p in recorded)
    sealed = sum(cipher.encode(p).ByteSize() for p in recorded)
    prompt = DataConverter.default.payload_converter.to_payloads([readme_prompt()])[0]
    prompt_sealed = cipher.encode(prompt).ByteSize()
    print(
        f"\nrecorded histories: {len(recorded)} payloads, {plain} -> {sealed} bytes "
        f"({sealed / plain:.0%}); README-prose prompt {prompt.ByteSize()} -> {prompt_sealed} "
        f"bytes ({prompt_sealed / prompt.ByteSize():.0%})"
    )
    # Measured: 26% for the recorded histories (13% before prompts named long texts by hash and
    # stopped repeating them), 36% for prose.
    assert sealed < 0.35 * plain
    assert prompt_sealed < 0.6 * prompt.ByteSize()
    # A payload too small to compress costs only its nonce, tag and metadata: under 100 bytes.
    tiny = Payload(metadata={"encoding": b"json/plain"}, data=b"1")
    assert cipher.encode(tiny).ByteSize() - tiny.ByteSize() < 100


# --- the encrypted transcript store ---------------------------------------------------------


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "transcripts.db"


def database_bytes(path: Path) -> bytes:
    """The database and its write-ahead log, as an attacker copying the files would get them."""
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_store_keeps_text_encrypted_at_rest_and_queryable(sqlite_path: Path) -> None:
    keys = ring("k1")
    store = EncryptedTranscriptStore(SqliteTranscriptStore(sqlite_path), keys)
    agent = str(uuid.uuid4())
    events = [
        Event(seq=1, kind=EventKind.USER_MESSAGE, text=f"user: {SECRET}", message_id="m1", ts=1.0),
        Event(seq=2, kind=EventKind.STATUS, code="thinking", message_id="m1", ts=1.1),
        Event(
            seq=3,
            kind=EventKind.FINAL_ANSWER,
            text=f"model: {SECRET}",
            message_id="m1",
            ts=1.2,
            structured={"answer": SECRET},
        ),
    ]
    turns = [
        Turn(
            "m1",
            f"user: {SECRET}",
            outcome=TurnOutcome.COMPLETED,
            reply=f"model: {SECRET}",
            first_seq=1,
            last_seq=3,
        ),
        Turn("m2", f"again {SECRET}", outcome=TurnOutcome.FAILED, error=f"failed: {SECRET}"),
    ]
    attachment = f"attached file: {SECRET}".encode()
    digest = hashlib.sha256(attachment).hexdigest()
    store.append(agent, events)
    store.append_turns(agent, 0, turns)
    store.put_blob(digest, attachment)

    assert store.between(agent, 0, 3) == events
    assert store.between(agent, 1, 2) == events[1:2]  # seq stays queryable
    assert store.turns(agent, 2) == turns
    assert store.turns(agent, 1) == turns[:1]  # turn index too
    assert store.get_blob(digest) == attachment
    store.close()

    on_disk = database_bytes(sqlite_path)
    assert SECRET.encode() not in on_disk
    assert agent.encode() in on_disk  # ids are not secret, and must stay queryable
    # Another process with the same keys reads it; one without them fails, naming the key.
    reopened = EncryptedTranscriptStore(SqliteTranscriptStore(sqlite_path), keys)
    assert reopened.turns(agent, 2) == turns
    reopened.close()
    stranger = EncryptedTranscriptStore(SqliteTranscriptStore(sqlite_path), ring("k2"))
    with pytest.raises(EncryptionKeyError, match="'k1'"):
        stranger.between(agent, 0, 3)
    with pytest.raises(EncryptionKeyError, match="'k1'"):
        stranger.get_blob(digest)
    stranger.close()


def test_store_reads_what_was_stored_before_encryption(sqlite_path: Path) -> None:
    agent = str(uuid.uuid4())
    old_event = Event(seq=1, kind=EventKind.USER_MESSAGE, text="plain old text", message_id="m")
    old_turn = Turn("m", "plain old question", reply="plain old answer")
    plain_blob = b"plain old attachment"
    plain = SqliteTranscriptStore(sqlite_path)
    plain.append(agent, [old_event])
    plain.append_turns(agent, 0, [old_turn])
    plain.put_blob(hashlib.sha256(plain_blob).hexdigest(), plain_blob)
    plain.close()

    store = EncryptedTranscriptStore(SqliteTranscriptStore(sqlite_path), ring("k1"))
    new_event = dataclasses.replace(old_event, seq=2, text=SECRET)
    store.append(agent, [new_event])
    assert store.between(agent, 0, 2) == [old_event, new_event]
    assert store.turns(agent, 1) == [old_turn]
    assert store.get_blob(hashlib.sha256(plain_blob).hexdigest()) == plain_blob
    store.close()


def test_sealed_text_cannot_be_moved_to_another_row(sqlite_path: Path) -> None:
    keys = ring("k1")
    inner = SqliteTranscriptStore(sqlite_path)
    store = EncryptedTranscriptStore(inner, keys)
    agent = str(uuid.uuid4())
    store.append(agent, [Event(seq=1, kind=EventKind.TEXT, text=SECRET)])
    sealed = inner.between(agent, 0, 1)[0]
    inner.append(agent, [dataclasses.replace(sealed, seq=2)])  # copied into another row
    with pytest.raises(EncryptionKeyError):
        store.between(agent, 1, 2)
    store.close()


# --- the codec server ------------------------------------------------------------------------

TOKEN = "codec-token-for-tests"
UI_ORIGIN = "http://localhost:8233"


@pytest.fixture
def codec_server() -> Iterator[tuple[CodecServer, Keyring]]:
    keys = ring("k1")
    server = CodecServer(
        keys, CodecServerSettings(TOKEN, frozenset({UI_ORIGIN})), "127.0.0.1", 0
    ).start()
    yield server, keys
    server.close()


def call(
    server: CodecServer,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        data=body if method == "POST" else None,
        headers={"Content-Type": "application/json", **(headers or {})},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def as_json(payloads: list[Payload]) -> bytes:
    return json_format.MessageToJson(Payloads(payloads=payloads)).encode()


def from_json(body: bytes) -> list[Payload]:
    return list(json_format.Parse(body, Payloads()).payloads)


def test_codec_server_decodes_and_encodes_for_the_bearer_of_the_token(
    codec_server: tuple[CodecServer, Keyring],
) -> None:
    server, keys = codec_server
    plain = DataConverter.default.payload_converter.to_payloads([SECRET, {"n": 1}])
    sealed = [PayloadCipher(keys).encode(p) for p in plain]
    auth = {"Authorization": f"Bearer {TOKEN}", "X-Namespace": "default", "Origin": UI_ORIGIN}

    status, headers, body = call(server, "/decode", as_json(sealed), auth)
    assert status == 200, body
    assert from_json(body) == plain
    assert headers["Access-Control-Allow-Origin"] == UI_ORIGIN
    # The protocol's wire form: base64 data and metadata in protobuf JSON.
    assert (
        json.loads(body)["payloads"][0]["metadata"]["encoding"]
        == base64.b64encode(b"json/plain").decode()
    )

    # Mounted under any prefix, the last segment decides; /encode yields what /decode opens.
    status, _, body = call(server, "/any/prefix/encode", as_json(plain), auth)
    assert status == 200
    encoded = from_json(body)
    assert all(p.metadata["encoding"] == ENCODING for p in encoded)
    assert [PayloadCipher(keys).decode(p) for p in encoded] == plain

    # The dev Web UI's form: the token as the first path segment.
    status, _, body = call(server, f"/{TOKEN}/decode", as_json(sealed))
    assert status == 200 and from_json(body) == plain

    # An empty batch is still a Payloads message, with its (empty) list.
    status, _, body = call(server, "/decode", b'{"payloads": []}', auth)
    assert status == 200 and json.loads(body) == {"payloads": []}

    # Plaintext payloads (written before encryption) come back as they are.
    status, _, body = call(server, "/decode", as_json(plain), auth)
    assert status == 200 and from_json(body) == plain


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/decode", {}),
        ("/decode", {"Authorization": "Bearer wrong-token"}),
        ("/decode", {"Authorization": f"Basic {TOKEN}"}),
        ("/wrong-token/decode", {}),
        (f"/{TOKEN}", {}),  # the token alone is not an operation, nor a credential
    ],
)
def test_codec_server_refuses_without_the_token(
    codec_server: tuple[CodecServer, Keyring], path: str, headers: dict[str, str]
) -> None:
    server, keys = codec_server
    sealed = [PayloadCipher(keys).encode(Payload(data=SECRET.encode()))]
    status, response_headers, body = call(server, path, as_json(sealed), headers)
    assert status == 401
    assert response_headers["WWW-Authenticate"] == "Bearer"
    assert SECRET.encode() not in body


def test_codec_server_names_a_key_it_lacks(codec_server: tuple[CodecServer, Keyring]) -> None:
    server, _ = codec_server
    foreign = PayloadCipher(ring("2019")).encode(Payload(data=b"x"))
    status, _, body = call(
        server, "/decode", as_json([foreign]), {"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 400
    assert json.loads(body)["keyId"] == "2019"


def test_codec_server_answers_the_web_ui_preflight_only_for_its_origin(
    codec_server: tuple[CodecServer, Keyring],
) -> None:
    server, _ = codec_server
    preflight = {
        "Origin": UI_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }
    status, headers, _ = call(server, "/decode", headers=preflight, method="OPTIONS")
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == UI_ORIGIN
    assert "POST" in headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "x-namespace"} <= allowed

    status, headers, _ = call(
        server, "/decode", headers={**preflight, "Origin": "https://evil.example"}, method="OPTIONS"
    )
    assert status == 403
    assert "Access-Control-Allow-Origin" not in headers


# --- histories: recorded ones still replay; a live agent's history is unreadable -----------


@pytest.mark.parametrize("name", HISTORIES)
async def test_recorded_plaintext_histories_replay_with_the_codec(name: str) -> None:
    history = WorkflowHistory.from_json(name, HISTORIES[name])
    replayer = Replayer(
        workflows=[AgentWorkflow, WakeUpWorkflow],
        workflow_runner=workflow_runner(),
        data_converter=encrypted_data_converter(ring("k1")),
    )
    result = await replayer.replay_workflow(history)
    assert result.replay_failure is None


async def test_an_encrypted_history_replays_only_with_its_keys() -> None:
    name = max(HISTORIES)  # the newest recording
    history = WorkflowHistory.from_json(name, HISTORIES[name])
    keys = ring("k1")
    cipher = PayloadCipher(keys)
    events = list(history.events)
    for event in events:
        for payload in codec_payloads(event):
            payload.CopyFrom(cipher.encode(payload))
    encrypted = WorkflowHistory(history.workflow_id, events)

    def replayer(converter: DataConverter) -> Replayer:
        return Replayer(
            workflows=[AgentWorkflow, WakeUpWorkflow],
            workflow_runner=workflow_runner(),
            data_converter=converter,
        )

    ok = await replayer(encrypted_data_converter(keys)).replay_workflow(encrypted)
    assert ok.replay_failure is None
    # Proof the payloads really were encrypted: without the codec, replay cannot read them.
    with pytest.raises(Exception, match=r"binary/encrypted|Unknown payload encoding"):
        await replayer(DataConverter.default).replay_workflow(encrypted)


@pytest.fixture(scope="module")
async def workflow_env() -> AsyncIterator[WorkflowEnvironment]:
    async with local_environment() as env:
        yield env


async def test_a_live_agent_history_holds_no_plaintext(workflow_env: WorkflowEnvironment) -> None:
    keys = ring("k1")
    plain_client = workflow_env.client
    client = Client(
        plain_client.service_client,
        namespace=plain_client.namespace,
        data_converter=encrypted_data_converter(keys),
    )
    harness = Harness(client, FakeActivities(), f"engram-codec-{uuid.uuid4()}")
    async with harness.worker():
        try:
            agent = await harness.create_agent(goal=f"Guard {SECRET}.", system_prompt=SECRET)
            result = await agent.ask(f"Please remember: {SECRET}")
            # The fake LLM echoes the message: readable through the codec.
            assert result.events[-1].kind == EventKind.FINAL_ANSWER
            assert SECRET in result.events[-1].text
            assert harness.fake.requests[0].messages[-1].content.endswith(SECRET)
            assert await agent.search_status() is not None  # search attributes stay plaintext

            raw = b"".join(
                [
                    event.SerializeToString()
                    async for event in plain_client.get_workflow_handle(
                        agent.workflow_id
                    ).fetch_history_events()
                ]
            )
            assert SECRET.encode() not in raw
            assert ENCODING in raw

            history = await agent.handle.fetch_history()
            replayed = await Replayer(
                workflows=[AgentWorkflow, WakeUpWorkflow],
                workflow_runner=workflow_runner(),
                data_converter=encrypted_data_converter(keys),
            ).replay_workflow(history)
            assert replayed.replay_failure is None
        finally:
            await harness.close()


@pytest.mark.parametrize("encrypted", [False, True])
async def test_codec_server_shows_payloads_the_claim_check_moved_to_the_store(
    tmp_path: Path, encrypted: bool
) -> None:
    """The Web UI is shown what a reference in history stands for, with or without encryption."""
    keys = ring("k1") if encrypted else None
    blobs = open_transcript_store(tmp_path / "transcripts.db")
    converter = with_claim_check(data_converter(keys), blobs)
    assert converter.external_storage is not None
    plain = converter.payload_converter.to_payloads(["a long reply " * 1000])
    encoded = await converter.payload_codec.encode(plain) if converter.payload_codec else plain
    reference = await converter.external_storage._store_payload(encoded[0])
    assert reference.ByteSize() < 300  # what history holds
    server = CodecServer(
        keys, CodecServerSettings(TOKEN, frozenset({UI_ORIGIN})), "127.0.0.1", 0, blobs
    ).start()
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        status, _, body = await asyncio.to_thread(
            call, server, "/decode", as_json([reference]), auth
        )
    finally:
        server.close()
    assert status == 200, body
    assert from_json(body) == plain
