"""The strict workflow sandbox (engram.worker.workflow_runner(strict=True)), which the replay and
in-process tests run under, imports Engram's workflow code into the sandbox instead of passing it
through, so nondeterminism there (a clock, randomness, I/O) fails those tests."""

from __future__ import annotations

import ast
from pathlib import Path

from engram.worker import STRICT_PASSTHROUGH, workflow_runner

WORKFLOWS = Path(__file__).resolve().parent.parent / "engram" / "workflows"


def test_the_strict_sandbox_passes_through_no_workflow_code() -> None:
    passed = workflow_runner(strict=True).restrictions.passthrough_modules
    assert "engram" not in passed and "engram.workflows" not in passed
    # Only the data model: dataclasses shared with the activities and clients passed through.
    assert sorted(m for m in passed if m.startswith("engram.workflows")) == [
        "engram.workflows.settings",
        "engram.workflows.types",
    ]
    # The rest of Engram is passed through: activities, vocabulary, codec, tools.
    assert {"engram.activities", "engram.vocabulary", "engram.codec", "engram.tools"} <= set(
        STRICT_PASSTHROUGH
    )


def test_workflow_modules_do_not_pass_workflow_code_through_themselves() -> None:
    """`workflow.unsafe.imports_passed_through()` overrides the sandbox's settings: a workflow
    module importing engram.workflows inside it would pass that code through even when strict."""
    offending = []
    for path in sorted(WORKFLOWS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.With) and "imports_passed_through" in ast.unparse(node):
                offending += [
                    f"{path.name}:{inner.lineno}"
                    for inner in ast.walk(node)
                    if isinstance(inner, ast.ImportFrom)
                    and (inner.module or "").startswith("engram.workflows")
                ]
    assert offending == []
