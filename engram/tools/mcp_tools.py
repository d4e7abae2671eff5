"""Tools from MCP servers, through the official `mcp` SDK.

A server is named by a spec: `NAME=URL` (streamable HTTP) or `NAME=command args` (a stdio server
the worker starts; `NAME=env KEY=value command args` hands it environment variables, since it gets
only a minimal environment: the worker's own holds secrets). Its tools are offered to the model as
`NAME__tool`. Every call opens its own session (for stdio, its own process): nothing about a
call depends on an earlier one in the same process, so a retried call on another worker behaves
the same. Each call sends its idempotency key in the request's `_meta` as
`engram/idempotency_key` (`<agent id>:<call id>`), with `engram/agent_id` and `engram/call_id`.

Nothing here waits without a bound: connecting has `connect_timeout`, the call the tool's timeout
(enforced by the activity).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import mcp_types
from mcp import Client, StdioServerParameters

from engram.tools.registry import TOOL_NAME, ToolDescription, ToolPolicy, idempotency_key
from engram.workflows.function_tool import function_tool

log = logging.getLogger(__name__)

SEPARATOR = "__"
CALL_ID_META = "engram/call_id"
AGENT_ID_META = "engram/agent_id"
# `<agent id>:<call id>`, unique over every agent's calls (a call id is unique within its agent).
IDEMPOTENCY_KEY_META = "engram/idempotency_key"
SERVER_NAME = re.compile(r"^[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*$")
DEFAULT_CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True, kw_only=True)
class McpServerSpec:
    """One MCP server: a URL (streamable HTTP) or a command (stdio)."""

    name: str
    url: str = ""
    command: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        """Where it is, for error messages."""
        return self.url or shlex.join(self.command)

    def target(self) -> str | StdioServerParameters:
        if self.url:
            return self.url
        env: dict[str, str] = {}
        command = list(self.command)
        # `env K=V ... command`: handed to the SDK rather than to /usr/bin/env, so the variables
        # reach the server on top of the SDK's minimal default environment.
        if command and command[0] == "env":
            command.pop(0)
            while command and "=" in command[0] and not command[0].startswith("-"):
                key, _, value = command.pop(0).partition("=")
                env[key] = value
        if not command:
            raise ValueError(f"MCP server {self.name!r} names no command")
        return StdioServerParameters(command=command[0], args=command[1:], env=env or None)


def parse_mcp_server(spec: str) -> McpServerSpec:
    """`NAME=URL` or `NAME=command args`; raises ValueError saying what is wrong."""
    name, equals, rest = spec.strip().partition("=")
    name, rest = name.strip(), rest.strip()
    if not equals or not rest:
        raise ValueError(f"MCP server spec {spec!r} is not NAME=URL or NAME=command")
    if not SERVER_NAME.match(name):
        raise ValueError(
            f"MCP server name {name!r} must be letters, digits, '-' and single '_' "
            f"(its tools are named {name}{SEPARATOR}<tool>)"
        )
    if re.match(r"^https?://", rest):
        return McpServerSpec(name=name, url=rest)
    return McpServerSpec(name=name, command=tuple(shlex.split(rest)))


def parse_mcp_servers(specs: str | Iterable[str]) -> list[McpServerSpec]:
    """Several specs: a list, or one string separated by newlines or ';'."""
    items = re.split(r"[;\n]", specs) if isinstance(specs, str) else list(specs)
    servers = [parse_mcp_server(item) for item in items if item.strip()]
    names = [s.name for s in servers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"MCP server names must be unique: {', '.join(duplicates)}")
    return servers


class McpUnavailable(Exception):
    """The server could not be reached or dropped the connection: worth another attempt."""


class McpToolUnknown(Exception):
    """The server is up but has no such tool: retrying will not help."""


@dataclass(kw_only=True)
class McpResult:
    text: str
    is_error: bool = False


@dataclass(kw_only=True)
class McpListing:
    tools: list[ToolDescription] = field(default_factory=list)
    # Servers that could not be listed, with why.
    problems: list[str] = field(default_factory=list)


def exposed_name(server: str, tool: str) -> str:
    """`server__tool`, with characters a model API refuses replaced by '_'."""
    return f"{server}{SEPARATOR}{re.sub(r'[^A-Za-z0-9_-]', '_', tool)}"


class McpServers:
    """The MCP servers of a worker, and how their tools are run."""

    def __init__(
        self,
        servers: Iterable[McpServerSpec] = (),
        *,
        policy: ToolPolicy | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self.servers = {s.name: s for s in servers}
        # The policy of every MCP tool; a server's read-only hint is added per tool.
        self.policy = policy or ToolPolicy()
        self.connect_timeout = connect_timeout

    def owner(self, name: str) -> McpServerSpec | None:
        """The server whose tool `name` (`server__tool`) would be, if any."""
        server, separator, tool = name.partition(SEPARATOR)
        return self.servers.get(server) if separator and tool else None

    async def list_tools(self) -> McpListing:
        """Every server's tools, listed concurrently; a server that fails is a problem, not an
        exception, so one broken server does not hide the others' tools."""
        listings = await asyncio.gather(
            *(self._list(spec) for spec in self.servers.values()), return_exceptions=True
        )
        result = McpListing()
        for spec, listing in zip(self.servers.values(), listings, strict=True):
            if isinstance(listing, BaseException):
                problem = (
                    str(listing)
                    if isinstance(listing, McpUnavailable)
                    else f"MCP server {spec.name!r} ({spec.address}): {describe(listing)}"
                )
                log.warning("cannot list tools: %s", problem)
                result.problems.append(problem)
            else:
                result.tools += listing
        return result

    async def call(
        self, name: str, arguments: dict[str, Any], *, call_id: str, agent_id: str
    ) -> McpResult:
        """Call tool `name` (`server__tool`). Raises McpUnavailable (retry) or McpToolUnknown."""
        spec = self.owner(name)
        if spec is None:
            raise McpToolUnknown(f"no MCP server serves {name!r}")
        try:
            async with _Session(spec, self.connect_timeout) as client:
                tools = await client.list_tools()
                found = next(
                    (t for t in tools.tools if exposed_name(spec.name, t.name) == name), None
                )
                if found is None:
                    offered = ", ".join(exposed_name(spec.name, t.name) for t in tools.tools)
                    raise McpToolUnknown(
                        f"MCP server {spec.name!r} has no tool {name!r}; it offers {offered}"
                    )
                meta = cast(
                    mcp_types.RequestParamsMeta,
                    {
                        CALL_ID_META: call_id,
                        AGENT_ID_META: agent_id,
                        IDEMPOTENCY_KEY_META: idempotency_key(agent_id, call_id),
                    },
                )
                result = await client.call_tool(found.name, arguments, meta=meta)
        except (McpToolUnknown, McpUnavailable, asyncio.CancelledError, TimeoutError):
            raise
        except Exception as err:
            raise McpUnavailable(
                f"MCP server {spec.name!r} ({spec.address}) failed: {describe(err)}"
            ) from err
        return McpResult(text=result_text(result), is_error=result.is_error)

    async def _list(self, spec: McpServerSpec) -> list[ToolDescription]:
        async with _Session(spec, self.connect_timeout) as client:
            listing = await client.list_tools()
        tools = []
        for mcp_tool in listing.tools:
            name = exposed_name(spec.name, mcp_tool.name)
            if not TOOL_NAME.match(name):
                log.warning(
                    "MCP tool %s of %s: name too long for a model, skipped", name, spec.name
                )
                continue
            hints = mcp_tool.annotations
            policy = ToolPolicy(
                timeout_seconds=self.policy.timeout_seconds,
                retries=self.policy.retries,
                read_only=bool(hints and hints.read_only_hint),
                # Only when the server says so: the spec's default for the hint is "maybe".
                requires_confirmation=self.policy.requires_confirmation
                or bool(hints and hints.destructive_hint),
            )
            description = mcp_tool.description or mcp_tool.title or mcp_tool.name
            tools.append(
                ToolDescription(
                    name=name,
                    function=function_tool(name, description, mcp_tool.input_schema),
                    policy=policy,
                    source=spec.name,
                )
            )
        return tools


