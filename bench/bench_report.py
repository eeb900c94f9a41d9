"""Benchmark: the HTML report of a plan with 1,000 candidates: size and open time.

The plan folder is built from generated candidate metrics (a rendering benchmark: the
planner's own speed is bench_planner.py's job), with 40 of them Pareto plans. Prints the
report's size and the wall time headless Chromium takes to load it and take a screenshot,
against an empty page in the same run (the browser's own start-up).

    python bench/bench_report.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from reports.html import plan_report

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1300,1400"]


def plan_folder(folder: Path, num: int = 1000) -> None:
    rng = np.random.default_rng(0)
    goodput = rng.uniform(1, 40, num)
    rows = pd.DataFrame({
        "index": np.arange(num), "status": "evaluated", "reason": "",
        "gpu": rng.choice(["H100-SXM5-80GB", "A100-SXM4-80GB"], num),
        "num_gpus": rng.choice([1, 2, 4, 8, 16], num), "replicas": 1, "tp": 1, "pp": 1,
        "scheduler.policy": "running-first", "goodput_rate_per_s": goodput * 4,
        "goodput_per_gpu": goodput, "ttft_p90_s": rng.uniform(0.1, 1.0, num),
        "tpot_p90_s": rng.uniform(0.01, 0.05, num),
        "cost_per_mtok_usd": 2 / goodput, "energy_j_per_token": rng.uniform(0.1, 1, num),
    })
    rows.to_csv(folder / "candidates.csv", index=False)
    records = rows.to_dict(orient="records")
    pareto = [dict(r, deployment={}) for r in records[:40]]
    (folder / "pareto.json").write_text(json.dumps(
        {"kind": "serving", "pareto": pareto, "best": {"goodput_per_gpu": pareto[0]}}))
    (folder / "inputs.json").write_text(json.dumps(
        {"model": "llama-3-70b", "ttft_slo_s": 1.0, "tpot_slo_s": 0.05, "attainment": 0.9,
         "space": {"note": "generated candidates"}, "workload": {"num_requests": 0}}))


def open_time(browser: str, url: str, profile: Path) -> float:
    began = time.perf_counter()
    subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}",
                    f"--screenshot={profile / 'shot.png'}", url], capture_output=True,
                   check=True, timeout=120)
    return time.perf_counter() - began


def main() -> None:
    browser = shutil.which("chromium")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plan_folder(folder)
        started = time.perf_counter()
        text = plan_report(folder)
        build_s = time.perf_counter() - started
        page = folder / "report.html"
        page.write_text(text)
        blank = folder / "blank.html"
        blank.write_text("<!DOCTYPE html><html><body></body></html>")
        result = {"candidates": 1000, "report_bytes": len(text.encode()),
                  "report_mib": round(len(text.encode()) / 2**20, 3),
                  "build_s": round(build_s, 2)}
        if browser:
            baseline = min(open_time(browser, blank.as_uri(), folder / "p0") for _ in range(3))
            report = min(open_time(browser, page.as_uri(), folder / "p1") for _ in range(3))
            result |= {"chromium_blank_page_s": round(baseline, 2),
                       "chromium_report_s": round(report, 2),
                       "report_minus_blank_s": round(report - baseline, 2)}
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
