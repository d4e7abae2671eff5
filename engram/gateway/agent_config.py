"""The AgentConfig of a CreateAgent request as the typed settings the agent's workflow reads."""

from __future__ import annotations

from engram.v1 import agent_pb2
from engram.vocabulary import DoubleTexting
from engram.workflows.settings import AgentSettings, duration_seconds


def agent_settings(config: agent_pb2.AgentConfig) -> AgentSettings:
    """The settings of a checked config (engram/gateway/validation.py)."""
    return AgentSettings(
        max_steps=config.max_steps,
        # Through proto3 JSON, as a state recorded before settings existed is read.
        max_duration_seconds=duration_seconds(config.max_duration.ToJsonString()),
        max_run_tokens=config.max_run_tokens,
        # The float32 as Python reads it (0.699999988... for 0.7): what agents have always sent.
        temperature=config.temperature or None,
        max_context_tokens=config.max_context_tokens,
        enable_thinking=config.enable_thinking,
        enable_observation=config.enable_observation,
        double_texting=DoubleTexting(config.double_texting or DoubleTexting.QUEUE),
        disable_recall=config.disable_recall,
        fallback_models=list(config.fallback_models),
        max_cost_usd=config.max_cost_usd,
    )
