"""The one hashing rule of a config: its canonical form drops every field equal to its declared
default and carries a schema version; the identity a run hash is computed over expands it again.

A :class:`Schema` describes a config dataclass (``TrainConfig`` or a typed sub-config): the
normalised value of each hashed field at its default, the **baseline** fields (those of schema 1,
the field set the first stored run hashes were computed over) and the fields that hold a typed
sub-config (with its own schema).

- :meth:`Schema.compact`: ``{field: value}`` of the fields whose normalised value differs from
  the default (as canonical JSON), sub-configs compacted in turn. With :data:`SCHEMA_KEY` this is
  the canonical config (:func:`vldlib.train.config.canonical_config`).
- :meth:`Schema.expand`: the hashed identity of a compact form: every baseline field (its
  default where the compact form lacks it) plus every other field the compact form holds.

So a field added after schema 1 enters a hash only when it is not at its default, and every hash
computed before the rule stands: nothing needs a special case per field.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from vldlib.io import canonical_json

__all__ = ["SCHEMA_VERSION", "SCHEMA_KEY", "Schema"]

#: The version of the canonical form; schema 1 hashes over the baseline field set.
SCHEMA_VERSION = 1
#: The key of the schema version in a canonical config.
SCHEMA_KEY = "schema"


@dataclass(frozen=True)
class Schema:
    """The hashed fields of a config type: their normalised defaults, the baseline (schema 1)
    fields, and the fields that hold a typed sub-config."""

    defaults: Mapping[str, Any]
    baseline: tuple[str, ...]
    nested: Mapping[str, "Schema"] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.baseline) - set(self.defaults))
        if unknown:
            raise ValueError(f"baseline field(s) {unknown} have no declared default")

    def compact(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The fields of ``values`` (normalised, sub-configs as their full identities) that differ
        from their defaults; sub-configs compacted in turn."""
        out = {}
        for name, value in values.items():
            if name in self.defaults and canonical_json(value) == canonical_json(self.defaults[name]):
                continue
            sub = self.nested.get(name)
            out[name] = sub.compact(value) if sub is not None and isinstance(value, Mapping) else value
        return out

    def expand(self, compact: Mapping[str, Any]) -> dict[str, Any]:
        """The identity hashed for a compact form: the baseline fields at their defaults, then the
        compact form's fields (sub-configs expanded by their own schema)."""
        out = {name: self.defaults[name] for name in self.baseline}
        for name, value in compact.items():
            sub = self.nested.get(name)
            out[name] = sub.expand(value) if sub is not None and isinstance(value, Mapping) else value
        return out
