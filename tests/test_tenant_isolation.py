"""Tenants cannot learn of or crowd out each other through the gateway's tenancy checks: the
agents-per-tenant quota holds under concurrent creates (even while visibility lags), another
tenant's agent costs what a missing one does, and attachment names do not reveal their content."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import grpc
import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from engram import WORKFLOW_ID_PREFIX
from engram.auth.principal import Principal, set_current
from engram.auth.records import Role
from engram.gateway.errors import GatewayError
from engram.gateway.tenancy import AgentAccess
from engram.vocabulary import TENANT_ATTRIBUTE


@dataclass
class Counted:
    count: int


class FakeClient:
    """Temporal as the tenancy checks see it: describes (counted) and a visibility that lags."""

    def __init__(self, tenants: dict[str, str]) -> None:
        self.tenants = tenants  # workflow id -> tenant
        self.describes: list[str] = []
        self.visible = 0  # what visibility shows, whatever was started

    def get_workflow_handle(self, workflow_id: str) -> Any:
        client = self

        class Handle:
            async def describe(self) -> Any:
                client.describes.append(workflow_id)
                await asyncio.sleep(0)
                if workflow_id not in client.tenants:
                    raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")
                tenant = client.tenants[workflow_id]
                return SimpleNamespace(typed_search_attributes={TENANT_ATTRIBUTE: tenant})

        return Handle()

    async def count_workflows(self, query: str) -> Counted:
        await asyncio.sleep(0.01)
        return Counted(self.visible)


def as_tenant(tenant: str, role: Role = Role.MEMBER) -> None:
    set_current(Principal(tenant=tenant, role=role, key_id=f"key-{tenant}"))


def test_quota_holds_under_concurrent_creates() -> None:
    client = FakeClient({})
    access = AgentAccess(cast(Client, client), max_agents_per_tenant=3)

    async def create(n: int) -> bool:
        as_tenant("acme")
        try:
            async with access.creating() as started:
                await asyncio.sleep(0.01)  # the start's round trip
                started(f"agent-{n}")
        except GatewayError as err:
            assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit is 3" in err.message
            return False
        return True

    async def scenario() -> list[bool]:
        return await asyncio.gather(*(create(n) for n in range(12)))

    assert sum(asyncio.run(scenario())) == 3

    async def other_tenant() -> None:
        as_tenant("globex")
        async with access.creating() as started:  # not held back by acme's agents
            started("globex-agent")

    asyncio.run(other_tenant())


def test_another_tenants_agent_costs_what_a_missing_one_does() -> None:
    theirs = "11111111-1111-1111-1111-111111111111"
    missing = "22222222-2222-2222-2222-222222222222"
    client = FakeClient({WORKFLOW_ID_PREFIX + theirs: "acme"})
    access = AgentAccess(cast(Client, client))

    async def describes_for(agent_id: str) -> tuple[int, str]:
        as_tenant("globex")
        before = len(client.describes)
        try:
            await access.check(agent_id)
        except GatewayError as err:
            return len(client.describes) - before, err.message
        except RPCError as err:
            return len(client.describes) - before, err.message
        raise AssertionError("no NOT_FOUND")

    async def scenario() -> None:
        as_tenant("acme")
        await access.check(theirs)  # its owner used it: its tenant is now cached
        for _ in range(3):
            assert (await describes_for(theirs))[0] == 1
            assert (await describes_for(missing))[0] == 1

    asyncio.run(scenario())


def test_attachment_names_are_keyed_when_encrypted(tmp_path: Path) -> None:
    from engram.codec.encrypted_store import EncryptedTranscriptStore, blob_name
    from engram.codec.keyring import Keyring
    from engram.transcripts import open_transcript_store

    data = b"the quarterly numbers"
    plain = hashlib.sha256(data).hexdigest()
    ring = Keyring((("k1", b"\1" * 32),))
    inner = open_transcript_store(tmp_path / "t.db")
    store = EncryptedTranscriptStore(inner, ring)
    name = blob_name(store, data)
    assert plain not in name and name == blob_name(store, data)
    assert name != blob_name(EncryptedTranscriptStore(inner, Keyring((("k2", b"\2" * 32),))), data)
    store.put_blob(name, data)
    assert store.get_blob(name) == data
    # Stored before, by plain SHA-256 (sealed or not): still readable.
    store.put_blob(plain, data)
    assert store.get_blob(plain) == data
    inner.put_blob(hashlib.sha256(b"old").hexdigest(), b"old")
    assert store.get_blob(hashlib.sha256(b"old").hexdigest()) == b"old"
    assert blob_name(inner, data) == plain  # encryption off: content addressing as before


@pytest.fixture(autouse=True)
def _fresh_principal() -> None:
    set_current(Principal(tenant="", role=Role.ADMIN))
