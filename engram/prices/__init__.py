"""What models cost: USD per million tokens of input, cached input, output and reasoning.

A dated default table ships beside this module (default-2026-12.toml); `--prices FILE` (worker
and dev) replaces it with a file of the same shape. The worker prices each call from the usage its
endpoint reports, and quotes a call's worst case before sending it (an agent's budget). A model the
table does not name costs 0, and the worker says so once per model.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_FILE = Path(__file__).with_name("default-2026-12.toml")
PER = 1_000_000

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cached_input: float
    reasoning: float


@dataclass(frozen=True)
class Usage:
    """What an endpoint reported a call used, in OpenAI's terms: `cached` tokens are part of
    `prompt`, `reasoning` tokens part of `completion`."""

    prompt: int = 0
    completion: int = 0
    cached: int = 0
    reasoning: int = 0

    @staticmethod
    def reported(usage: dict[str, Any]) -> Usage:
        """From a response's `usage` object (details left out count 0)."""
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        return Usage(
            prompt=int(usage.get("prompt_tokens") or 0),
            completion=int(usage.get("completion_tokens") or 0),
            cached=int(prompt_details.get("cached_tokens") or 0),
            reasoning=int(completion_details.get("reasoning_tokens") or 0),
        )


class PriceTable:
    def __init__(self, models: dict[str, Price], as_of: str = "", source: str = "") -> None:
        self.models = models
        self.as_of = as_of
        self.source = source
        self._unpriced_told: set[str] = set()

    @staticmethod
    def load(path: Path | str | None = None) -> PriceTable:
        """The table in `path` (TOML or JSON); the shipped default without one."""
        file = Path(path) if path else DEFAULT_FILE
        text = file.read_text()
        if file.suffix == ".json":
            import json

            data = json.loads(text)
        else:
            data = tomllib.loads(text)
        return PriceTable.parse(data, source=str(file))

    @staticmethod
    def parse(data: dict[str, Any], source: str = "") -> PriceTable:
        models: dict[str, Price] = {}
        for name, entry in (data.get("models") or {}).items():
            try:
                input_ = float(entry["input"])
                output = float(entry["output"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(
                    f"{source}: model {name!r} needs numbers `input` and `output`"
                ) from None
            models[name] = Price(
                input=input_,
                output=output,
                cached_input=float(entry.get("cached_input", input_)),
                reasoning=float(entry.get("reasoning", output)),
            )
        return PriceTable(models, as_of=str(data.get("as_of") or ""), source=source)

    def price(self, model: str) -> Price | None:
        """`model`'s price: its own entry, else the longest name it starts with (a dated
        snapshot, "gpt-4o-2024-08-06", is priced as "gpt-4o"); None if unknown."""
        found = self.models.get(model)
        if found is not None:
            return found
        prefixes = [name for name in self.models if model.startswith(name)]
        if prefixes:
            return self.models[max(prefixes, key=len)]
        if model not in self._unpriced_told:
            self._unpriced_told.add(model)
            log.warning("no price for model %s in %s: its calls count as $0", model, self.source)
        return None

    def cost(self, model: str, usage: Usage) -> float:
        """USD for a call that used `usage`."""
        price = self.price(model)
        if price is None:
            return 0.0
        cached = min(usage.cached, usage.prompt)
        reasoning = min(usage.reasoning, usage.completion)
        return (
            (usage.prompt - cached) * price.input
            + cached * price.cached_input
            + (usage.completion - reasoning) * price.output
            + reasoning * price.reasoning
        ) / PER

    def worst_case(self, model: str, input_tokens: int, max_output_tokens: int) -> float:
        """The most a call could cost: every input token uncached, every output token at the
        dearer of output and reasoning."""
        price = self.price(model)
        if price is None:
            return 0.0
        out = max(price.output, price.reasoning)
        return (input_tokens * price.input + max_output_tokens * out) / PER
