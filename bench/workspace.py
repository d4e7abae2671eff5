"""What a workspace step costs: `python -m bench.workspace [--steps 50] [--files 200]`.

The same file operation three ways, in one run, on one disk: written directly (open, write,
close: what a tool that kept no record would do); through `write_file` (the workspace's lock, the
tree reset to HEAD and cleaned, the write, `git add -A` and a commit fsynced with its idempotency
key and result: what makes the step undoable and done once across crashes); and as the one call
of a `run_script` replayed from its journal (the sandbox and a Python start on top, per run of a
script). Each in a workspace that already holds `--files` files, as a real project does; the
median of `--steps` of each, and the ratios. Writes bench/results/workspace-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import RESULTS
from engram.tools import ToolContext
from engram.tools.scripts import ScriptJournal, ScriptStep
from engram.tools.workspace.store import ROOT_ENV


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def measure(steps: int, files: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as root:
        os.environ[ROOT_ENV] = str(Path(root) / "workspaces")
        # Imported after the root is set; it reads it per call anyway.
        from engram.tools import workspace

        def ctx(call: str) -> ToolContext:
            return ToolContext(call_id=call, agent_id="bench")

        project = Path(root) / "project"
        for i in range(files):
            path = project / f"pkg{i % 10}" / f"module_{i}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"VALUE_{i} = {i}\n" * 20)
        workspace.write_file(ctx("seed"), "README", "bench\n")
        tree = Path(os.environ[ROOT_ENV]) / "_default" / "bench" / "tree"
        with workspace.workspace_of(ctx("import")).open() as ws:  # the same project, one commit
            for folder in project.iterdir():
                (ws.tree / folder.name).mkdir()
                for file in folder.iterdir():
                    (ws.tree / folder.name / file.name).write_text(file.read_text())
            ws.commit("bench:import", "import", {})

        direct, tool, script = [], [], []
        for step in range(steps):
            content = f"step {step}\n" * 40
            t0 = time.perf_counter()
            with open(project / "notes.txt", "w") as handle:
                handle.write(content)
            direct.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            done = workspace.write_file(ctx(f"w{step}"), "notes.txt", content)
            tool.append(time.perf_counter() - t0)

            journal = ScriptJournal(
                steps=[
                    ScriptStep(
                        name="write_file",
                        arguments=json.dumps({"path": "notes.txt", "content": content}),
                        output=json.dumps(done),
                    )
                ]
            )
            source = f"tools.write_file(path='notes.txt', content={content!r})\n"
            t0 = time.perf_counter()
            ran = workspace.run_script(
                ToolContext(call_id="s", agent_id="bench", journal=journal), source
            )
            script.append(time.perf_counter() - t0)
            assert ran["exit_code"] == 0, ran
        assert (tree / "notes.txt").read_text() == content
        return {
            "steps": steps,
            "files_in_workspace": files + 1,
            "direct_write_ms": median_ms(direct),
            "write_file_tool_ms": median_ms(tool),
            "run_script_replay_ms": median_ms(script),
            "tool_over_direct": round(statistics.median(tool) / statistics.median(direct)),
            "script_over_tool": round(statistics.median(script) / statistics.median(tool), 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--files", type=int, default=200)
    args = parser.parse_args()
    results = {"date": datetime.date.today().isoformat(), **measure(args.steps, args.files)}
    print(json.dumps(results, indent=1))
    target = RESULTS / f"workspace-{results['date']}.json"
    target.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
