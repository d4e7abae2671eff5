"""The typed settings workflow code decides by: made from an AgentConfig at the gateway, from the
proto3 JSON `config` of a state recorded before they existed, and changed by an Edit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from temporalio.client import WorkflowHistory

from engram.codec.payload_codec import PLAIN
from engram.gateway.agent_config import agent_settings
from engram.v1 import agent_pb2
from engram.vocabulary import DoubleTexting
from engram.workflows import autonomy, double_texting, edits
from engram.workflows.prompt import DEFAULT_CONTEXT_TOKENS, context_budget
from engram.workflows.settings import AgentSettings, migrated_settings, settings_from_config
from engram.workflows.types import AgentSpec, AgentState, EditInput, RunState, Turn

HISTORIES = sorted((Path(__file__).parent / "histories").glob("agent-*.json"))


def full_config() -> agent_pb2.AgentConfig:
    config = agent_pb2.AgentConfig(
        max_steps=7,
        temperature=0.5,
        max_context_tokens=2048,
        enable_thinking=True,
        enable_observation=True,
        auto_approve_read_only=True,
        autonomous=True,
        max_run_tokens=2**40,
        double_texting="steer",
    )
    config.max_duration.FromNanoseconds(90_250_000_000)
    return config


FULL = AgentSettings(
    max_steps=7,
    max_duration_seconds=90.25,
    max_run_tokens=2**40,
    temperature=0.5,
    max_context_tokens=2048,
    enable_thinking=True,
    enable_observation=True,
    double_texting=DoubleTexting.STEER,
)


# --- conversion -------------------------------------------------------------------------------


def test_every_key_of_the_proto3_json_becomes_its_setting() -> None:
    config = MessageToDict(full_config())
    assert config["maxRunTokens"] == str(2**40) and config["maxDuration"] == "90.250s"
    assert settings_from_config(config) == FULL


def test_a_key_left_out_or_zero_is_the_default() -> None:
    assert settings_from_config({}) == AgentSettings()
    assert settings_from_config(MessageToDict(agent_pb2.AgentConfig())) == AgentSettings()
    zeros = {"maxSteps": 0, "temperature": 0, "maxDuration": "0s", "doubleTexting": ""}
    assert settings_from_config(zeros) == AgentSettings()
    defaults = AgentSettings()
    assert (defaults.temperature, defaults.double_texting) == (None, DoubleTexting.QUEUE)


def test_keys_that_are_no_setting_are_ignored() -> None:
    config = {"autonomous": True, "autoApproveReadOnly": True, "fromANewerGateway": 3}
    assert settings_from_config(config) == AgentSettings()
    # ...and stay in the spec's config, which GetAgent returns.
    assert AgentSpec(agent_id="a", goal="", model="m", config=dict(config)).config == config


@pytest.mark.parametrize("duration", ["90s", "1.500s", "0.000000001s", "315576000000s"])
def test_the_gateway_reads_a_config_as_its_proto3_json_reads(duration: str) -> None:
    config = full_config()
    config.max_duration.FromJsonString(duration)
    assert agent_settings(config) == settings_from_config(MessageToDict(config))
    assert agent_settings(agent_pb2.AgentConfig()) == AgentSettings()


def test_the_gateway_keeps_the_temperature_it_always_sent() -> None:
    # 0.7 is no float32: proto3 JSON shows it rounded, the agent was sent the float32 itself.
    config = agent_pb2.AgentConfig(temperature=0.7)
    assert MessageToDict(config) == {"temperature": 0.7}
    assert agent_settings(config).temperature == config.temperature != 0.7


# --- migrating a state recorded before settings existed ---------------------------------------


def decoded_state(spec: dict[str, Any]) -> AgentState:
    [payload] = PLAIN.payload_converter.to_payloads([{"spec": spec, "created_at": 1.0}])
    [state] = PLAIN.payload_converter.from_payloads([payload], [AgentState])
    assert isinstance(state, AgentState)
    return state


def test_an_old_state_gets_its_settings_from_its_config_as_it_loads() -> None:
    config = MessageToDict(full_config())
    spec = {
        "agent_id": "a",
        "goal": "",
        "model": "m",
        "tools": [],
        "config": config,
        "temperature": 0.5,
        "max_context_tokens": 2048,
        "parent_id": "",
    }
    state = decoded_state(spec)
    assert state.spec.settings == FULL
    assert state.spec.config == config  # kept as it was, for GetAgent
    # The typed fields of then are moved, not copied: the settings are the one place to read.
    assert (state.spec.temperature, state.spec.max_context_tokens) == (None, 0)


def test_the_typed_fields_of_an_old_state_win_over_its_config() -> None:
    config = {"temperature": 0.7, "maxContextTokens": 200}
    assert migrated_settings(config, 0.699999988079071, 200).temperature == 0.699999988079071
    assert migrated_settings(config, None, 0) == AgentSettings(
        temperature=0.7, max_context_tokens=200
    )
    spec = AgentSpec(agent_id="a", goal="", model="m", temperature=0.25, max_context_tokens=99)
    assert spec.settings == AgentSettings(temperature=0.25, max_context_tokens=99)


def test_a_state_with_settings_keeps_them_whatever_its_config() -> None:
    settings = AgentSettings(max_steps=3, double_texting=DoubleTexting.REJECT)
    spec = AgentSpec(agent_id="a", goal="", model="m", config={"maxSteps": 9}, settings=settings)
    state = AgentState(spec=spec, created_at=1.0)
    [payload] = PLAIN.payload_converter.to_payloads([state])
    assert json.loads(payload.data)["spec"]["settings"]["double_texting"] == "reject"
    [again] = PLAIN.payload_converter.from_payloads([payload], [AgentState])
    assert again == state and again.spec.settings == settings
    # Defaults given explicitly are settings too, not a state to migrate.
    explicit = AgentSpec(
        agent_id="a", goal="", model="m", config={"maxSteps": 9}, settings=AgentSettings()
    )
    assert explicit.settings.max_steps == 0


def old_reading(spec: dict[str, Any]) -> dict[str, Any]:
    """What workflow code read of an old spec before settings existed, read as it read it."""
    config = spec["config"]
    duration = config.get("maxDuration")
    return {
        "max_steps": int(config.get("maxSteps") or autonomy.DEFAULT_MAX_STEPS),
        "max_seconds": float(str(duration).removesuffix("s")) if duration else 0.0,
        "max_run_tokens": int(config.get("maxRunTokens") or 0),
        "temperature": spec["temperature"],
        "context_budget": spec["max_context_tokens"] or DEFAULT_CONTEXT_TOKENS,
        "thinking": bool(config.get("enableThinking")),
        "observation": bool(config.get("enableObservation")),
        "double_texting": DoubleTexting(config.get("doubleTexting") or DoubleTexting.QUEUE),
    }


def recorded_spec(path: Path) -> dict[str, Any]:
    """The AgentSpec a recorded history started with, as JSON."""
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    [payload] = history.events[0].workflow_execution_started_event_attributes.input.payloads
    spec: dict[str, Any] = json.loads(payload.data)["spec"]
    return spec


# Histories recorded before AgentSettings existed: their states are migrated.
MIGRATED = [path for path in HISTORIES if "settings" not in recorded_spec(path)]


@pytest.mark.parametrize("path", MIGRATED, ids=lambda p: p.stem)
def test_every_recorded_state_migrates_to_what_was_read_of_it(path: Path) -> None:
    raw = recorded_spec(path)
    state = decoded_state(raw)
    run = autonomy.start(Turn("m", "go"), state.spec, 0.0)
    settings = state.spec.settings
    assert {
        "max_steps": settings.max_steps or autonomy.DEFAULT_MAX_STEPS,
        "max_seconds": run.max_seconds,
        "max_run_tokens": settings.max_run_tokens,
        "temperature": settings.temperature,
        "context_budget": context_budget(state.spec),
        "thinking": settings.enable_thinking,
        "observation": settings.enable_observation,
        "double_texting": double_texting.policy(state.spec),
    } == old_reading(raw)


def test_the_recorded_histories_hold_settings_worth_migrating() -> None:
    keys = {key for path in HISTORIES for key in recorded_spec(path)["config"]}
    assert {"maxSteps", "maxContextTokens", "enableThinking", "doubleTexting"} <= keys


# --- what workflow code reads, and what an edit changes ---------------------------------------


def spec_with(settings: AgentSettings) -> AgentSpec:
    return AgentSpec(agent_id="a", goal="", model="m", settings=settings)


def test_a_run_is_bounded_by_the_settings() -> None:
    state = AgentState(spec=spec_with(AgentSettings(max_steps=2, max_run_tokens=100)), created_at=0)
    run = RunState(run_id="r", instructions="", started_at=0.0)
    assert autonomy.limit_reached(run, state, 1.0) == ""
    run.tokens = 100
    assert autonomy.limit_reached(run, state, 1.0) == "a budget of 100 tokens"
    run.steps = 2
    assert autonomy.limit_reached(run, state, 1.0) == "2 steps"
    state.spec.settings = AgentSettings()
    run.steps = autonomy.DEFAULT_MAX_STEPS - 1
    assert autonomy.limit_reached(run, state, 1.0) == ""


def test_an_edit_changes_the_settings_and_keeps_the_config_true() -> None:
    state = AgentState(spec=spec_with(AgentSettings(temperature=0.3, max_steps=4)), created_at=0)
    changed = edits.apply(
        state,
        EditInput(temperature=0.5, max_context_tokens=4000, double_texting="interrupt"),
        now=1.0,
    )
    assert changed == ["temperature", "max_context_tokens", "double_texting"]
    assert state.spec.settings == AgentSettings(
        temperature=0.5,
        max_steps=4,
        max_context_tokens=4000,
        double_texting=DoubleTexting.INTERRUPT,
    )
    assert state.spec.config == {
        "temperature": 0.5,
        "maxContextTokens": 4000,
        "doubleTexting": "interrupt",
    }
    edits.apply(state, EditInput(temperature=0, double_texting=""), now=2.0)
    assert state.spec.settings.temperature is None
    assert state.spec.settings.double_texting == DoubleTexting.QUEUE
    assert state.spec.config["temperature"] == 0 and state.spec.config["doubleTexting"] == ""


def test_an_edit_to_no_policy_is_refused_before_it_changes_anything() -> None:
    state = AgentState(spec=spec_with(AgentSettings()), created_at=0)
    with pytest.raises(ValueError, match="double_texting must be one of"):
        edits.check(state, EditInput(double_texting="shout"))
    edits.check(state, EditInput(double_texting="reject"))
