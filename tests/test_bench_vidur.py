"""The Vidur side-by-side benchmark: skipped without a checkout, and with one it runs both
tools on the same requests (a stand-in Vidur here: no checkout is installed in tests)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import bench_vidur

# A stand-in for Vidur's main: reads the flags the benchmark passes, keeps the trace it
# was given and writes a request_metrics.csv under the output folder, as Vidur does.
FAKE_MAIN = '''
import csv, sys, pathlib
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
out = pathlib.Path(args["--metrics_config_output_dir"]) / "2024-01-01_00-00-00"
out.mkdir(parents=True)
rows = list(csv.DictReader(open(args["--trace_request_generator_config_trace_file"])))
assert args["--request_generator_config_type"] == "trace_replay"
pathlib.Path(sys.argv[0]).with_name("seen.csv").write_text(
    open(args["--trace_request_generator_config_trace_file"]).read())
with open(out / "request_metrics.csv", "w", newline="") as handle:
    writer = csv.writer(handle)
    writer.writerow(["Request Id", "prefill_e2e_time",
                     "decode_time_execution_plus_preemption_normalized"])
    for i, row in enumerate(rows):
        writer.writerow([i, 0.1 + 1e-4 * int(row["PromptTokenCount"]), 0.02])
'''


def test_without_a_checkout_it_is_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_vidur.main([]) == 0
    assert capsys.readouterr().out.startswith("skipped: no Vidur checkout given")


def test_a_folder_without_vidur_is_refused(tmp_path: Path) -> None:
    assert bench_vidur.main(["--vidur", str(tmp_path)]) == 2


def test_both_run_on_the_same_requests(tmp_path: Path) -> None:
    checkout = tmp_path / "vidur-checkout"
    (checkout / "vidur").mkdir(parents=True)
    (checkout / "vidur" / "__init__.py").write_text("")
    (checkout / "vidur" / "main.py").write_text(FAKE_MAIN)
    out = tmp_path / "vidur.md"
    assert bench_vidur.main(["--vidur", str(checkout), "--num-requests", "40",
                             "--out", str(out)]) == 0
    seen = list(csv.DictReader((checkout / "vidur" / "seen.csv").open()))
    assert len(seen) == 40 and set(seen[0]) == {"Date", "Time", "PromptTokenCount",
                                                "CompletionTokenCount"}
    assert {row["Date"] for row in seen} == {bench_vidur.TRACE_DATE}
    times = [float(row["Time"]) for row in seen]
    assert times == sorted(times) and times[0] == 0.0
    text = out.read_text()
    for figure in ("clustersim_cpu_s", "vidur_warm_cpu_s", "vidur_warm_vs_clustersim_cpu",
                   "clustersim_latency ttft_s p50", "vidur_latency ttft_s p50",
                   "vidur_latency tpot_s p90"):
        assert f"| {figure} |" in text, figure
