"""Worker tools: plain Python functions an agent's model may call, and the registry that holds them.

A tool is a sync or async function marked with `@tool`. Its signature is the contract: pydantic
builds the JSON schema the model is shown from the type hints, and validates the model's arguments
against the same model before the function runs, so the schema and the check cannot disagree. The
docstring's first paragraph is the tool's description and its `Args:` section describes each
parameter. A parameter annotated `ToolContext` is filled in by Engram and hidden from the model.
"""

from __future__ import annotations

import importlib
import inspect
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar, cast, get_type_hints, overload

import pydantic
from pydantic.json_schema import GenerateJsonSchema

from engram.tools.scripts import ScriptJournal
from engram.workflows.function_tool import function_tool

# OpenAI's rule for function names; Anthropic's and most local servers' are the same or looser.
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_TIMEOUT = timedelta(seconds=60)
DEFAULT_RETRIES = 2
_MARK = "__engram_tool__"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, kw_only=True)
class ToolPolicy:
    """How a tool is run: its time budget per attempt and how often a failure is retried."""

    timeout_seconds: float = DEFAULT_TIMEOUT.total_seconds()
    # Attempts after the first; an exception on the last attempt is shown to the model.
    retries: int = DEFAULT_RETRIES
    # For the workflow: ask the user before running it.
    requires_confirmation: bool = False
    # For the workflow: it changes nothing, so it is safe to run again or in parallel.
    read_only: bool = False
    # For the workflow: it answers in moments, so a read-only one may run as a local activity,
    # in the workflow's own worker, without a round trip through the server.
    fast: bool = False


@dataclass(kw_only=True)
class ToolDescription:
    """A tool as the model is offered it (an OpenAI function tool), with its policy."""

    name: str
    # {"type": "function", "function": {"name", "description", "parameters"}}
    function: dict[str, Any]
    policy: ToolPolicy = field(default_factory=ToolPolicy)
    # "worker" for a tool of this worker, else the name of the MCP server that serves it.
    source: str = "worker"


class ToolError(Exception):
    """Raised by a tool for a failure that retrying cannot fix (a missing file, a refused URL).

    The message is shown to the model at once, as the call's error result.
    """


def idempotency_key(agent_id: str, call_id: str) -> str:
    return f"{agent_id}:{call_id}"


