"""Flow and connector configuration: YAML files validated at the edge into frozen objects.

`loader.load_config(config_dir)` is the entry point; `connector.py` and `flow.py` hold the
marshmallow schemas. This module holds the few schema pieces both use. Every error message is
written as what was expected and never echoes a value (a misplaced secret must not reach a log).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE  # a misspelt key is an error, not silently ignored


def strict_schema(name: str, **schema_fields: fields.Field[Any]) -> type[Schema]:
    """A small schema built inline, refusing unknown keys like every other."""
    return StrictSchema.from_dict(dict(schema_fields), name=name)


class MapOf(fields.Field[dict[str, Any]]):
    """name -> value, each value validated by `values`; errors are keyed by the name itself,
    so they read `credentials.corpsecret.env`, not marshmallow's `...value...` nesting."""

    def __init__(self, values: fields.Field[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.values = values

    def _bind_to_schema(self, field_name: str, parent: Schema | fields.Field[Any]) -> None:
        super()._bind_to_schema(field_name, parent)
        self.values = copy.deepcopy(self.values)
        self.values._bind_to_schema(field_name, self)

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ValidationError("expected a mapping of name: value")
        out: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for key, item in value.items():
            try:
                out[str(key)] = self.values.deserialize(item)
            except ValidationError as exc:
                errors[str(key)] = exc.messages
        if errors:
            raise ValidationError(errors)
        return out


Shape = tuple[type[Schema], Callable[[dict[str, Any]], Any]]  # (schema, build the object)


class OneOf(fields.Field[Any]):
    """A mapping that takes one of several shapes, told apart by the key it has.

    `{from: status}` and `{const: 1}` are two shapes of a mapped field; `{all: [...]}` and
    `{field: status, equals: x}` two shapes of a rule. `shapes` is a callable so that shapes
    may nest themselves (a rule inside `not`).
    """

    def __init__(self, shapes: Callable[[], Mapping[str, Shape]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shapes = shapes

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        shapes = self.shapes()
        names = ", ".join(shapes)
        if not isinstance(value, Mapping):
            raise ValidationError(f"expected a mapping with one of: {names}")
        present = [key for key in shapes if key in value]
        if len(present) != 1:
            got = f"; got {', '.join(present)}" if present else ""
            raise ValidationError(f"expected exactly one of: {names}{got}")
        schema, build = shapes[present[0]]
        return build(schema().load(value))
