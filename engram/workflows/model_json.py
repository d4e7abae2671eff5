"""JSON from outside the workflow (the model's tool arguments, a person's edited input), parsed
within a budget.

Workflow code that raises anything but a handled error fails its workflow task, and the task fails
again on every retry: the agent is wedged. The model's output can be steered by any page or
document it reads, so its JSON is parsed here, where a parse can only end in a value or an
`UnusableJSON` with a reason the model (or the person) is shown.
"""

from __future__ import annotations

import json
from typing import Any

from temporalio import workflow

from engram.workflows import patches

# Tool arguments deeper than this are refused: nothing Engram's tools take is half as deep, and
# protobuf (a `structured` answer travels as a google.protobuf.Struct) refuses 100 levels.
MAX_DEPTH = 32
# Larger arguments are refused rather than carried in the agent's state and its history.
MAX_BYTES = 64 * 1024


class UnusableJSON(ValueError):
    """Why a JSON text cannot be used ("not valid JSON: ...", "nested deeper than ..."), for the
    caller to put in its own words."""


class NotAnObject(UnusableJSON):
    """Valid JSON, but not an object."""


def parse_object(text: str) -> dict[str, Any]:
    """`text` (empty means {}) as a JSON object within the budget, or UnusableJSON."""
    return _parse(text, enforce=True)


def parse_model_arguments(text: str) -> dict[str, Any]:
    """parse_object for workflow code deciding on the model's arguments: the budget applies to
    histories recorded since it existed (the marker is written only when it decides something)."""
    return _parse(text, enforce=False)


def _parse(text: str, *, enforce: bool) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as err:
        raise UnusableJSON(f"not valid JSON: {err}") from None
    except RecursionError:
        # Before the budget existed this failed the workflow task: no history got past it.
        raise UnusableJSON(f"nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(value, dict):
        raise NotAnObject(f"a JSON {type(value).__name__}, not an object")
    problem = over_budget(text, value)
    if problem and (enforce or not workflow.in_workflow() or patches.check(patches.JSON_BUDGET)):
        raise UnusableJSON(problem)
    return value


def over_budget(text: str, value: Any) -> str | None:
    """What of the budget `text` (parsed as `value`) passes, or None."""
    size = len(text.encode())
    if size > MAX_BYTES:
        return f"{size} bytes; the limit is {MAX_BYTES}"
    if depth(value) > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    return None


def depth(value: Any) -> int:
    """How deeply containers nest in `value` (a scalar is 0, {} or [] is 1), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level + 1)
        stack.extend((child, level + 1) for child in children)
    return deepest
