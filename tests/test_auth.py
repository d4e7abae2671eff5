"""Who may call the gateway: API keys from the real CLI, tenants, limits, safe defaults and TLS.

A real engine (`engram dev`) whose store holds keys made by `engram keys create`; every RPC is
tried without a key, with a bad, revoked and expired one, and on another tenant's agent.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import message_factory
from temporalio.client import Client

from engram import WORKFLOW_ID_PREFIX
from engram.auth import exposure, keys
from engram.auth.keyring import presented_key
from engram.auth.limits import LimitExceeded, RateLimiter, StreamSlots
from engram.auth.records import Role
from engram.transcripts import open_transcript_store
from engram.v1 import agent_pb2, agent_pb2_grpc
from engram.vocabulary import TENANT_ATTRIBUTE
from tests.conftest import user_message
from tests.engine import Engine, free_port
from tests.fake_llm import FakeLLM
from tests.postgres import PostgresServer

Metadata = tuple[tuple[str, str], ...]
RATE = 20  # calls per second per key on the secured engine, and its burst
CHAT_STREAMS = 2
AGENTS_PER_TENANT = 2


def engram_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engram.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def create_key(data_dir: Path, tenant: str, *options: str) -> str:
    """A key made by `engram keys create`, which prints it alone on its last line."""
    done = engram_cli("keys", "create", "--tenant", tenant, "--data-dir", str(data_dir), *options)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip().splitlines()[-1]
    assert keys.parse(key) is not None, done.stdout
    return key


def bearer(key: str) -> Metadata:
    return (("authorization", f"Bearer {key}"),)


def api_key(key: str) -> Metadata:
    return (("x-api-key", key),)


def code_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


# --- units ---------------------------------------------------------------------------------


def test_keys_hash_verify_and_parse() -> None:
    key, record = keys.new_key("acme", Role.MEMBER, expires_in=60, now=1000.0)
    parsed = keys.parse(key)
    assert parsed is not None and parsed[0] == record.key_id
    assert parsed[1] not in record.secret_hash and record.secret_hash.startswith("$argon2id$")
    assert keys.verify(record, parsed[1])
    assert not keys.verify(record, parsed[1][:-1] + ("A" if parsed[1][-1] != "A" else "B"))
    assert record.expires_at == 1060.0 and record.usable(1059.0) and not record.usable(1060.0)
    for bad in ("", "engram_xyz_abc", key + "x", key.replace("engram_", "other_")):
        assert keys.parse(bad) is None
    assert keys.parse_duration("90d") == 90 * 86400
    assert keys.parse_duration("12h") == 12 * 3600 and keys.parse_duration("never") is None
    with pytest.raises(ValueError):
        keys.parse_duration("soon")


def test_key_headers() -> None:
    assert presented_key([("authorization", "Bearer abc")]) == "abc"
    assert presented_key([("authorization", "bearer  abc ")]) == "abc"
    assert presented_key([("x-api-key", "abc")]) == "abc"
    assert presented_key([("authorization", "Basic abc")]) is None
    assert presented_key([("other", "abc")]) is None


def test_loopback_and_limits() -> None:
    for host in ("localhost", "127.0.0.1", "::1", "[::1]"):
        assert exposure.is_loopback(host), host
    for host in ("0.0.0.0", "", "::", "10.1.2.3"):
        assert not exposure.is_loopback(host), host
    assert exposure.refusal("0.0.0.0", has_keys=False, insecure_no_auth=False) is not None
    assert exposure.refusal("0.0.0.0", has_keys=True, insecure_no_auth=False) is None
    assert exposure.refusal("0.0.0.0", has_keys=False, insecure_no_auth=True) is None
    rate = RateLimiter(rate=1, burst=3)
    for _ in range(3):
        rate.charge("k")
    with pytest.raises(LimitExceeded, match="rate limit"):
        rate.charge("k")
    rate.charge("other key")
    slots = StreamSlots(1)
    with slots.hold("k"), pytest.raises(LimitExceeded, match="Chat streams"), slots.hold("k"):
        pass
    with slots.hold("k"):
        pass  # released when the first stream ended


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.e2e)])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "transcripts.db")
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.database("auth_keys")


def test_stores_keep_key_records(store_location: str) -> None:
    store = open_transcript_store(store_location)
    try:
        before = {k.key_id for k in store.api_keys()}
        _, first = keys.new_key("acme", Role.ADMIN, expires_in=3600)
        _, second = keys.new_key("globex", Role.MEMBER)
        store.add_api_key(first)
        store.add_api_key(second)
        stored = {k.key_id: k for k in store.api_keys() if k.key_id not in before}
        assert stored == {first.key_id: first, second.key_id: second}
        assert store.revoke_api_key(first.key_id, 1234.5)
        assert not store.revoke_api_key(first.key_id, 1300.0)  # already revoked: first time stands
        assert not store.revoke_api_key("000000000000", 1300.0)
        revoked = next(k for k in store.api_keys() if k.key_id == first.key_id)
        assert revoked.revoked_at == 1234.5 and revoked.state() == "revoked"
    finally:
        store.close()


# --- a secured engine ----------------------------------------------------------------------


@dataclass
class Secured:
    engine: Engine
    keys: dict[str, str]

    def stub(self) -> agent_pb2_grpc.AgentServiceStub:
        return self.engine.stub()


@pytest.fixture(scope="module")
def secured(fake_llm: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    data_dir = tmp_path_factory.mktemp("secured")
    wanted = {
        "acme": ("acme",),
        "globex": ("globex",),
        "admin": ("ops", "--role", "admin"),
        "flood": ("flood",),
        "streams": ("streams",),
        "quota": ("quota", "--expires", "30d"),
    }
    with ThreadPoolExecutor(len(wanted)) as pool:  # each CLI run is mostly interpreter start-up
        futures = {name: pool.submit(create_key, data_dir, *args) for name, args in wanted.items()}
        made = {name: future.result() for name, future in futures.items()}
    engine = Engine(
        data_dir,
        fake_llm.url,
        ENGRAM_RATE_LIMIT=str(RATE),
        ENGRAM_RATE_BURST=str(RATE),
        ENGRAM_MAX_CHAT_STREAMS=str(CHAT_STREAMS),
        ENGRAM_MAX_AGENTS_PER_TENANT=str(AGENTS_PER_TENANT),
        # Agents continue-as-new after a turn or two: the tenant must survive it.
        ENGRAM_MAX_HISTORY_EVENTS="30",
    ).start()
    yield Secured(engine, made)
    engine.stop()
    # No key, not even its secret half, is ever written to a log.
    log = engine.log()
    for key in made.values():
        parsed = keys.parse(key)
        assert parsed is not None and parsed[1] not in log


def every_method(channel: grpc.Channel) -> Iterator[tuple[str, Callable[[Metadata], object]]]:
    """Each AgentService method, called with an empty request: present ones and future ones."""
    service = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
    codec: dict[str, Any] = {
        "request_serializer": lambda m: m.SerializeToString(),
        "response_deserializer": lambda b: b,
    }
    for method in service.methods:
        path = f"/{service.full_name}/{method.name}"
        request = message_factory.GetMessageClass(method.input_type)()
        if method.client_streaming:
            yield method.name, _streaming(channel.stream_stream(path, **codec), request)
        elif method.server_streaming:
            yield method.name, _replaying(channel.unary_stream(path, **codec), request)
        else:
            yield method.name, _unary(channel.unary_unary(path, **codec), request)


def _streaming(method: Any, request: Any) -> Callable[[Metadata], object]:
    return lambda metadata: list(method(iter([request]), metadata=metadata, timeout=10))


def _replaying(method: Any, request: Any) -> Callable[[Metadata], object]:
    return lambda metadata: list(method(request, metadata=metadata, timeout=10))


def _unary(method: Any, request: Any) -> Callable[[Metadata], object]:
    return lambda metadata: method(request, metadata=metadata, timeout=10)


def test_every_rpc_needs_a_valid_key(secured: Secured) -> None:
    good = keys.parse(secured.keys["acme"])
    assert good is not None
    forged = f"engram_{good[0]}_{'x' * 43}"  # a real key id with a wrong secret
    with grpc.insecure_channel(secured.engine.address) as channel:
        methods = list(every_method(channel))
        assert len(methods) >= 10
        for metadata in ((), bearer("not-a-key"), bearer(forged), api_key(forged)):
            for name, call in methods:
                code, details = code_of(lambda c=call, m=metadata: c(m))  # type: ignore[misc]
                assert code == grpc.StatusCode.UNAUTHENTICATED, (name, metadata, code, details)
                assert "authorization: Bearer <key>" in details and "x-api-key" in details
                assert forged not in details
    # A valid key gets past authentication (then the empty request is simply invalid).
    valid = api_key(secured.keys["acme"])
    code, _ = code_of(lambda: secured.stub().GetAgent(agent_pb2.GetAgentRequest(), metadata=valid))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_tenants_see_only_their_agents(secured: Secured, llm: FakeLLM) -> None:
    stub, k = secured.stub(), secured.keys
    agent = stub.CreateAgent(
        agent_pb2.CreateAgentRequest(goal="acme's", model="m"), metadata=bearer(k["acme"])
    ).agent_id
    said = ["hello acme", "second", "third"]
    replies = list(
        stub.Chat(
            iter([user_message(agent, s) for s in said]), metadata=api_key(k["acme"]), timeout=30
        )
    )
    assert [m.final_answer.content for m in replies if m.HasField("final_answer")] == [
        f"You said: {s}" for s in said
    ]
    assert asyncio.run(runs_and_tenant(secured.engine, agent)) == (2, "acme")

    def listed(key: str) -> set[str]:
        page = stub.ListAgents(agent_pb2.ListAgentsRequest(page_size=1000), metadata=bearer(key))
        return {a.agent_id for a in page.agents}

    assert agent in listed(k["acme"])
    assert agent not in listed(k["globex"])

    missing = str(uuid.uuid4())

    def attempts(agent_id: str) -> dict[str, Callable[[Metadata], object]]:
        return {
            "GetAgent": lambda md: stub.GetAgent(
                agent_pb2.GetAgentRequest(agent_id=agent_id), metadata=md
            ),
            "GetHistory": lambda md: stub.GetHistory(
                agent_pb2.GetHistoryRequest(agent_id=agent_id), metadata=md
            ),
            "Replay": lambda md: list(
                stub.Replay(
                    agent_pb2.ReplayRequest(agent_id=agent_id, include_history=True),
                    metadata=md,
                    timeout=10,
                )
            ),
            "Chat": lambda md: list(
                stub.Chat(iter([user_message(agent_id, "let me in")]), metadata=md, timeout=10)
            ),
            "ControlAgent": lambda md: stub.ControlAgent(
                agent_pb2.ControlAgentRequest(agent_id=agent_id, pause=agent_pb2.Pause()),
                metadata=md,
            ),
            "SetAgentStatus": lambda md: stub.SetAgentStatus(
                agent_pb2.SetAgentStatusRequest(agent_id=agent_id, status="paused"), metadata=md
            ),
            "DeleteAgent": lambda md: stub.DeleteAgent(
                agent_pb2.DeleteAgentRequest(agent_id=agent_id, force=True), metadata=md
            ),
        }

    theirs, nobody = attempts(agent), attempts(missing)
    for name, call in theirs.items():
        foreign = code_of(lambda c=call: c(bearer(k["globex"])))  # type: ignore[misc]
        absent = code_of(lambda c=nobody[name]: c(bearer(k["globex"])))  # type: ignore[misc]
        assert foreign[0] == absent[0] == grpc.StatusCode.NOT_FOUND, (name, foreign, absent)
        # The very same words: another tenant's agent cannot be told from one that is not there.
        assert foreign[1].replace(agent, "ID") == absent[1].replace(missing, "ID"), name
    assert not llm.requests_for("let me in")

    # An admin reads across tenants (and each read is logged) but acts only on its own.
    admin = bearer(k["admin"])
    assert stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent), metadata=admin).goal == "acme's"
    history = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent), metadata=admin)
    assert [t.user for t in history.turns] == said
    assert agent in listed(k["admin"])
    for name in ("Chat", "ControlAgent", "SetAgentStatus", "DeleteAgent"):
        assert code_of(lambda n=name: theirs[n](admin))[0] == grpc.StatusCode.NOT_FOUND, name  # type: ignore[misc]
    admin_id = keys.parse(k["admin"])
    assert admin_id is not None and f"admin key {admin_id[0]}" in secured.engine.log()
    assert agent in secured.engine.log()

    # The owner still has it all, untouched.
    assert (
        stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent), metadata=bearer(k["acme"])).status
        == "idle"
    )
    assert "token relay" not in secured.engine.log()  # the worker's relay (with its secret) worked


async def runs_and_tenant(engine: Engine, agent_id: str) -> tuple[int, str]:
    """How many runs the agent's workflow has had (at least 2 once it continued-as-new; waits
    for that) and the tenant its latest run carries."""
    client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
    workflow_id = WORKFLOW_ID_PREFIX + agent_id
    deadline = time.monotonic() + 10
    while (count := await client.count_workflows(f"WorkflowId = '{workflow_id}'")).count < 2:
        assert time.monotonic() < deadline, "the agent never continued-as-new"
        await asyncio.sleep(0.2)
    description = await client.get_workflow_handle(workflow_id).describe()
    return min(count.count, 2), description.typed_search_attributes.get(TENANT_ATTRIBUTE) or ""


def test_revoked_and_expired_keys_stop_working(secured: Secured) -> None:
    data_dir = str(secured.engine.data_dir)
    stub = secured.stub()
    fresh = create_key(secured.engine.data_dir, "acme")
    short = create_key(secured.engine.data_dir, "acme", "--expires", "4s")
    made = time.monotonic()

    def lists(key: str) -> grpc.StatusCode:
        return code_of(lambda: stub.ListTools(agent_pb2.ListToolsRequest(), metadata=bearer(key)))[
            0
        ]

    # A key made while the gateway runs works at once.
    assert lists(fresh) == grpc.StatusCode.OK and lists(short) == grpc.StatusCode.OK
    key_id = keys.parse(fresh)
    assert key_id is not None
    done = engram_cli("keys", "revoke", key_id[0], "--data-dir", data_dir)
    assert done.returncode == 0, done.stderr
    revoked_at = time.monotonic()
    while lists(fresh) == grpc.StatusCode.OK:
        assert time.monotonic() - revoked_at < 5, "revocation took effect within 5 s"
        time.sleep(0.1)
    took = time.monotonic() - revoked_at
    print(f"revocation took effect after {took:.2f} s")
    code, details = code_of(
        lambda: stub.ListTools(agent_pb2.ListToolsRequest(), metadata=bearer(fresh))
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED and "revoked" in details

    time.sleep(max(0.0, 4.2 - (time.monotonic() - made)))
    code, details = code_of(
        lambda: stub.ListTools(agent_pb2.ListToolsRequest(), metadata=bearer(short))
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED and "expired" in details

    listing = engram_cli("keys", "list", "--data-dir", data_dir)
    assert listing.returncode == 0, listing.stderr
    states = {line.split()[0]: line.split()[3] for line in listing.stdout.splitlines()[1:]}
    short_id = keys.parse(short)
    assert short_id is not None
    assert states[key_id[0]] == "revoked" and states[short_id[0]] == "expired"
    for key in (fresh, short):
        assert key.split("_", 2)[2] not in listing.stdout
    again = engram_cli("keys", "revoke", key_id[0], "--data-dir", data_dir)
    assert again.returncode == 1 and "already revoked" in again.stderr


def test_rate_limit(secured: Secured) -> None:
    stub, key = secured.stub(), bearer(secured.keys["flood"])
    codes = [
        code_of(lambda: stub.ListTools(agent_pb2.ListToolsRequest(), metadata=key))
        for _ in range(3 * RATE)
    ]
    refused = [c for c in codes if c[0] == grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert refused and all("rate limit" in details for _, details in refused)
    assert sum(1 for c in codes if c[0] == grpc.StatusCode.OK) >= RATE
    # Other keys are not slowed down by this one.
    assert (
        code_of(
            lambda: stub.ListTools(
                agent_pb2.ListToolsRequest(), metadata=bearer(secured.keys["acme"])
            )
        )[0]
        == grpc.StatusCode.OK
    )
    time.sleep(1.2)
    assert code_of(lambda: stub.ListTools(agent_pb2.ListToolsRequest(), metadata=key))[0] == (
        grpc.StatusCode.OK
    )


def test_chat_stream_limit(secured: Secured) -> None:
    stub, key = secured.stub(), bearer(secured.keys["streams"])
    release = threading.Event()

    def held() -> Iterator[agent_pb2.ClientMessage]:
        release.wait(30)
        yield from ()

    streams = [stub.Chat(held(), metadata=key, timeout=30) for _ in range(CHAT_STREAMS)]
    try:
        time.sleep(1.0)  # the server has them open
        code, details = code_of(lambda: list(stub.Chat(held(), metadata=key, timeout=30)))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "Chat streams" in details
    finally:
        release.set()
    for stream in streams:
        assert list(stream) == []
    time.sleep(0.3)
    assert list(stub.Chat(iter([]), metadata=key, timeout=10)) == []  # slots were given back


def test_agents_per_tenant(secured: Secured) -> None:
    stub, key = secured.stub(), bearer(secured.keys["quota"])
    request = agent_pb2.CreateAgentRequest(goal="g", model="m")
    for _ in range(AGENTS_PER_TENANT):
        stub.CreateAgent(request, metadata=key)
    deadline = time.monotonic() + 10
    while (
        len(stub.ListAgents(agent_pb2.ListAgentsRequest(), metadata=key).agents) < AGENTS_PER_TENANT
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    code, details = code_of(lambda: stub.CreateAgent(request, metadata=key))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and f"limit is {AGENTS_PER_TENANT}" in details
    # Another tenant is not affected.
    assert stub.CreateAgent(request, metadata=bearer(secured.keys["globex"])).agent_id


# --- where a gateway may listen ------------------------------------------------------------


def gateway_process(secured: Secured, store: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    temporal = f"127.0.0.1:{secured.engine.temporal_port}"
    command = ["gateway", "--temporal-address", temporal, "--transcript-db", str(store)]
    return subprocess.Popen(
        [sys.executable, "-m", "engram.cli", *command, "--port", str(free_port()), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in {**os.environ, **env}.items() if k != "ENGRAM_RELAY_SECRET"},
    )


def test_network_gateway_needs_keys(secured: Secured, tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    refused = gateway_process(secured, empty, "--host", "0.0.0.0")
    output, _ = refused.communicate(timeout=30)
    assert refused.returncode != 0 and "refusing to serve on '0.0.0.0'" in output, output
    assert "--insecure-no-auth" in output

    # Keys but no relay secret: workers' relay would be open to clients, so it refuses too.
    keyed = gateway_process(secured, secured.engine.data_dir / "transcripts.db")
    output, _ = keyed.communicate(timeout=30)
    assert keyed.returncode != 0 and "ENGRAM_RELAY_SECRET" in output, output

    insecure = gateway_process(secured, empty, "--host", "0.0.0.0", "--insecure-no-auth")
    try:
        assert insecure.stdout is not None
        seen = ""
        deadline = time.monotonic() + 30
        while "gateway on" not in seen:
            assert time.monotonic() < deadline and insecure.poll() is None, seen
            seen += insecure.stdout.readline()
        assert "WITHOUT API keys" in seen, seen
    finally:
        insecure.kill()
        insecure.communicate(timeout=10)


# --- TLS -----------------------------------------------------------------------------------


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None = None,
    *,
    ca: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(
    path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    cert_path, key_path = path.with_suffix(".pem"), path.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_with_client_certificates(fake_llm: FakeLLM, tmp_path: Path) -> None:
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("Engram test CA", ca_key, ca=True)
    ca_path, _ = _write(tmp_path / "ca", ca, ca_key)
    server_cert, server_key_path = _write(
        tmp_path / "server",
        _certificate("localhost", server_key, ("Engram test CA", ca_key)),
        server_key,
    )
    client = _certificate("a client", client_key, ("Engram test CA", ca_key))
    engine = Engine(
        tmp_path / "engine",
        fake_llm.url,
        ENGRAM_GATEWAY_TLS_CERT=str(server_cert),
        ENGRAM_GATEWAY_TLS_KEY=str(server_key_path),
        ENGRAM_GATEWAY_TLS_CLIENT_CA=str(ca_path),
    ).start()
    try:
        request = agent_pb2.ListAgentsRequest(page_size=1)
        with grpc.insecure_channel(engine.address) as plain:
            code = code_of(
                lambda: agent_pb2_grpc.AgentServiceStub(plain).ListAgents(request, timeout=5)
            )
            assert code[0] == grpc.StatusCode.UNAVAILABLE, code
        anonymous = grpc.ssl_channel_credentials(root_certificates=ca_path.read_bytes())
        with grpc.secure_channel(engine.address, anonymous) as channel:
            code = code_of(
                lambda: agent_pb2_grpc.AgentServiceStub(channel).ListAgents(request, timeout=5)
            )
            assert code[0] == grpc.StatusCode.UNAVAILABLE, code
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca_path.read_bytes(),
            private_key=client_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            certificate_chain=client.public_bytes(serialization.Encoding.PEM),
        )
        with grpc.secure_channel(engine.address, credentials) as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            agent = stub.CreateAgent(agent_pb2.CreateAgentRequest(goal="g", model="m")).agent_id
            replies = list(stub.Chat(iter([user_message(agent, "over TLS")]), timeout=30))
            assert any(m.HasField("text") for m in replies)
            assert [m.final_answer.content for m in replies if m.HasField("final_answer")] == [
                "You said: over TLS"
            ]
        # The engine's own worker reached its gateway's relay over TLS, with a certificate.
        assert "token relay" not in engine.log()
    finally:
        engine.stop()
