"""Temporal's JSON payload conversion, with each dataclass's fields looked up once per class.

Temporal's converter turns JSON back into a dataclass by calling `typing.get_type_hints` on it,
for every instance: with `from __future__ import annotations` that evaluates every field's
annotation string again. An LLM call's input holds one message dataclass per line of the prompt,
so decoding it was a third of the engine's CPU and several milliseconds before the first token.
`CachedDataclasses` does what Temporal's converter does for a dataclass (the same fields, the same
errors, the same objects) with the hints cached per class. Encoding, Temporal's JSON encoder turns
each dataclass into a dict with `dataclasses.asdict`, which deep-copies every value it meets and
then walks the copy again; `DataclassEncoder` hands the JSON encoder each dataclass's fields as
they are, and the encoder reaches nested ones itself: the same JSON, byte for byte. Everything
else is Temporal's own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, get_type_hints

from temporalio.converter import (
    AdvancedJSONEncoder,
    CompositePayloadConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    JSONTypeConverter,
    value_to_type,
)

_Fields = tuple[tuple[str, Any, bool], ...]  # (name, type hint, init) per field


class CachedDataclasses(JSONTypeConverter):
    def __init__(self) -> None:
        self._fields: dict[Any, _Fields | None] = {}
        self._converters: Sequence[JSONTypeConverter] = [self]

    def to_typed_value(self, hint: type, value: Any) -> Any | None:
        try:
            fields = self._fields[hint]
        except KeyError:
            fields = self._fields[hint] = self._describe(hint)
        except TypeError:  # an unhashable hint: not a dataclass
            return JSONTypeConverter.Unhandled
        if fields is None:
            return JSONTypeConverter.Unhandled
        if not isinstance(value, dict):
            raise TypeError(f"Cannot convert to dataclass {hint}, value is {type(value)} not dict")
        init: dict[str, Any] = {}
        late: dict[str, Any] = {}
        for name, field_hint, in_init in fields:
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

    @staticmethod
    def _describe(hint: Any) -> _Fields | None:
        if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
            return None
        hints = get_type_hints(hint)
        return tuple((f.name, hints[f.name], f.init) for f in dataclasses.fields(hint))


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


class EngramPayloadConverter(CompositePayloadConverter):
    """Temporal's default payload converters, with dataclasses encoded by `DataclassEncoder` and
    decoded by `CachedDataclasses`."""

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
