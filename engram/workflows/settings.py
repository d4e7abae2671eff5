"""The settings an agent was created with (its AgentConfig), typed: what workflow code decides by.

The gateway fills them from the AgentConfig message (engram/gateway/agent_config.py) and an Edit
changes them (engram/workflows/edits.py). States recorded before they existed carry only the
AgentConfig as proto3 JSON (`AgentSpec.config`); `settings_from_config` turns that into settings
when such a state is loaded, as pure data, so an old history replays with the same commands.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from engram.vocabulary import DoubleTexting


@dataclass(frozen=True)
class AgentSettings:
    # A run's bounds: steps (0: autonomy.DEFAULT_MAX_STEPS), seconds of wall clock, sleep
    # included, and tokens (0: no bound).
    max_steps: int = 0
    max_duration_seconds: float = 0.0
    max_run_tokens: int = 0
    # None leaves the endpoint's default temperature.
    temperature: float | None = None
    # 0: prompt.DEFAULT_CONTEXT_TOKENS.
    max_context_tokens: int = 0
    enable_thinking: bool = False
    enable_observation: bool = False
    double_texting: DoubleTexting = DoubleTexting.QUEUE
    # The model gets no `recall` tool (workflows/recall.py).
    disable_recall: bool = False
    # Tried in order when `model` fails (the LLM activity walks the chain).
    fallback_models: list[str] = field(default_factory=list)
    # USD the agent may spend over its life (0: no budget; workflows/cost.py).
    max_cost_usd: float = 0.0


def settings_from_config(config: dict[str, Any]) -> AgentSettings:
    """The settings an AgentConfig in proto3 JSON (camelCase keys, int64 as strings, a Duration as
    "1.5s") stands for; a key left out is the field's default, a key not listed is ignored."""
    return AgentSettings(
        max_steps=int(config.get("maxSteps") or 0),
        max_duration_seconds=duration_seconds(config.get("maxDuration")),
        max_run_tokens=int(config.get("maxRunTokens") or 0),
        temperature=float(config.get("temperature") or 0) or None,
        max_context_tokens=int(config.get("maxContextTokens") or 0),
        enable_thinking=bool(config.get("enableThinking")),
        enable_observation=bool(config.get("enableObservation")),
        double_texting=DoubleTexting(config.get("doubleTexting") or DoubleTexting.QUEUE),
        disable_recall=bool(config.get("disableRecall")),
        fallback_models=[str(m) for m in config.get("fallbackModels") or []],
        max_cost_usd=float(config.get("maxCostUsd") or 0),
    )


def duration_seconds(duration: Any) -> float:
    """A proto3 JSON Duration ("90s", "1.500s") in seconds; 0 when unset."""
    if not duration:
        return 0.0
    return float(str(duration).removesuffix("s"))


def migrated_settings(
    config: dict[str, Any], temperature: float | None, max_context_tokens: int
) -> AgentSettings:
    """The settings of a state recorded before they existed: its `config`, but the temperature
    and context budget from the typed fields it kept them in then. Those are what it sent: the
    gateway read the temperature as the float32 it is (0.699999988...), which proto3 JSON rounds
    to its shortest form (0.7) in `config`."""
    settings = settings_from_config(config)
    return replace(
        settings,
        temperature=settings.temperature if temperature is None else temperature,
        max_context_tokens=max_context_tokens or settings.max_context_tokens,
    )
