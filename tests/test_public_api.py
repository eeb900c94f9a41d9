"""Each package lists its public API in __all__, and every listed name exists."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("package", ["simulator", "profiles", "workloads", "planners",
                                     "reports"])
def test_all_names_resolve(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__doc__, f"{package} has no docstring"
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.{name} is listed but missing"
