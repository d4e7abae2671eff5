"""What a call costs before its key is checked: no body read, and no Argon2 run twice for the same
wrong secret or past a peer's or key id's budget of failures. In-process: a gRPC server with the
gateway's AuthInterceptor over keys in memory, and a method that counts what it decodes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest

from engram.auth import keys
from engram.auth.failures import FAILURE_BURST
from engram.auth.interceptor import SMALL_REQUEST_BYTES, AuthInterceptor
from engram.auth.keyring import KeyRing
from engram.auth.limits import Limits
from engram.auth.records import ApiKey, Role

SERVICE = "dura.api.v1.AgentService"
BIG = 10 * 1024 * 1024


class Keys:
    def __init__(self, *records: ApiKey) -> None:
        self.records = list(records)

    def add_api_key(self, key: ApiKey) -> None:
        self.records.append(key)

    def api_keys(self) -> list[ApiKey]:
        return list(self.records)

    def revoke_api_key(self, key_id: str, at: float) -> bool:
        return False


class Counting:
    """A unary method whose decoder counts the bodies it was handed."""

    def __init__(self) -> None:
        self.decoded: list[int] = []

    def decode(self, raw: bytes) -> bytes:
        self.decoded.append(len(raw))
        return raw

    async def echo(self, request: bytes, context: Any) -> bytes:
        return b"ok"


async def serve(keyring: KeyRing, counting: Counting) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(
        interceptors=[AuthInterceptor(keyring, Limits())],
        options=[("grpc.max_receive_message_length", 2 * BIG)],
    )
    handler = grpc.unary_unary_rpc_method_handler(
        counting.echo, request_deserializer=counting.decode
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(SERVICE, {"GetAgent": handler, "Chat": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
def key() -> tuple[str, ApiKey]:
    return keys.new_key("acme", Role.MEMBER)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def call(
    address: str, body: bytes, metadata: tuple[tuple[str, str], ...], method: str = "GetAgent"
) -> tuple[grpc.StatusCode, str]:
    async with grpc.aio.insecure_channel(
        address, options=[("grpc.max_send_message_length", 2 * BIG)]
    ) as channel:
        stub = channel.unary_unary(
            f"/{SERVICE}/{method}", request_serializer=bytes, response_deserializer=bytes
        )
        try:
            await stub(body, metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError as err:
            return err.code(), err.details() or ""
        return grpc.StatusCode.OK, ""


def test_no_body_is_read_before_the_key_is_checked(key: tuple[str, ApiKey]) -> None:
    secret, record = key

    async def scenario() -> None:
        counting = Counting()
        server, address = await serve(KeyRing(Keys(record)), counting)
        try:
            for metadata in ((), (("x-api-key", "engram_000000000000_" + "x" * 43),)):
                code, _ = await call(address, b"\0" * BIG, metadata)
                assert code == grpc.StatusCode.UNAUTHENTICATED
            assert counting.decoded == []  # refused before a byte of the body was decoded
            good = (("x-api-key", secret),)
            assert (await call(address, b"small", good))[0] == grpc.StatusCode.OK
            assert counting.decoded == [5]
            # Past authentication, a method other than Chat still takes only a small body.
            code, details = await call(address, b"\0" * (SMALL_REQUEST_BYTES + 1), good)
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "at most" in details
            assert (await call(address, b"\0" * BIG, good, "Chat"))[0] == grpc.StatusCode.OK
        finally:
            await server.stop(None)

    run(scenario())


def test_failed_authentications_are_remembered_and_limited(
    key: tuple[str, ApiKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, record = key
    hashed: list[str] = []
    real_verify = keys.verify

    def counting_verify(r: ApiKey, s: str) -> bool:
        hashed.append(s)
        return real_verify(r, s)

    monkeypatch.setattr(keys, "verify", counting_verify)
    wrong = f"engram_{record.key_id}_{'y' * 43}"

    async def scenario() -> None:
        server, address = await serve(KeyRing(Keys(record)), Counting())
        try:
            for _ in range(5):
                code, _ = await call(address, b"", (("x-api-key", wrong),))
                assert code == grpc.StatusCode.UNAUTHENTICATED
            assert len(hashed) == 1  # the same wrong secret is hashed once
            codes = []
            for i in range(15):
                guess = f"engram_{record.key_id}_{str(i).rjust(43, 'z')}"
                codes.append((await call(address, b"", (("x-api-key", guess),)))[0])
            # Past the budget, new guesses are refused unhashed (the budget drains at a failure a
            # second, and each refusal waits a quarter of one).
            assert codes[0] == grpc.StatusCode.UNAUTHENTICATED
            assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 3
            assert len(hashed) <= FAILURE_BURST + 3
            # A remembered failure is answered as such, at once, even past the budget.
            started = time.monotonic()
            code, details = await call(address, b"", (("x-api-key", wrong),))
            assert code == grpc.StatusCode.UNAUTHENTICATED, details
            assert time.monotonic() - started < 0.2
        finally:
            await server.stop(None)

    run(scenario())


def test_verified_key_is_not_held_up_by_failures(key: tuple[str, ApiKey]) -> None:
    secret, record = key

    async def scenario() -> None:
        server, address = await serve(KeyRing(Keys(record)), Counting())
        try:
            assert (await call(address, b"", (("x-api-key", secret),)))[0] == grpc.StatusCode.OK
            for i in range(20):
                guess = f"engram_{record.key_id}_{str(i).rjust(43, 'q')}"
                await call(address, b"", (("x-api-key", guess),))
            assert (await call(address, b"", (("x-api-key", secret),)))[0] == grpc.StatusCode.OK
        finally:
            await server.stop(None)

    run(scenario())
