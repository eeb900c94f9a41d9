"""The command line: outputs, one-line errors with exit status 2, byte-identical reruns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from cli import app

EXAMPLES = Path(__file__).parent.parent / "workloads" / "examples"
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def small_trace(tmp_path: Path) -> Path:
    path = tmp_path / "small.json"
    result = run("workload", "generate", "--out", str(path), "--num-requests", "60",
                 "--rate", "5", "--prompt", "uniform:low=50,high=400",
                 "--output", "lognormal:mean=30,sigma=0.8,max=200", "--seed", "3")
    assert result.exit_code == 0, result.output
    return path


def test_simulate_writes_outputs_and_reruns_byte_identical(tmp_path: Path) -> None:
    trace = small_trace(tmp_path)
    outputs = []
    for name in ("a", "b"):
        out = tmp_path / name
        result = run("simulate", "--workload", str(trace), "--model", "llama-3-8b",
                     "--gpu", "h100", "--replicas", "2", "--scheduler", "stall-free",
                     "--out", str(out), "--trace", "--ttft-slo", "0.5")
        assert result.exit_code == 0, result.output
        assert "TTFT" in result.output and "goodput" in result.output
        outputs.append(out)
    for name in ("requests.csv", "summary.json", "trace.json"):
        assert (outputs[0] / name).read_bytes() == (outputs[1] / name).read_bytes(), name
    rows = pd.read_csv(outputs[0] / "requests.csv")
    assert len(rows) == 60 and rows["finish_s"].notna().all()
    summary = json.loads((outputs[0] / "summary.json").read_text())
    assert summary["run"]["scheduler"]["policy"] == "stall-free"
    assert summary["throughput"]["requests_per_s"] > 0
    trace_doc = json.loads((outputs[0] / "trace.json").read_text())
    assert any(event["ph"] == "X" for event in trace_doc["traceEvents"])
    assert not list(outputs[0].glob(".staging-*"))


def test_deployment_file_with_flag_override_and_parquet(tmp_path: Path) -> None:
    result = run("simulate", "--workload", str(small_trace(tmp_path)), "--deployment",
                 str(EXAMPLES / "deployment.yaml"), "--replicas", "1", "--format", "parquet",
                 "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(tmp_path / "out" / "requests.parquet")
    assert set(rows["replica_id"]) == {0}


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_user_errors_are_one_line_with_exit_status_2(tmp_path: Path) -> None:
    trace = str(small_trace(tmp_path))
    assert_one_line_error(run("simulate", "--workload", trace, "--model", "llama-9",
                              "--gpu", "h100"), "llama-9", "llama-3-8b")
    assert_one_line_error(run("simulate", "--workload", trace, "--model", "llama-3-8b",
                              "--gpu", "v100"), "v100", "h100")
    assert_one_line_error(run("simulate", "--workload", trace, "--model", "llama-3-70b",
                              "--gpu", "a100"), "weights need", "raise tp or pp")
    assert_one_line_error(run("simulate", "--workload", trace, "--model", "llama-3-8b",
                              "--gpu", "a100", "--tp", "0"), "parallelism.tp")
    assert_one_line_error(run("simulate", "--workload", str(tmp_path / "none.json"),
                              "--model", "llama-3-8b", "--gpu", "a100"), "no such file")
    (tmp_path / "bad.json").write_text('[{"arrival_s": 0, "prompt_tokens": 5}]')
    assert_one_line_error(run("simulate", "--workload", str(tmp_path / "bad.json"),
                              "--model", "llama-3-8b", "--gpu", "a100"),
                          "0.output_tokens", "Field required")
    assert_one_line_error(run("workload", "generate", "--out", str(tmp_path / "x.json"),
                              "--num-requests", "10", "--rate", "-2",
                              "--prompt", "fixed:value=5", "--output", "fixed:value=5"),
                          "rate_per_s", "greater than 0")
    assert_one_line_error(run("simulate", "--workload", trace), "--model and --gpu")
    assert not (tmp_path / "x.json").exists()
    # a negative seed in a deployment file (random draws take none; it crashed them)
    (tmp_path / "d.yaml").write_text("model: llama-3-8b\ngpu: h100\nreplicas: 2\n"
                                     "router: least_outstanding\nseed: -1\n")
    assert_one_line_error(run("simulate", "--workload", trace, "--deployment",
                              str(tmp_path / "d.yaml")), "field 'seed'", "greater than or equal")


def test_catalog_listings() -> None:
    assert "llama-3.1-405b" in run("models").output
    assert "MI300X" in run("gpus").output
    stats = run("workload", "stats", str(EXAMPLES / "chat.json"))
    assert stats.exit_code == 0 and json.loads(stats.output)["num_requests"] == 400


def test_simulate_console_script_runs_the_bundled_example(tmp_path: Path) -> None:
    """The README's main command, through the installed ``simulate`` entry point."""
    script = Path(sys.executable).parent / "simulate"
    command = [str(script)] if script.exists() else [sys.executable, "-c",
                                                     "from cli import simulate_main;"
                                                     "simulate_main()"]
    done = subprocess.run(
        [*command, "--workload", str(EXAMPLES / "chat.json"), "--model", "llama-3-8b",
         "--gpu", "h100", "--tp", "1", "--replicas", "4", "--scheduler", "stall-free",
         "--out", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "results" / "summary.json").exists()


def test_a_table_sent_to_a_pipe_is_printed_whole() -> None:
    """Output that is not a terminal has no width to fit: the training planner's
    sixteen-column table reaches a pipe (a file, a CI log) whole, not squeezed to
    ellipses at 80 columns; ``COLUMNS`` still sets the width where it is given."""
    command = [sys.executable, "-c", "from cli import main; main()", "plan-training",
               "--job", str(EXAMPLES / "train_llama3_70b.json"), "--num-gpus", "64",
               "--top", "3"]
    environment = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    piped = subprocess.run(command, capture_output=True, text=True, timeout=120,
                           check=False, env=environment)
    assert piped.returncode == 0, piped.stderr
    plans = piped.stdout.split(" plans: ")[0]  # the plan table, before its summary line
    table = [line for line in plans.splitlines() if line.startswith("│")]
    assert len(table) == 3 and "…" not in "".join(table)
    assert "headroom GiB" in piped.stdout
    narrow = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            check=False, env={**environment, "COLUMNS": "80"})
    assert narrow.returncode == 0 and "…" in narrow.stdout


