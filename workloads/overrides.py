"""Dotted-key overrides of a config mapping: what command-line flags do to a file's fields.

``apply_overrides({"plan": {"tp": 8}}, {"plan.pp": 4, "model": None})`` gives
``{"plan": {"tp": 8, "pp": 4}}``: ``None`` means the flag was not given.
"""

from __future__ import annotations

from typing import Any

__all__ = ["apply_overrides"]


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of ``data`` with each non-None dotted-key override set."""
    merged = {key: dict(value) if isinstance(value, dict) else value
              for key, value in data.items()}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        target = merged
        *parents, leaf = dotted.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return merged
