"""Each package lists its public API in __all__, and every listed name exists."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("package", ["simulator", "simulator.serving", "simulator.training",
                                     "profiles", "workloads", "planners", "validation",
                                     "validation.reference", "reports", "cli"])
def test_all_names_resolve(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__doc__, f"{package} has no docstring"
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.{name} is listed but missing"


def test_the_documented_entry_points_import() -> None:
    """The names the README and the design page promise, from the packages they name."""
    from cli import main, simulate_main
    from planners import plan_serving, plan_training
    from simulator import build_deployment, simulate, simulate_training
    from validation import validate
    from workloads import load_workload

    for entry in (main, simulate_main, plan_serving, plan_training, build_deployment,
                  simulate, simulate_training, validate, load_workload):
        assert callable(entry)
