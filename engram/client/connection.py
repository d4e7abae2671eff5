"""What both clients (blocking and asyncio) share about talking to a gateway: the channel's
credentials and the calls' metadata, when a failed call is tried again and after how long, and
listing agents page by page. The clients do the I/O around it.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from engram.client.errors import Backoff, EngramError, EngramUnavailable, is_transient
from engram.client.records import AgentInfo
from engram.v1 import agent_pb2

DEFAULT_ADDRESS = "localhost:50051"
ReconnectHook = Callable[[EngramError, float], None]
"""Called before each reconnect attempt with the failure and the delay before it."""
MAX_PAGE_SIZE = 1000


def credentials(tls: bool, root_certificates: bytes | None) -> grpc.ChannelCredentials | None:
    """The channel's TLS credentials; None for plaintext."""
    if tls or root_certificates:
        return grpc.ssl_channel_credentials(root_certificates)
    return None


def call_metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    """What every call carries: the API key, when given."""
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


class Reconnect:
    """Waiting out a gateway that is gone: exponential backoff within `timeout` seconds from
    the first failure, started afresh once a call or stream makes progress."""

    def __init__(self, timeout: float, on_reconnect: ReconnectHook | None) -> None:
        self._backoff = Backoff(timeout)
        self._on_reconnect = on_reconnect

    def progressed(self) -> None:
        self._backoff.reset()

    def delay_after(self, err: grpc.RpcError, *, retry: bool = True) -> float:
        """How long to wait before trying again after `err`. Raises EngramError if it is not
        worth trying again (or `retry` is False), EngramUnavailable once the time is spent."""
        if not (retry and is_transient(err)):
            raise EngramError.of(err) from None
        delay = self._backoff.next_delay()
        failed = EngramError.of(err)
        if delay is None:
            raise EngramUnavailable(failed.code, failed.details) from None
        if self._on_reconnect is not None:
            self._on_reconnect(failed, delay)
        return delay

    def delay_to_look_again(self, what: str) -> float:
        """How long to wait before looking again for something not there yet; raises
        EngramUnavailable (saying `what` did not happen) once the time is spent."""
        delay = self._backoff.next_delay()
        if delay is None:
            raise EngramUnavailable(grpc.StatusCode.UNAVAILABLE, what)
        return delay


class AgentListing:
    """ListAgents, page by page, until `limit` agents (None: all) or the last page."""

    def __init__(self, status: str, limit: int | None) -> None:
        self.status = status
        self.limit = limit
        self._found: list[agent_pb2.Agent] = []
        self._token = ""
        self._done = False

    def next_request(self) -> agent_pb2.ListAgentsRequest | None:
        """The next page's request; None once there is nothing more to read."""
        if self._done or (self.limit is not None and len(self._found) >= self.limit):
            return None
        return agent_pb2.ListAgentsRequest(
            status_filter=self.status,
            page_size=min(self.limit or MAX_PAGE_SIZE, MAX_PAGE_SIZE),
            page_token=self._token,
        )

    def add(self, page: agent_pb2.ListAgentsResponse) -> None:
        self._found.extend(page.agents)
        self._token = page.next_page_token
        self._done = not self._token

    def agents(self) -> list[AgentInfo]:
        return [AgentInfo.of(a) for a in self._found[: self.limit]]
