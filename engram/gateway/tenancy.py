"""Which agents a caller may see: its own tenant's; an admin may also read the others'.

An agent's tenant is the `EngramTenant` search attribute set when it was created (and a memo
field, for people). Another tenant's agent is NOT_FOUND with the very message of an agent that
does not exist, so agent ids cannot be probed. Tenants never change, so each agent's tenant is
looked up once per gateway.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import grpc
from temporalio.client import Client

from engram import WORKFLOW_ID_PREFIX
from engram.auth.principal import current
from engram.gateway.errors import GatewayError
from engram.vocabulary import TENANT_ATTRIBUTE

log = logging.getLogger(__name__)

TENANT_CACHE_SIZE = 100_000


def not_found(agent_id: str) -> GatewayError:
    """What a missing agent is answered with (engram.gateway.errors.from_temporal's words)."""
    return GatewayError(grpc.StatusCode.NOT_FOUND, f"agent {agent_id} not found")


class AgentAccess:
    def __init__(self, client: Client, max_agents_per_tenant: int = 0) -> None:
        self.client = client
        self.max_agents_per_tenant = max_agents_per_tenant
        self._tenants: OrderedDict[str, str] = OrderedDict()

    @staticmethod
    def tenant() -> str:
        """The tenant new agents of this call belong to ("" with auth off)."""
        return current().tenant

    async def check(self, agent_id: str, *, read: bool = False) -> None:
        """Raise NOT_FOUND unless the caller may act on (or, with `read`, read) the agent."""
        principal = current()
        if not principal.scoped:
            return
        tenant = await self._tenant_of(agent_id)
        if tenant == principal.tenant:
            return
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

    async def check_quota(self) -> None:
        """Raise RESOURCE_EXHAUSTED if the caller's tenant already runs its limit of agents."""
        principal = current()
        if not principal.scoped or self.max_agents_per_tenant <= 0:
            return
        count = await self.client.count_workflows(
            "WorkflowType = 'AgentWorkflow' AND ExecutionStatus = 'Running'"
            f" AND {TENANT_ATTRIBUTE.name} = '{principal.tenant}'"
        )
        if count.count >= self.max_agents_per_tenant:
            raise GatewayError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"tenant {principal.tenant!r} already has {count.count} agents; the limit is "
                f"{self.max_agents_per_tenant} (delete some, or raise --max-agents-per-tenant)",
            )

    async def _tenant_of(self, agent_id: str) -> str:
        tenant = self._tenants.get(agent_id)
        if tenant is not None:
            self._tenants.move_to_end(agent_id)
            return tenant
        # A missing agent raises Temporal's NOT_FOUND here, which the gateway reports as usual.
        description = await self.client.get_workflow_handle(
            WORKFLOW_ID_PREFIX + agent_id
        ).describe()
        tenant = description.typed_search_attributes.get(TENANT_ATTRIBUTE) or ""
        self._tenants[agent_id] = tenant
        while len(self._tenants) > TENANT_CACHE_SIZE:
            self._tenants.popitem(last=False)
        return tenant
