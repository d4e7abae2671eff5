"""Temporal's JSON payload conversion, with each dataclass's fields looked up once per class.

Temporal's converter turns JSON back into a dataclass by calling `typing.get_type_hints` on it,
for every instance: with `from __future__ import annotations` that evaluates every field's
annotation string again. An LLM call's input holds one message dataclass per line of the prompt,
so decoding it was a third of the engine's CPU and several milliseconds before the first token.
`CachedDataclasses` does what Temporal's converter does for a dataclass (the same fields, the same
errors, the same objects) with the hints cached per class, and lists of them without Temporal's
checks for every other kind of hint first. Encoding, Temporal's JSON encoder turns
each dataclass into a dict with `dataclasses.asdict`, which deep-copies every value it meets and
then walks the copy again; `DataclassEncoder` hands the JSON encoder each dataclass's fields as
they are, and the encoder reaches nested ones itself: the same JSON, byte for byte. Everything
else is Temporal's own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    AdvancedJSONEncoder,
    CompositePayloadConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    JSONTypeConverter,
    value_to_type,
)

from engram.workflows.types import AgentInfo, EventsPage, HistoryPage

_Fields = tuple[tuple[str, Any, bool], ...]  # (name, type hint, init) per field


class _ListOf:
    """A `list[item]` hint: its items converted one by one, as Temporal's converter does, without
    its checks for every other kind of hint first."""

    def __init__(self, item: Any) -> None:
        self.item = item


# How to convert to each hint, shared by every converter: Temporal makes a payload converter for
# each workflow it runs, and planning Engram's types anew cost every new agent and every
# continue-as-new about 2 ms of the worker's CPU. (A strict sandbox imports the workflows' own
# classes again for each workflow: tests only, which run few.)
_plans: dict[Any, _Fields | _ListOf | None] = {}


class CachedDataclasses(JSONTypeConverter):
    def __init__(self) -> None:
        self._plans = _plans
        self._converters: Sequence[JSONTypeConverter] = [self]

    def to_typed_value(self, hint: type, value: Any) -> Any | None:
        try:
            plan = self._plans[hint]
        except KeyError:
            plan = self._plans[hint] = self._plan(hint)
        except TypeError:  # an unhashable hint: neither a dataclass nor a list
            return JSONTypeConverter.Unhandled
        if plan is None:
            return JSONTypeConverter.Unhandled
        if isinstance(plan, _ListOf):
            return self._list(hint, plan.item, value)
        if not isinstance(value, dict):
            raise TypeError(f"Cannot convert to dataclass {hint}, value is {type(value)} not dict")
        init: dict[str, Any] = {}
        late: dict[str, Any] = {}
        for name, field_hint, in_init in plan:
            if name not in value:
                continue  # a missing required field fails at instantiation, as in Temporal's
            try:
                converted = value_to_type(field_hint, value[name], self._converters)
            except Exception as err:
                raise TypeError(f"Failed converting field {name} on dataclass {hint}") from err
            (init if in_init else late)[name] = converted
        obj = hint(**init)
        for name, converted in late.items():
            object.__setattr__(obj, name, converted)
        return obj

    def _list(self, hint: Any, item: Any, value: Any) -> list[Any]:
        if not isinstance(value, Iterable):
            raise TypeError(f"Expected {hint}, value was {type(value)}")
        converted = []
        for i, one in enumerate(value):
            try:
                converted.append(value_to_type(item, one, self._converters))
            except Exception as err:
                raise TypeError(f"Failed converting {hint} index {i}") from err
        return converted

    @staticmethod
    def _plan(hint: Any) -> _Fields | _ListOf | None:
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            hints = get_type_hints(hint)
            return tuple((f.name, hints[f.name], f.init) for f in dataclasses.fields(hint))
        args = get_args(hint)
        if get_origin(hint) is list and len(args) == 1 and not isinstance(args[0], TypeVar):
            return _ListOf(args[0])
        return None


# Field names per class; () for a class that is not a dataclass. Shared by every encoder: the
# JSON encoder is instantiated anew for every payload.
_field_names: dict[type, tuple[str, ...]] = {}


class DataclassEncoder(AdvancedJSONEncoder):
    def default(self, o: Any) -> Any:
        kind = type(o)
        try:
            names = _field_names[kind]
        except KeyError:
            names = _field_names[kind] = (
                tuple(f.name for f in dataclasses.fields(kind))
                if dataclasses.is_dataclass(kind)
                else ()
            )
        if names:
            return {name: getattr(o, name) for name in names}
        return super().default(o)


# Metadata of a payload that is an answer to a query: never in history, and asked for again and
# again, so the claim check keeps it inline up to its larger limit (codec/claim_check.py).
QUERY_ANSWER = "engram-query-answer"
QUERY_ANSWERS: tuple[type, ...] = (AgentInfo, EventsPage, HistoryPage)


class EngramPayloadConverter(CompositePayloadConverter):
    """Temporal's default payload converters, with dataclasses encoded by `DataclassEncoder` and
    decoded by `CachedDataclasses`, and query answers marked."""

    def __init__(self) -> None:
        super().__init__(
            *(
                JSONPlainPayloadConverter(
                    encoder=DataclassEncoder, custom_type_converters=[CachedDataclasses()]
                )
                if isinstance(converter, JSONPlainPayloadConverter)
                else converter
                for converter in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )

    def to_payloads(self, values: Sequence[Any]) -> list[Payload]:
        payloads = super().to_payloads(values)
        for value, payload in zip(values, payloads, strict=True):
            if isinstance(value, QUERY_ANSWERS):
                payload.metadata[QUERY_ANSWER] = b"1"
        return payloads