class _Session:
    """A connected `mcp.Client`, or McpUnavailable within `timeout` seconds."""

    def __init__(self, spec: McpServerSpec, timeout: float) -> None:
        self.spec = spec
        self.timeout = timeout
        self.client = Client(spec.target(), cache=None)

    async def __aenter__(self) -> Client:
        try:
            async with asyncio.timeout(self.timeout):
                return await self.client.__aenter__()
        except TimeoutError:
            raise McpUnavailable(
                f"MCP server {self.spec.name!r} ({self.spec.address}) did not answer within "
                f"{self.timeout:g} s"
            ) from None
        except asyncio.CancelledError:
            raise
        except Exception as err:
            raise McpUnavailable(
                f"MCP server {self.spec.name!r} ({self.spec.address}) is unreachable: "
                f"{describe(err)}"
            ) from err

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self.client.__aexit__(*exc)
        except Exception as err:  # closing a broken session must not hide the call's outcome
            log.debug("closing MCP session %s: %s", self.spec.name, describe(err))


def result_text(result: mcp_types.CallToolResult) -> str:
    """The result as text for the model: text blocks as they are, other content summarised."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        elif isinstance(block, mcp_types.ImageContent | mcp_types.AudioContent):
            parts.append(f"[{block.mime_type} content, {len(block.data) * 3 // 4} bytes]")
        elif isinstance(block, mcp_types.ResourceLink):
            parts.append(f"[resource {block.uri}]")
        elif isinstance(block, mcp_types.EmbeddedResource):
            resource = block.resource
            text = getattr(resource, "text", None)
            parts.append(text if isinstance(text, str) else f"[resource {resource.uri}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    return "\n".join(parts)


def describe(err: BaseException) -> str:
    """The leaf causes of an error, readably: anyio wraps them in nested exception groups."""
    leaves = list(_leaves(err))
    return "; ".join(f"{str(e) or type(e).__name__}" for e in leaves) or type(err).__name__


def _leaves(err: BaseException) -> Sequence[BaseException]:
    if isinstance(err, BaseExceptionGroup):
        return [leaf for inner in err.exceptions for leaf in _leaves(inner)]
    return [err]
