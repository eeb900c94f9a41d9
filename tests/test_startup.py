"""Start-up: a command imports only what it needs. ``simulate --help`` loads typer and
no library code; a plain serving run loads none of pandas, matplotlib, networkx, scipy,
ray or torch (each costs more start-up time than a small run's whole simulation). The
times themselves are measured in bench/bench_startup.py, never here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cli.simulate import TRACE_FORMATS
from workloads.loaders import FORMATS

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("pandas", "matplotlib", "networkx", "scipy", "ray", "torch")
LIBRARY = ("simulator", "profiles", "workloads", "validation", "planners", "reports",
           "numpy", "pydantic", "simpy")


def _modules_after(argv: list[str], tmp_path: Path) -> set[str]:
    """The top-level modules loaded by running ``simulate ARGV`` in a fresh interpreter."""
    script = (
        "import sys, json\n"
        "from cli.main import run_command, simulate_app\n"
        f"code = run_command(simulate_app, ['simulate', *{argv!r}])\n"
        f"open({str(tmp_path / 'modules.json')!r}, 'w').write(json.dumps(\n"
        "    {'code': code, 'modules': sorted({m.split('.')[0] for m in sys.modules})}))\n")
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True,
                   capture_output=True, timeout=120)
    seen = json.loads((tmp_path / "modules.json").read_text())
    assert seen["code"] == 0
    return set(seen["modules"])


def test_help_loads_no_library_code(tmp_path: Path) -> None:
    loaded = _modules_after(["--help"], tmp_path)
    assert loaded.isdisjoint(LIBRARY + HEAVY), sorted(loaded & set(LIBRARY + HEAVY))


def test_a_plain_serving_run_loads_no_heavy_library(tmp_path: Path) -> None:
    """A run that writes its outputs, too: requests.csv needs no pandas."""
    loaded = _modules_after(["--workload", str(ROOT / "workloads/examples/chat.json"),
                             "--max-requests", "20", "--model", "llama-3-8b", "--gpu", "h100",
                             "--out", str(tmp_path / "out")], tmp_path)
    assert {"simulator", "numpy", "simpy"} <= loaded  # it did run
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
    assert (tmp_path / "out" / "requests.csv").is_file()


def test_the_help_names_every_trace_format() -> None:
    assert tuple(FORMATS) == TRACE_FORMATS