def test_simulate_a_disaggregated_deployment_with_its_timeline(tmp_path: Path) -> None:
    """The bundled disaggregated example runs from the command line; the Perfetto trace
    names each pool's replicas and shows every request's prefill, KV transfer and
    decode."""
    trace = small_trace(tmp_path)
    out = tmp_path / "disagg"
    result = run("simulate", "--workload", str(trace), "--deployment",
                 str(EXAMPLES / "disagg.yaml"), "--out", str(out), "--trace")
    assert result.exit_code == 0, result.output
    assert "disaggregated 2P:4D" in result.output and "KV transfers" in result.output
    rows = pd.read_csv(out / "requests.csv")
    assert len(rows) == 60 and rows["finish_s"].notna().all()
    assert {"prefill_replica_id", "kv_transfer_s", "kv_wait_s"} <= set(rows.columns)
    summary = json.loads((out / "summary.json").read_text())
    pools = summary["disaggregation"]["pools"]
    assert (pools["prefill"]["gpu"], pools["decode"]["gpu"]) == ("H100-SXM5-80GB",
                                                                 "A100-SXM4-80GB")
    assert 0 < pools["decode"]["busy_fraction"] <= 1
    assert summary["disaggregation"]["links"]["network"]["bytes"] > 0
    events = json.loads((out / "trace.json").read_text())["traceEvents"]
    names = {e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert "prefill replica 0 (H100-SXM5-80GB, tp=1, pp=1)" in names
    assert "decode replica 3 (A100-SXM4-80GB, tp=1, pp=1)" in names
    moved = rows[rows["output_tokens"] > 1]["request_id"]
    for phase in ("prefill", "KV transfer", "decode"):
        began = {e["id"] for e in events if e["ph"] == "b" and e["name"] == phase}
        assert set(moved) <= began, phase
    bad = run("simulate", "--workload", str(trace), "--deployment",
              str(EXAMPLES / "disagg.yaml"), "--tp", "2")
    assert bad.exit_code == 2
    assert bad.output.strip().startswith("error:") and "per pool" in bad.output
    assert len(bad.output.strip().splitlines()) == 1


def test_version_flag_prints_the_package_version() -> None:
    from importlib import metadata

    result = run("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"clustersim {metadata.version('clustersim')}"


def test_progress_reaches_every_request_and_the_bar_shows_only_on_a_terminal(
        monkeypatch, tmp_path: Path) -> None:
    import io

    from rich.console import Console

    import cli.common
    from simulator import build_deployment, simulate
    from workloads.loaders import load_workload

    trace = load_workload(Path("workloads/examples/chat.json"))
    heard: list[tuple[int, int]] = []
    result = simulate(build_deployment({"model": "llama-3-8b", "gpu": "h100"}), trace,
                      progress=lambda done, total: heard.append((done, total)))
    assert result.ok
    assert heard[-1] == (len(trace), len(trace))
    assert [done for done, _ in heard] == sorted(done for done, _ in heard)
    assert 2 <= len(heard) <= 201  # about 200 updates, not one per request
    args = ["simulate", "--workload", "workloads/examples/chat.json", "--model",
            "llama-3-8b", "--gpu", "h100"]
    quiet = CliRunner().invoke(app, args)  # stderr is not a terminal: no bar
    assert quiet.exit_code == 0 and "simulating requests" not in quiet.output
    screen = io.StringIO()
    monkeypatch.setattr(cli.common, "_stderr", Console(file=screen, force_terminal=True,
                                                       width=100))
    shown = CliRunner().invoke(app, args)
    assert shown.exit_code == 0
    assert "simulating requests" in screen.getvalue()


def test_every_option_of_every_command_has_help_text() -> None:
    import typer

    def missing(command, path):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from missing(sub, [*path, name])
            return
        for param in command.params:
            if param.param_type_name == "option" and not param.help and param.name != "help":
                yield f"{' '.join(path)} {param.opts[0]}"

    assert list(missing(typer.main.get_command(app), [])) == []
