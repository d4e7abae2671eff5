"""A real MCP server for tests, written with the SDK's MCPServer (FastMCP before mcp 2).

    python tests/mcp_server.py --transport stdio
    python tests/mcp_server.py --transport http --port 8765      # http://127.0.0.1:8765/mcp

Tools: `add` (numbers), `record` (appends each call's idempotency key, from the request's
`_meta`, to the file named by ENGRAM_TEST_MCP_LOG, so a test can count executions), `fail`
(always answers with an error result) and `sleep` (slow, for timeouts and cancellation).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

CALL_ID_META = "engram/call_id"
IDEMPOTENCY_KEY_META = "engram/idempotency_key"
LOG_ENV = "ENGRAM_TEST_MCP_LOG"

server = MCPServer("engram-test-tools")


@server.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@server.tool()
def record(note: str, ctx: Context[Any]) -> str:
    """Record `note` under this call's idempotency key; says how often the key was seen."""
    meta = ctx.request_context.meta or {}
    key = str(meta.get(CALL_ID_META, ""))
    path = os.environ[LOG_ENV]
    with open(path, "a", encoding="utf-8") as log:
        unique = str(meta.get(IDEMPOTENCY_KEY_META, ""))
        log.write(json.dumps({"call_id": key, "idempotency_key": unique, "note": note}) + "\n")
    with open(path, encoding="utf-8") as log:
        seen = sum(1 for line in log if json.loads(line)["call_id"] == key)
    return f"recorded {note!r} for {key} ({seen} time{'s' if seen > 1 else ''})"


@server.tool()
def fail(reason: str) -> str:
    """Always fails, with `reason`."""
    raise ToolError(reason)


@server.tool()
async def sleep(seconds: float) -> str:
    """Wait `seconds`, then answer."""
    await asyncio.sleep(seconds)
    return f"slept {seconds} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--port", type=int, default=8765)
    options = parser.parse_args()
    if options.transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=options.port)


if __name__ == "__main__":
    main()
