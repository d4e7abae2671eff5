"""Regenerate the Python stubs in engram/ from proto/: `python scripts/gen_proto.py`."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ("engram/v1/agent.proto", "engram/relay/v1/relay.proto")


def generate(out_dir: Path) -> None:
    """Write the stubs for every proto under out_dir (a package root)."""
    well_known = str(resources.files("grpc_tools") / "_proto")
    for proto in PROTOS:
        args = [
            "protoc",
            f"-I{ROOT / 'proto'}",
            f"-I{well_known}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            proto,
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {proto}")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