@dataclass(kw_only=True)
class ToolContext:
    """What a tool may know about the call it serves. Declare a parameter of this type to get it."""

    # Stable across retries of the same call: the key for making side effects idempotent.
    call_id: str
    agent_id: str
    attempt: int = 1
    # What the previous attempt last heartbeated, for resuming long work.
    previous_details: Any = None
    # A script tool's calls answered so far (engram.tools.scripts); None for any other tool.
    journal: ScriptJournal | None = None
    _details: list[Any] = field(default_factory=list, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def idempotency_key(self) -> str:
        """`<agent id>:<call id>`: unique among every call of every agent (a call id alone is
        unique only within its agent), and the same on every attempt of this call."""
        return idempotency_key(self.agent_id, self.call_id)

    def heartbeat(self, details: Any = None) -> None:
        """Report progress; `details` are kept so a retried attempt can resume from them.

        Safe to call from a sync tool's thread: the activity sends it from its event loop.
        """
        with self._lock:
            self._details[:] = [details]

    def latest_details(self) -> list[Any]:
        with self._lock:
            return list(self._details)


class _NoTitles(GenerateJsonSchema):
    """Pydantic's schema without the generated `title`s: noise to a model, and tokens."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


@dataclass(kw_only=True)
class WorkerTool:
    """A decorated function, with the pydantic model of its arguments."""

    name: str
    description: str
    fn: Callable[..., Any]
    policy: ToolPolicy
    arguments: type[pydantic.BaseModel]
    context_parameter: str | None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def describe(self) -> ToolDescription:
        parameters = self.arguments.model_json_schema(schema_generator=_NoTitles)
        parameters.pop("title", None)
        return ToolDescription(
            name=self.name,
            function=function_tool(self.name, self.description, parameters),
            policy=self.policy,
        )

    def bind(self, arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        """The keyword arguments to call the function with; raises pydantic.ValidationError."""
        model = self.arguments.model_validate(arguments)
        kwargs = {name: getattr(model, name) for name in type(model).model_fields}
        if self.context_parameter is not None:
            kwargs[self.context_parameter] = context
        return kwargs

    def run(self, kwargs: dict[str, Any]) -> Any:
        """Call the function: a coroutine for an async tool, the result for a sync one."""
        return self.fn(**kwargs)


@overload
def tool(fn: F, /) -> F: ...


@overload
def tool(
    *,
    name: str | None = None,
    timeout: timedelta = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    requires_confirmation: bool = False,
    read_only: bool = False,
    fast: bool = False,
) -> Callable[[F], F]: ...


def tool(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    timeout: timedelta = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    requires_confirmation: bool = False,
    read_only: bool = False,
    fast: bool = False,
) -> F | Callable[[F], F]:
    """Mark a function as a tool; `@tool` or `@tool(name=..., timeout=..., retries=...)`.

    `fast=True` (with `read_only=True`) says the tool answers in moments: it then runs as a local
    activity in the workflow's worker, with a regular activity as fallback. A local activity may
    run again if its workflow task does, hence read-only tools only.

    The function is returned unchanged (still callable as before); the registry finds the mark.
    """
    if timeout <= timedelta(0):
        raise ValueError("a tool's timeout must be positive")
    if retries < 0:
        raise ValueError("a tool's retries cannot be negative")
    if fast and not read_only:
        raise ValueError("a fast tool must be read_only: a local activity may run again")
    policy = ToolPolicy(
        timeout_seconds=timeout.total_seconds(),
        retries=retries,
        requires_confirmation=requires_confirmation,
        read_only=read_only,
        fast=fast,
    )

    def mark(function: F) -> F:
        setattr(function, _MARK, _make_tool(function, name or function.__name__, policy))
        return function

    return mark(fn) if fn is not None else mark


def worker_tool_of(obj: object) -> WorkerTool | None:
    """The tool an object was marked as, if it was."""
    found = getattr(obj, _MARK, None)
    return found if isinstance(found, WorkerTool) else None


def _make_tool(fn: Callable[..., Any], name: str, policy: ToolPolicy) -> WorkerTool:
    if not TOOL_NAME.match(name):
        raise ValueError(f"tool name {name!r} must be 1-64 letters, digits, '_' or '-'")
    if "__" in name:
        # `server__tool` is how MCP tools are named; a worker tool must not look like one.
        raise ValueError(f"tool name {name!r} must not contain '__'")
    summary, arg_docs = _parse_docstring(inspect.getdoc(fn) or "")
    hints = get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    context_parameter = None
    for parameter in inspect.signature(fn).parameters.values():
        annotation = hints.get(parameter.name, Any)
        if annotation is ToolContext:
            context_parameter = parameter.name
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"tool {name!r}: *args and **kwargs cannot be described to a model")
        default = ... if parameter.default is parameter.empty else parameter.default
        description = arg_docs.get(parameter.name)
        fields[parameter.name] = (annotation, pydantic.Field(default, description=description))
    arguments = pydantic.create_model(
        f"{name}_arguments",
        __config__=pydantic.ConfigDict(extra="forbid"),
        **fields,
    )
    return WorkerTool(
        name=name,
        description=summary or name,
        fn=fn,
        policy=policy,
        arguments=cast(type[pydantic.BaseModel], arguments),
        context_parameter=context_parameter,
    )


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The text before any `Args:` section, and each argument's description from it (Google style).

    Only `Args:` is special: the rest of the docstring (Returns:, Raises:, examples) stays in the
    description, where it helps the model.
    """
    lines = doc.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() in ("Args:", "Arguments:")), -1)
    if start < 0:
        return doc.strip(), {}
    args: dict[str, str] = {}
    current = None
    end = len(lines)
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if line.strip() and not line.startswith((" ", "\t")):
            end = i  # the next section
            break
        found = re.match(r"\s+(\*{0,2}\w+)(?:\s*\([^)]*\))?\s*:\s*(.*)", line)
        if found and (current is None or _indent(line) <= _indent(lines[start + 1])):
            current = found[1].lstrip("*")
            args[current] = found[2].strip()
        elif current is not None and line.strip():
            args[current] = f"{args[current]} {line.strip()}".strip()
    description = "\n".join([*lines[:start], *lines[end:]]).strip()
    return description, args


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


class ToolRegistry:
    """The worker tools this worker can run, by name."""

    def __init__(self, tools: Iterable[WorkerTool | Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, WorkerTool] = {}
        for item in tools:
            self.add(item)

    def add(self, item: WorkerTool | Callable[..., Any]) -> WorkerTool:
        found = item if isinstance(item, WorkerTool) else worker_tool_of(item)
        if found is None:
            raise TypeError(f"{item!r} is not a tool: mark it with @tool")
        existing = self._tools.get(found.name)
        if existing is not None and existing.fn is not found.fn:
            raise ValueError(
                f"two tools are named {found.name!r}: {_where(existing.fn)} and {_where(found.fn)}"
            )
        self._tools[found.name] = found
        return found

    def load_modules(self, modules: str | Iterable[str]) -> list[WorkerTool]:
        """Import each module (a comma-separated string or a list) and add every tool in it.

        A module that imports a tool from elsewhere (say, a built-in) enables that tool too.
        """
        names = modules.split(",") if isinstance(modules, str) else list(modules)
        added: list[WorkerTool] = []
        for module_name in (n.strip() for n in names):
            if not module_name:
                continue
            module = importlib.import_module(module_name)
            tools = [t for t in map(worker_tool_of, vars(module).values()) if t is not None]
            if not tools:
                raise ValueError(f"module {module_name!r} has no @tool functions")
            added += [self.add(t) for t in tools]
        return added

    def get(self, name: str) -> WorkerTool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return sorted(self._tools)

    def describe(self) -> list[ToolDescription]:
        return [self._tools[name].describe() for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)


def _where(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
