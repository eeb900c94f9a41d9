"""The HTML report: well formed, self-contained, complete; rendered by headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from planners.objectives import SteadyState
from planners.output import write_plan
from planners.serving import plan_serving
from planners.space import ServingSpace
from planners.training import TrainingSpace, plan_training
from reports.html import plan_report
from workloads.generators import GeneratorSpec, generate
from workloads.training import TrainingJob

VOID = {"meta", "br", "img", "hr", "input", "link", "path", "rect", "circle", "line",
        "polyline", "polygon", "use", "stop", "ellipse", "image"}
TRACE = generate(GeneratorSpec(
    num_requests=60, arrival={"kind": "poisson", "rate_per_s": 4},
    prompt={"kind": "fixed", "value": 400}, output={"kind": "fixed", "value": 40}, seed=1))


class _Checker(HTMLParser):
    """Tag balance (void and self-closed SVG elements aside) and what the page holds."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.svgs = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "svg":
            self.svgs += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        if tag == "svg":
            self.svgs += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else None}")
        else:
            self.stack.pop()


@pytest.fixture(scope="module")
def serving_plan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    space = ServingSpace(gpus=[{"name": "h100", "max_gpus": 2}, {"name": "a100", "max_gpus": 2}],
                         tp=[1, 2], disaggregation={"prefill_gpus": ["h100"],
                                                    "prefill_tp": [1], "decode_tp": [1]})
    plan = plan_serving("llama-3-8b", TRACE, ttft_slo_s=0.25, tpot_slo_s=0.04, space=space,
                        steady=SteadyState(min_requests=200, min_span_s=5.0),
                        prices={"A100-SXM4-80GB": 5.0}, error_bars=True)
    folder = tmp_path_factory.mktemp("plan")
    write_plan(plan, folder, TRACE)
    return folder


def check_page(text: str) -> _Checker:
    checker = _Checker()
    checker.feed(text)
    assert checker.errors == [] and checker.stack == [], (checker.errors, checker.stack)
    assert not re.search(r"https?://", text), "the report must not reference the network"
    return checker


def test_plan_report_is_well_formed_self_contained_and_complete(serving_plan_dir: Path) -> None:
    text = plan_report(serving_plan_dir)
    checker = check_page(text)
    assert checker.svgs >= 6  # 3 frontiers, CDFs, time series, memory
    import json

    pareto = json.loads((serving_plan_dir / "pareto.json").read_text())["pareto"]
    assert pareto
    for row in pareto:
        assert f"<td>{row['index']}</td>" in text
    assert "TTFT p90 &lt;= 0.25 s" in text and "TPOT p90 &lt;= 0.04 s" in text
    assert "How accurate is this?" in text
    # the recommended plan at its goodput, said plainly, and its latency against load
    assert "Offered " in text and "steady windows" in text
    assert "Latency against load (recommended plan)" in text
    # its goodput's validated range (the serving group's error bars on its GPU)
    bars = json.loads((serving_plan_dir / "pareto.json").read_text())["goodput_interval"]
    assert bars["low_rate_per_s"] <= bars["high_rate_per_s"]
    assert (f"has a validated range of {bars['low_rate_per_s']:.3g} to "
            f"{bars['high_rate_per_s']:.3g} req/s") in text
    # disaggregated and colocated plans side by side, with the winner per objective
    assert "Disaggregated or colocated?" in text
    section = text[text.index("Disaggregated or colocated?"):]
    assert "<td>goodput per GPU (req/s)</td>" in section
    assert re.search(r"<td>(colocated|disaggregated)</td><td>[0-9.]+x</td>", section)
    assert "Each phase alone" in section and "1P:" in text


def test_training_report_renders(tmp_path: Path) -> None:
    job = TrainingJob(model="llama-3-8b", gpu="h100", seq_len=2048, global_batch=32)
    plan = plan_training(job, TrainingSpace(num_gpus=[8], tp=[1, 2], pp=[1, 2],
                                            zero_stage=[1], micro_batch=[1],
                                            recompute=["full"], schedules=["1f1b"]),
                         price_usd_per_gpu_hour=12.29)
    write_plan(plan, tmp_path)
    text = plan_report(tmp_path)
    assert check_page(text).svgs >= 4 and "one step" in text


