"""Code mode's journal: what a script tool (`run_script`) has been answered so far.

A script runs again from its start each time it makes a tool call it has not been answered yet:
its activity stops it there and asks the workflow to make that call (`NeedsCall`). The workflow
makes it as its own tool step (approval policy, activity, events, as if the model had made it),
adds the result to the journal and runs the script again, which is answered from the journal up
to the new call. So every effect is one step in history, made once; the script is only ever
re-read. These types cross the workflow/activity boundary: plain dataclasses, workflow-safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The tool the workflow runs this way.
SCRIPT_TOOL = "run_script"
# Calls one script may make; the next one raises inside it.
MAX_SCRIPT_CALLS = 50
# What of one call's output the journal keeps (and so the script sees): the model's own share.
STEP_OUTPUT_CHARS = 16 * 1024


@dataclass(kw_only=True)
class ScriptCall:
    """A call a script made that its journal has no answer for yet."""

    name: str
    # A JSON object's text.
    arguments: str
    # What the script tool keeps from run to run (the workspace's commit it started on).
    state: str = ""


@dataclass(kw_only=True)
class ScriptStep:
    """A call the workflow made for a script, with its result."""

    name: str
    arguments: str
    output: str
    is_error: bool = False


@dataclass(kw_only=True)
class ScriptJournal:
    state: str = ""
    steps: list[ScriptStep] = field(default_factory=list)


class NeedsCall(Exception):
    """Raised by a script tool: stop here; make `call`, then run the script again."""

    def __init__(self, call: ScriptCall) -> None:
        super().__init__(f"the script calls {call.name}")
        self.call = call
