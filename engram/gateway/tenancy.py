"""Which agents a caller may see: its own tenant's; an admin may also read the others'.

An agent's tenant is the `EngramTenant` search attribute set when it was created (and a memo
field, for people). Another tenant's agent is NOT_FOUND with the very message of an agent that
does not exist, so agent ids cannot be probed: by its words, and by its time, since both cost
one describe of the workflow (an agent's tenant, which never changes, is otherwise looked up once
per gateway).

The agents-per-tenant quota is checked and the agent started under one lock per tenant, and the
agents this gateway started in the last `RECENT_SECONDS` are counted from its own memory rather
than from Temporal's visibility, which lags: so one gateway never exceeds the limit, however many
creates race. Several gateways each hold their own lock; they see each other's agents once
visibility does (about a second), so concurrent creates through different gateways in that
window can still overshoot, by at most the creates in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import grpc
from temporalio.client import Client

from engram import WORKFLOW_ID_PREFIX
from engram.auth.principal import current
from engram.gateway.errors import GatewayError
from engram.vocabulary import TENANT_ATTRIBUTE

log = logging.getLogger(__name__)

TENANT_CACHE_SIZE = 100_000
# Longer than visibility ever lags behind a start, on a healthy cluster.
RECENT_SECONDS = 30.0


def not_found(agent_id: str) -> GatewayError:
    """What a missing agent is answered with (engram.gateway.errors.from_temporal's words)."""
    return GatewayError(grpc.StatusCode.NOT_FOUND, f"agent {agent_id} not found")


class AgentAccess:
    def __init__(self, client: Client, max_agents_per_tenant: int = 0) -> None:
        self.client = client
        self.max_agents_per_tenant = max_agents_per_tenant
        self._tenants: OrderedDict[str, str] = OrderedDict()
        self._creating: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._recent: defaultdict[str, dict[str, float]] = defaultdict(dict)  # tenant -> id: at

    @staticmethod
    def tenant() -> str:
        """The tenant new agents of this call belong to ("" with auth off)."""
        return current().tenant

    async def check(self, agent_id: str, *, read: bool = False) -> None:
        """Raise NOT_FOUND unless the caller may act on (or, with `read`, read) the agent."""
        principal = current()
        if not principal.scoped:
            return
        cached = self._tenants.get(agent_id)
        tenant = await self._tenant_of(agent_id)
        if tenant == principal.tenant:
            return
        if cached is not None and not (read and principal.admin):
            # Known from the cache: describe anyway, so that this NOT_FOUND takes the time of a
            # missing agent's (which is a describe that fails).
            await self._describe_tenant(agent_id)
        if read and principal.admin:
            log.warning(
                "admin key %s (tenant %r) read agent %s of tenant %r",
                principal.key_id,
                principal.tenant,
                agent_id,
                tenant,
            )
            return
        raise not_found(agent_id)

    def list_filter(self, method: str = "ListAgents") -> str:
        """The visibility-query clause that keeps a listing to the caller's tenant ("" for all)."""
        principal = current()
        if not principal.scoped:
            return ""
        if principal.admin:
            log.warning(
                "admin key %s (tenant %r) listed every tenant's agents (%s)",
                principal.key_id,
                principal.tenant,
                method,
            )
            return ""
        # Tenant names are checked words (engram.auth.records.TENANT_PATTERN): no quoting needed.
        return f" AND {TENANT_ATTRIBUTE.name} = '{principal.tenant}'"

    @asynccontextmanager
    async def creating(self) -> AsyncIterator[Callable[[str], None]]:
        """Hold the caller's tenant's quota while one agent is created: RESOURCE_EXHAUSTED if the
        tenant already runs its limit; else the caller calls the given function with the new
        agent's id once it started."""
        principal = current()
        if not principal.scoped or self.max_agents_per_tenant <= 0:
            yield lambda agent_id: None
            return
        tenant = principal.tenant
        async with self._creating[tenant]:
            recent = self._recent[tenant]
            cutoff = time.monotonic() - RECENT_SECONDS
            for agent_id in [a for a, at in recent.items() if at < cutoff]:
                del recent[agent_id]
            query = (
                "WorkflowType = 'AgentWorkflow' AND ExecutionStatus = 'Running'"
                f" AND {TENANT_ATTRIBUTE.name} = '{tenant}'"
            )
            if recent:
                # Ids are uuids this gateway made: no quoting needed.
                ids = ", ".join(f"'{WORKFLOW_ID_PREFIX}{a}'" for a in recent)
                query += f" AND WorkflowId NOT IN ({ids})"
            count = (await self.client.count_workflows(query)).count + len(recent)
            if count >= self.max_agents_per_tenant:
                raise GatewayError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"tenant {tenant!r} already has {count} agents; the limit is "
                    f"{self.max_agents_per_tenant} (delete some, or raise --max-agents-per-tenant)",
                )
            yield lambda agent_id: recent.__setitem__(agent_id, time.monotonic())

    async def _tenant_of(self, agent_id: str) -> str:
        tenant = self._tenants.get(agent_id)
        if tenant is not None:
            self._tenants.move_to_end(agent_id)
            return tenant
        tenant = await self._describe_tenant(agent_id)
        self._tenants[agent_id] = tenant
        while len(self._tenants) > TENANT_CACHE_SIZE:
            self._tenants.popitem(last=False)
        return tenant

    async def _describe_tenant(self, agent_id: str) -> str:
        # A missing agent raises Temporal's NOT_FOUND here, which the gateway reports as usual.
        description = await self.client.get_workflow_handle(
            WORKFLOW_ID_PREFIX + agent_id
        ).describe()
        return description.typed_search_attributes.get(TENANT_ATTRIBUTE) or ""
