"""Config mappings: reading one from a YAML or JSON file, and the dotted-key overrides
command-line flags make to its fields.

``apply_overrides({"plan": {"tp": 8}}, {"plan.pp": 4, "model": None})`` gives
``{"plan": {"tp": 8, "pp": 4}}``: ``None`` means the flag was not given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from profiles.errors import ClusterSimError
from profiles.reading import read_json, read_yaml

__all__ = ["apply_overrides", "read_mapping"]


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


def read_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """A YAML or JSON file holding one mapping (JSON is YAML too).

    Raises:
        ClusterSimError: missing file, invalid YAML, or not a mapping; ``what`` names it.
    """
    path = Path(path)
    # a .json file read as JSON: the same data, without importing or running YAML
    data = read_json(path, what) if path.suffix.lower() == ".json" else read_yaml(path, what)
    if not isinstance(data, dict):
        raise ClusterSimError(f"{what} {path}: expected a mapping of fields")
    return data
