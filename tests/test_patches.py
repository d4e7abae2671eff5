"""The patch registry (engram/workflows/patches.py) against the code that takes the patches."""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path

import pytest

from engram.workflows import patches
from engram.workflows.patches import COMMAND_SHAPING, PATCHES, Patch, Stage

ROOT = Path(__file__).resolve().parent.parent
ENGRAM = ROOT / "engram"
REGISTRY = ENGRAM / "workflows" / "patches.py"


def _sources() -> dict[Path, ast.Module]:
    return {
        path: ast.parse(path.read_text(), str(path))
        for path in sorted(ENGRAM.rglob("*.py"))
        if path != REGISTRY
    }


def _checked_patches() -> dict[str, list[str]]:
    """The registry's constants passed to `patches.check`, with where."""
    found: dict[str, list[str]] = {}
    for path, tree in _sources().items():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "check"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "patches"
            ):
                (arg,) = node.args
                assert isinstance(arg, ast.Attribute), f"{path}:{node.lineno}: pass patches.NAME"
                found.setdefault(arg.attr, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_the_code_calls_temporal_patch_functions_only_through_the_registry() -> None:
    direct = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path, tree in _sources().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute | ast.Name)
        and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
        in {"patched", "deprecate_patch"}
    ]
    assert direct == [], (
        "register the patch in engram/workflows/patches.py and call patches.check(patches.NAME)"
    )


def test_every_patch_in_use_is_registered_and_every_live_one_is_in_use() -> None:
    by_name = {name: value for name, value in vars(patches).items() if isinstance(value, Patch)}
    checked = _checked_patches()
    assert set(checked) <= set(by_name), "patches.check of a name the registry lacks"
    for name, patch in by_name.items():
        if patch.stage == Stage.REMOVED:
            assert name not in checked, f"{patch.id} is marked removed but still checked"
        else:
            assert name in checked, f"{patch.id} is {patch.stage} but no code checks it"
    assert set(by_name.values()) == set(PATCHES), "every Patch is listed in PATCHES"


def test_each_patch_has_one_id_a_released_version_and_a_consistent_stage() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    ids = [p.id for p in PATCHES]
    assert len(ids) == len(set(ids))
    for patch in PATCHES:
        assert patch.changed and patches._release(patch.added_in) <= patches._release(version)
        assert bool(patch.deprecated_in) == (patch.stage != Stage.ADDED), patch.id
        assert bool(patch.removed_in) == (patch.stage == Stage.REMOVED), patch.id
        assert patch.next_step()


def test_a_removed_patch_cannot_be_checked() -> None:
    gone = Patch("gone", "nothing", "0.1.0", Stage.REMOVED, "0.2.0", "0.3.0")
    with pytest.raises(ValueError, match="removed"):
        patches.check(gone)


def _current(dotted: str) -> object:
    module_name, _, rest = dotted.partition(".workflows.")
    module, *attributes = rest.split(".")
    value: object = importlib.import_module(f"{module_name}.workflows.{module}")
    for attribute in attributes:
        value = getattr(value, attribute)
    return value


@pytest.mark.parametrize("name", COMMAND_SHAPING)
def test_command_shaping_constants_keep_their_recorded_values(name: str) -> None:
    """A constant that decides which commands a workflow issues changed.

    Running agents replay their histories on the new value, and a different count of LLM calls,
    an archive or a compaction at another turn fails their replay. To change one: keep the old
    value on the old path behind a new patch (a `Patch` in engram/workflows/patches.py, checked
    with `patches.check`), record a history that crosses the threshold
    (`python -m tests.record_histories`), then write the new value in
    `patches.COMMAND_SHAPING`.
    """
    assert _current(name) == COMMAND_SHAPING[name], (
        f"{name} changed without a patch: see this test's docstring"
    )
