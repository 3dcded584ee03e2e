"""The base of the typed messages and records: frozen, strict, and readable like the prototype's dicts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class FrozenModel(BaseModel):
    """Frozen and strict; also readable like the prototype's dicts (``result["status"]``, ``result.get("matches")``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    def _readable(self, key: str) -> bool:
        return key in type(self).model_fields or isinstance(getattr(type(self), key, None), property)

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str) or not self._readable(key):
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._readable(key)

    def get(self, key: str, default: Any = None) -> Any:
        """Like ``dict.get``: the field's value, or ``default`` for a name the model does not have."""
        return self[key] if key in self else default

    def keys(self) -> list[str]:
        return list(type(self).model_fields)