def test_report_and_simulate_report_commands(serving_plan_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(serving_plan_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size < 5 * 2**20
    workload = tmp_path / "w.json"
    from workloads.loaders import save_workload

    save_workload(TRACE, workload)
    result = runner.invoke(app, ["simulate", "--workload", str(workload), "--model",
                                 "llama-3-8b", "--gpu", "h100", "--report",
                                 str(tmp_path / "run.html")])
    assert result.exit_code == 0, result.output
    assert check_page((tmp_path / "run.html").read_text()).svgs >= 3
    bad = runner.invoke(app, ["report", str(tmp_path / "missing"), "-o", str(out)])
    assert bad.exit_code == 2 and bad.output.startswith("error: plan folder")


def test_chromium_renders_the_report_without_errors(serving_plan_dir: Path,
                                                    tmp_path: Path) -> None:
    """Headless Chromium loads the page, logs no console error, and paints the plots."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    page = tmp_path / "report.html"
    page.write_text(plan_report(serving_plan_dir))
    shot = tmp_path / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
             "--enable-logging=stderr", "--v=0", "--window-size=1300,1400"]
    done = subprocess.run([browser, *flags, f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line or "Error" in line], console
    dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=120, check=False).stdout
    sizes = [float(w) for w in re.findall(r'<svg[^>]*\swidth="([\d.]+)pt"', dom)]
    assert len(sizes) >= 6 and min(sizes) > 200  # every plot has its size in the page
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)  # [h, w, 3]
    assert pixels.shape == (1400, 1300, 3)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    plotted = int(((r < 250) | (g < 250) | (b < 250)).sum())
    pareto_red = int(((r > 180) & (g > 50) & (g < 110) & (b > 70) & (b < 120)).sum())
    assert plotted > 0.05 * r.size and pareto_red > 50  # plots drawn, markers visible


def test_report_points_are_identifiable_and_columns_readable(serving_plan_dir: Path) -> None:
    """Every plotted plan has a hover title with its knobs; GPU types get their own
    colour and marker; table headers are names with units; the accuracy section shows
    the real vLLM runs of the plan's GPUs, not the training group."""
    import json

    import pandas as pd

    text = plan_report(serving_plan_dir)
    frame = pd.read_csv(serving_plan_dir / "candidates.csv")
    served = frame[(frame["status"] == "evaluated") & (frame["goodput_per_gpu"] > 0)]
    titles = re.findall(r"<title>(#\d+[^<]*)</title>", text)
    assert len(titles) >= 2 * len(served)  # two frontier plots at least
    assert all("TTFT p90" in t and ("x TP" in t or "disaggregated" in t) for t in titles)
    headers = re.findall(r"<th title='([^']*)'>([^<]*)</th>", text)
    assert ("goodput_rate_per_s", "goodput (req/s)") in headers
    assert all("_" not in shown for _, shown in headers)
    assert "Real vLLM runs on these GPUs" in text and "<td>training</td>" not in text
    pareto = json.loads((serving_plan_dir / "pareto.json").read_text())
    assert pareto["best"]["goodput_per_gpu"]["launch"]["vllm"].startswith("vllm serve")


def test_report_layout_at_1400_and_2200_pixels(serving_plan_dir: Path, tmp_path: Path) -> None:
    """Headless Chromium at two widths: the page never scrolls sideways (wide tables
    scroll in their own box), and the three frontier plots sit in two rows at 1400 px and
    in one at 2200 px. The layout is read from the page itself by a probe script added
    to a copy of the report."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    probe = ("<script>const s=[...document.querySelectorAll('.plots')[0].children]"
             ".map(e=>Math.round(e.getBoundingClientRect().top));document.body.dataset.rows="
             "new Set(s).size;document.body.dataset.overflow="
             "document.documentElement.scrollWidth>window.innerWidth;</script>")
    page = tmp_path / "report.html"
    page.write_text(plan_report(serving_plan_dir).replace("</body>", probe + "</body>"))
    found = {}
    for width in (1400, 2200):
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 f"--user-data-dir={tmp_path / f'profile{width}'}",
                 f"--window-size={width},1600"]
        dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=120, check=False).stdout
        match = re.search(r'<body data-rows="(\d+)" data-overflow="(\w+)"', dom)
        assert match, dom[:500]
        found[width] = (int(match.group(1)), match.group(2))
    assert found == {1400: (2, "false"), 2200: (1, "false")}, found


def test_every_marker_gets_its_title_even_a_collection_of_one() -> None:
    """matplotlib draws a collection of one point as a lone path, not a marker ``use``:
    it gets its title, and the next collection's markers keep theirs."""
    import matplotlib
    matplotlib.use("Agg")
    import io
    from xml.etree import ElementTree

    import matplotlib.pyplot as plt

    from reports.points import with_titles

    figure, axis = plt.subplots()
    axis.scatter([1.0], [1.0], marker="s", alpha=0.5).set_gid("pts-0")
    axis.scatter([2.0, 3.0], [2.0, 3.0], marker="o", edgecolors="black").set_gid("pts-1")
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    plt.close(figure)
    svg = with_titles(buffer.getvalue(), {"pts-0": ["#0 alone"], "pts-1": ["#1", "#2"]})
    assert re.findall(r"<title>(#[^<]*)</title>", svg) == ["#0 alone", "#1", "#2"]
    ElementTree.fromstring(svg.encode())  # still well-formed
