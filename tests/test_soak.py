"""A small chaos soak in CI: each turn once, in order and complete, despite random SIGKILLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import soak

pytestmark = pytest.mark.chaos


def test_small_chaos_soak(tmp_path: Path) -> None:
    result = soak(
        tmp_path, agents=10, turns=5, kill_every=1.5, time_limit=150, seed=7, token_delay=0.1
    )
    assert sum(result.kills.values()) >= 3, result
    assert result.problems == [], result.problems
