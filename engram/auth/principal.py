"""Who is calling: set by the interceptor for the duration of one RPC, read by the servicers."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from engram.auth.records import Role


@dataclass(frozen=True)
class Principal:
    tenant: str
    role: Role
    key_id: str = ""
    """Empty for the open principal (no keys configured): nobody in particular."""

    @property
    def scoped(self) -> bool:
        """Bound to a tenant: the open principal (auth off) sees everything, as before keys."""
        return bool(self.key_id)

    @property
    def admin(self) -> bool:
        return self.role == Role.ADMIN


OPEN = Principal(tenant="", role=Role.ADMIN)
"""The caller when the gateway runs without keys: tenant "", every agent, as before auth."""

_current: ContextVar[Principal] = ContextVar("engram_principal", default=OPEN)


def current() -> Principal:
    return _current.get()


def set_current(principal: Principal) -> None:
    # Only ever called inside the RPC's own task (or async generator), whose context dies with it.
    _current.set(principal)
