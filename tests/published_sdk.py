"""The published client, engram-sdk 0.1.1, in a virtualenv of its own with nothing of ours.

Compatibility tests run it against today's engine. It comes from the package index, so it is
installed once into `.venv-sdk/` at the top of the checkout and reused by every later test run;
`./scripts/test` makes it before the tests (`python -m tests.published_sdk`), and the `sdk_python`
fixture makes it when it is missing.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from pathlib import Path

REQUIREMENT = "engram-sdk==0.1.1"
VENV = Path(__file__).resolve().parent.parent / ".venv-sdk"
# Written last, naming what was installed: a half-made or older virtualenv is made again.
DONE = VENV / ".installed"


def published_sdk_python(venv: Path = VENV) -> Path:
    """The virtualenv's python, the virtualenv made first if it is missing or incomplete."""
    done = venv / DONE.name
    python = venv / "bin" / "python"
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        # Two test runs at once make it once.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists() and done.read_text() == REQUIREMENT and python.exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", REQUIREMENT],
            check=True,
        )
        done.write_text(REQUIREMENT)
    return python


if __name__ == "__main__":
    print(published_sdk_python())
