"""Runs inside the sandbox (`python3 -c <this file>`): a model's script, with a `tools` module
whose calls go to the activity over the process's stdin and stdout, one JSON line each way.

The script's own stdout is sent where its stderr goes (the output the model is shown); the
runner keeps the original stdout for the calls. Kept to the standard library and to Python 3.8's
syntax: it runs on whatever python3 the sandbox has, not on the worker's.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import types

_calls_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
_calls_in = os.fdopen(os.dup(0), "r", encoding="utf-8")
os.dup2(2, 1)
_null = os.open(os.devnull, os.O_RDONLY)
os.dup2(_null, 0)
sys.stdout = open(1, "w", encoding="utf-8", errors="replace", buffering=1, closefd=False)
sys.stderr = open(2, "w", encoding="utf-8", errors="replace", buffering=1, closefd=False)


class ToolError(Exception):
    """A tool call that failed or was refused (denied by a person, not allowed, bad input)."""


def _call(name: str, arguments: dict[str, object]) -> object:
    try:
        line = json.dumps({"name": name, "arguments": arguments})
    except (TypeError, ValueError) as err:
        raise TypeError(f"tools.{name}: arguments must be JSON values ({err})") from None
    _calls_out.write(line + "\n")
    _calls_out.flush()
    answer = _calls_in.readline()
    if not answer:
        os._exit(3)  # the activity stopped listening: it makes this call first
    reply = json.loads(answer)
    if reply.get("is_error"):
        raise ToolError(reply.get("output", ""))
    output = reply.get("output", "")
    try:
        return json.loads(output)
    except ValueError:
        return output


class _Tools(types.ModuleType):
    ToolError = ToolError

    def call(self, name: str, **arguments: object) -> object:
        """`tools.call("name", arg=...)`: the same as `tools.name(arg=...)`."""
        return _call(name, arguments)

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)

        def call(*args: object, **arguments: object) -> object:
            if args:
                raise TypeError(f"tools.{name}: pass arguments by name: tools.{name}(path=...)")
            return _call(name, arguments)

        call.__name__ = name
        return call


def main() -> None:
    start = json.loads(_calls_in.readline())
    tools = _Tools("tools")
    sys.modules["tools"] = tools
    sys.path.insert(0, os.getcwd())
    scope = {"__name__": "__main__", "tools": tools, "ToolError": ToolError}
    try:
        exec(compile(start["script"], "<script>", "exec"), scope)
    except SystemExit:
        raise
    except BaseException as err:
        # The script's frames only: the runner's own are noise to the model.
        traceback.print_exception(
            type(err), err, err.__traceback__.tb_next if err.__traceback__ else None
        )
        sys.exit(1)


main()
