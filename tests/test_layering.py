"""The layout holds: imports flow one way between the packages, no modules import each
other in a loop, torch stays in the measuring code, and no module outgrows one idea.

    workloads, profiles → simulator → validation → planners → reports → cli

Imports are read from the source (every ``import`` and ``from`` statement, those under
``TYPE_CHECKING`` and inside functions included), so the test needs nothing installed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).parent.parent

# A package may import its own tier and the tiers below it, never one above.
TIERS = {"profiles": 0, "workloads": 0, "simulator": 1, "validation": 2, "planners": 3,
         "reports": 4, "cli": 5}

# Modules that need torch (the ``profile`` extra). They are the only project modules a
# function may import lazily, so that every other command starts without torch; a lazy
# import of anything else would be dodging a cycle. The one exception is the command
# line, the top of the graph, where nothing can loop back: a command imports the library
# when it runs, so parsing and --help stay fast (tests/test_startup.py).
TORCH_MODULES = ("profiles.measure", "validation.reference.model",
                 "validation.reference.measure")
LAZY_IMPORTERS = ("cli.",)

MAX_MODULE_LINES = 600


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every package of ``TIERS`` under ``root``."""
    modules = {}
    for package in TIERS:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an import names (its longest known prefix), or None."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return None


def imports_of(path: Path, modules: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(project module imported, line, inside a function) for every import of a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                # ``from pkg import sub`` imports the module pkg.sub when there is one.
                names = [f"{child.module}.{alias.name}" for alias in child.names]
            for name in names:
                target = _resolve(name, modules)
                if target is not None:
                    found.append((target, child.lineno, nested))
            visit(child, nested)

    visit(tree, False)
    return found


def layering_violations(root: Path) -> list[str]:
    """Every import against the order, every loop of modules importing each other, and
    every lazy import of a project module that is not torch code, one line each."""
    modules = module_files(root)
    graph = nx.DiGraph()
    problems = []
    for module, path in modules.items():
        graph.add_node(module)
        tier = TIERS[module.split(".")[0]]
        for target, line, in_function in imports_of(path, modules):
            where = f"{path.relative_to(root)}:{line}"
            target_tier = TIERS[target.split(".")[0]]
            if target_tier > tier:
                problems.append(f"{where}: {module} imports {target}, a layer above it")
            if (in_function and not target.startswith(TORCH_MODULES)
                    and not module.startswith(LAZY_IMPORTERS)):
                problems.append(f"{where}: {module} imports {target} inside a function")
            if target != module:
                graph.add_edge(module, target)
    for cycle in sorted(sorted(c) for c in nx.simple_cycles(graph)):
        problems.append("import loop: " + " -> ".join(cycle))
    return problems


def test_imports_flow_one_way_without_loops() -> None:
    assert layering_violations(ROOT) == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_an_upward_import_fails(tmp_path: Path) -> None:
    """The checker is not vacuous: a profiles module importing the simulator, a loop of
    two simulator modules and a lazy import dodging it are each reported."""
    root = _tree(tmp_path, {
        "profiles/__init__.py": "",
        "profiles/cost.py": "from simulator.engine import simulate\n",
        "simulator/__init__.py": "",
        "simulator/engine.py": "from simulator import metrics\n",
        "simulator/metrics.py": "import simulator.engine\n",
        "simulator/replica.py": "def f():\n    from simulator.metrics import x\n",
    })
    problems = layering_violations(root)
    assert problems == [
        "profiles/cost.py:1: profiles.cost imports simulator.engine, a layer above it",
        "simulator/replica.py:2: simulator.replica imports simulator.metrics inside a "
        "function",
        "import loop: simulator.engine -> simulator.metrics",
    ]


def test_torch_typer_and_validation_stay_out_of_the_simulator() -> None:
    """``simulator/`` holds no command line, validation or torch code; torch is imported
    only by the measuring modules and typer only by the command line."""
    modules = module_files(ROOT)
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        roots = {alias.name.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.Import) for alias in node.names}
        roots |= {node.module.split(".")[0] for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
        if "torch" in roots:
            assert module.startswith(TORCH_MODULES), f"{module} imports torch"
        if "typer" in roots:
            assert module.startswith("cli"), f"{module} imports typer"
        if module.startswith("simulator"):
            assert not roots & {"cli", "validation", "planners", "reports"}, module


@pytest.mark.parametrize("package", sorted(TIERS))
def test_no_module_outgrows_one_idea(package: str) -> None:
    for path in sorted((ROOT / package).rglob("*.py")):
        num_lines = len(path.read_text(encoding="utf-8").splitlines())
        assert num_lines <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)}: {num_lines} lines"


def test_no_package_holds_a_third_of_the_code() -> None:
    sizes = {package: sum(len(path.read_text(encoding="utf-8").splitlines())
                          for path in (ROOT / package).rglob("*.py")) for package in TIERS}
    total = sum(sizes.values())
    biggest = max(sizes, key=lambda package: sizes[package])
    assert sizes[biggest] < total / 3, f"{biggest}: {sizes[biggest]} of {total} lines"
