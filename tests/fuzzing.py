"""The fuzzer's inputs and its judge, shared by the CI fuzz suite (``test_fuzz.py``, a
bounded number of examples) and the long run (``bench/fuzz.py --examples N``).

Every input kind a user can hand clustersim has a hypothesis strategy that starts from
a valid input and damages it: values swapped for adversarial ones (huge integers, NaN,
infinities, denormals, strings where numbers go, empty containers), keys dropped or
added, files truncated, bytes that are not UTF-8, nesting thousands deep, and filesystem
cases (a folder, a FIFO, a missing or over-long name). ``judge`` runs the command line
in this process under a time limit and sorts the answer:

- ``clean``: exit 2 and one line ``error: ...``;
- ``ok``: exit 0 and outputs that hold (no NaN or negative latency, no request lost,
  causal timestamps, a finite step time);
- ``traceback``: anything else that ends (a traceback, an internal error, exit 1);
- ``hang``: no answer within the time limit;
- ``suspicious``: exit 0 with outputs that do not hold.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from hypothesis import strategies as st

from cli.main import app, run_command
from profiles.errors import ClusterSimError
from validation.comparison import predict_records
from validation.gate import _read_baseline
from validation.records import load_records

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "workloads" / "examples"
HUGE = "9" * 5000  # an integer with more digits than Python converts by default

# Values that stand in for a valid one (copied before use: a strategy that changed one
# would draw differently the next time, which hypothesis refuses). Floats NaN and inf
# are written as JSON's NaN/Infinity (which Python reads), HUGE as a bare 5,000-digit
# number.
ADVERSARIAL: list[Any] = [
    0, -1, 1, 2**31, 2**63, 2**64, 10**30, "HUGE", -(2**63),
    float("nan"), float("inf"), float("-inf"), 1e-320, 1e15, 1e308, -0.0, 0.5, -3.5,
    "", "5", "abc", "\x00", "ü\u202e", "1e400", None, True, False, [], {}, [1, 2],
    {"a": 1},
]
CSV_CELLS = ["inf", "-inf", "nan", "NaN", "-1", "0", "1e400", HUGE, "", "abc", "1.5",
             "2**63", "9223372036854775808", "2023-11-16 18:15:46.6805900+05:00",
             "2023-11-16 18:15:46", "1e15", "  7 ", "\x00"]

MODEL_CONFIG = {
    "model_type": "llama", "hidden_size": 256, "num_hidden_layers": 4,
    "num_attention_heads": 8, "num_key_value_heads": 2, "intermediate_size": 512,
    "vocab_size": 1000, "max_position_embeddings": 4096, "torch_dtype": "bfloat16",
}
SERVING = ["--model", "llama-3-8b", "--gpu", "h100", "--engine", "none"]


def _requests(n: int = 12) -> list[dict[str, Any]]:
    return [{"request_id": i, "arrival_s": round(0.05 * i, 3), "prompt_tokens": 100 + 37 * i,
             "output_tokens": 5 + 3 * i} for i in range(n)]


def _trace_doc() -> dict[str, Any]:
    return {"metadata": {"name": "fuzz"}, "requests": _requests()}


def _azure_rows() -> list[dict[str, Any]]:
    return [{"TIMESTAMP": f"2023-11-16 18:15:{10 + i:02d}.{i:07d}", "ContextTokens": 100 + i,
             "GeneratedTokens": 5 + i} for i in range(12)]


def _burstgpt_rows() -> list[dict[str, Any]]:
    return [{"Timestamp": 2 * i, "Model": "ChatGPT", "Request tokens": 100 + i,
             "Response tokens": 5 + i, "Total tokens": 105 + 2 * i, "Log Type": "Conversation log"}
            for i in range(12)]


def _mooncake_rows() -> list[dict[str, Any]]:
    return [{"timestamp": 50 * i, "input_length": 600 + i, "output_length": 5 + i,
             "hash_ids": [i, i + 1]} for i in range(12)]


def _deployment_doc() -> dict[str, Any]:
    return {"model": "llama-3-8b", "gpu": "h100", "engine": "none", "replicas": 2,
            "parallelism": {"tp": 1, "pp": 1}, "router": "least_outstanding",
            "scheduler": {"policy": "stall-free", "max_num_seqs": 64,
                          "max_num_batched_tokens": 2048, "block_size": 16,
                          "gpu_memory_utilization": 0.9, "max_model_len": 4096},
            "slo": {"ttft_s": 0.5, "tpot_s": 0.05}, "seed": 0}


def _training_doc() -> dict[str, Any]:
    return {"kind": "training", "model": "llama-3-8b", "gpu": "h100", "num_gpus": 8,
            "global_batch": 16, "micro_batch": 1, "seq_len": 2048, "dtype": "bf16",
            "plan": {"tp": 2, "pp": 2, "dp": 2, "schedule": "1f1b", "recompute": "selective",
                     "sequence_parallel": True, "zero_stage": 1}}


def _plan_doc() -> dict[str, Any]:
    return {"tp": 2, "pp": 2, "dp": 2, "zero_stage": 1, "schedule": "1f1b"}


def _gpu_doc() -> dict[str, Any]:
    gpus = json.loads((ROOT / "profiles" / "data" / "gpus.json").read_text())
    entries = gpus["gpus"] if isinstance(gpus, dict) and "gpus" in gpus else gpus
    entry = next(iter(entries.values())) if isinstance(entries, dict) else entries[0]
    return copy.deepcopy(entry) | {"power_limit_w": 0.8 * entry["tdp_w"]}


def _record_doc() -> dict[str, Any]:
    records = json.loads((ROOT / "validation" / "records" / "published_infer.json").read_text())
    return {"records": copy.deepcopy(records["records"][:2])}


def _baseline_doc() -> dict[str, Any]:
    baseline = json.loads((ROOT / "validation" / "baseline.json").read_text())
    return {key: (dict(list(value.items())[:5]) if isinstance(value, dict) else value)
            for key, value in baseline.items()}


# ---------------------------------------------------------------- damage strategies

def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON-like document, the root excluded."""
    found: list[tuple[Any, ...]] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) \
        if isinstance(doc, list) else ()
    for key, value in items:
        found.append((*prefix, key))
        found += _paths(value, (*prefix, key))
    return found


@st.composite
def damaged(draw: st.DrawFn, base: Callable[[], Any]) -> Any:
    """A valid document with one to three of its values replaced, keys dropped or added."""
    doc = base()
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "replace", "replace", "drop", "add"]))
        if action == "replace":
            parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(ADVERSARIAL)))
        elif action == "drop":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "", "0", "tp"]))] = \
                copy.deepcopy(draw(st.sampled_from(ADVERSARIAL)))
        else:
            parent.append(copy.deepcopy(parent[path[-1]]))
    return doc


def _json_text(doc: Any) -> str:
    return json.dumps(doc).replace('"HUGE"', HUGE)


def _yaml_text(doc: Any) -> str:
    return yaml.safe_dump(doc).replace("HUGE", HUGE)


def _jsonl_text(rows: list[Any]) -> str:
    return "".join(_json_text(row) + "\n" for row in rows)


def _csv_text(rows: list[dict[str, Any]]) -> str:
    return pd.DataFrame(rows).to_csv(index=False)


@st.composite
def damaged_csv(draw: st.DrawFn, base: Callable[[], list[dict[str, Any]]]) -> str:
    """A valid CSV with cells replaced, a column dropped or renamed."""
    rows = base()
    columns = list(rows[0])
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["cell", "cell", "cell", "drop", "rename"]))
        column = draw(st.sampled_from(columns))
        if action == "cell":
            rows[draw(st.integers(0, len(rows) - 1))][column] = draw(st.sampled_from(CSV_CELLS))
        elif action == "drop" and len(columns) > 1:
            columns.remove(column)
            for row in rows:
                row.pop(column, None)
        elif action == "rename":
            for row in rows:
                row[column + "x"] = row.pop(column, "")
            columns[columns.index(column)] = column + "x"
    return _csv_text(rows)


@st.composite
def damaged_bytes(draw: st.DrawFn, text: st.SearchStrategy[str]) -> bytes:
    """A text (already damaged or not) cut short, or given bytes that are not UTF-8,
    a byte-order mark, nesting thousands deep, or nothing at all."""
    data = draw(text).encode("utf-8", "surrogatepass")
    action = draw(st.sampled_from(["none", "none", "truncate", "latin1", "bom", "deep",
                                   "empty", "nul"]))
    if action == "truncate":
        return data[:draw(st.integers(0, max(len(data) - 1, 0)))]
    if action == "latin1":
        at = draw(st.integers(0, len(data)))
        return data[:at] + b"\xff\xfe\xe9" + data[at:]
    if action == "bom":
        return b"\xef\xbb\xbf" + data
    if action == "deep":
        depth = draw(st.sampled_from([1000, 100_000]))
        return b"[" * depth + b"]" * depth
    if action == "empty":
        return b""
    if action == "nul":
        return data.replace(b",", b"\x00", 1)
    return data


# ---------------------------------------------------------------- the input kinds

@dataclass(frozen=True)
class Case:
    """One fuzzed input: files to write (name -> bytes) and the command line, in which
    ``{dir}`` stands for the folder the files are written in."""
    kind: str
    files: dict[str, bytes]
    argv: list[str]


def _file_case(kind: str, name: str, argv: list[str],
               text: st.SearchStrategy[str]) -> st.SearchStrategy[Case]:
    return damaged_bytes(text).map(lambda data: Case(kind, {name: data}, argv))


def _out(*argv: str) -> list[str]:
    return [*argv, "--out", "{dir}/out"]


def _flag_case() -> st.SearchStrategy[Case]:
    flags = ["--replicas", "--tp", "--pp", "--max-num-seqs", "--max-num-batched-tokens",
             "--block-size", "--gpu-memory-utilization", "--ttft-slo", "--tpot-slo",
             "--max-model-len", "--rate", "--time-scale", "--max-requests", "--start",
             "--duration", "--seed", "--speculative-config", "--cpu-offload-gb",
             "--kv-cache-dtype", "--dtype", "--scheduler", "--engine", "--model", "--gpu",
             "--vllm-args", "--format", "--routing", "--steady-lifetimes"]
    values = ["0", "-1", "1", "nan", "inf", "-inf", "1e400", HUGE, "", "abc", "2", "0.5",
              "9223372036854775808", "1e-320", "{}", "{\"num_speculative_tokens\": -1}",
              "fp8", "zipf:nan", "--tp 0", "none", "sarathi", "h100@500W", "h100@0W",
              "h100@1e400W", "a100@401W", "h100@W", "@500W"]
    trace = _json_text(_trace_doc())

    @st.composite
    def build(draw: st.DrawFn) -> Case:
        argv = ["simulate", "--workload", "{dir}/trace.json", *SERVING]
        for _ in range(draw(st.integers(1, 3))):
            argv += [draw(st.sampled_from(flags)), draw(st.sampled_from(values))]
        return Case("cli_flags", {"trace.json": trace.encode()}, _out(*argv))

    generate = st.builds(
        lambda flag, value: Case("cli_flags", {}, ["workload", "generate", "--out",
                                                   "{dir}/gen.json", flag, value]),
        st.sampled_from(["--num-requests", "--rate", "--seed", "--prompt", "--output",
                         "--cv", "--arrival"]),
        st.sampled_from([*values, "uniform:low=5,high=1", "lognormal:mean=nan",
                         "fixed:value=0"]))
    return st.one_of(build(), generate)


def _filesystem_case() -> st.SearchStrategy[Case]:
    def case(name: str) -> Case:
        if name == "folder":
            return Case("filesystem", {"trace.json/x": b"{}"},
                        ["simulate", "--workload", "{dir}/trace.json", *SERVING])
        if name == "fifo":
            return Case("filesystem", {"FIFO:trace.json": b""},
                        ["simulate", "--workload", "{dir}/trace.json", *SERVING])
        if name == "missing":
            return Case("filesystem", {}, ["simulate", "--workload", "{dir}/nope.json",
                                           *SERVING])
        if name == "long":
            return Case("filesystem", {}, ["simulate", "--workload",
                                           "{dir}/" + "x" * 300 + ".json", *SERVING])
        if name == "out_is_file":
            return Case("filesystem", {"trace.json": _json_text(_trace_doc()).encode(),
                                       "out": b"a file"},
                        _out("simulate", "--workload", "{dir}/trace.json", *SERVING))
        if name == "out_under_file":
            return Case("filesystem", {"trace.json": _json_text(_trace_doc()).encode(),
                                       "f": b"a file"},
                        ["simulate", "--workload", "{dir}/trace.json", *SERVING,
                         "--out", "{dir}/f/out"])
        if name == "dev_zero":
            return Case("filesystem", {}, ["simulate", "--workload", "/dev/zero", *SERVING])
        if name == "symlink_loop":
            return Case("filesystem", {"LOOP:trace.json": b""},
                        ["simulate", "--workload", "{dir}/trace.json", *SERVING])
        return Case("filesystem", {"trace.json": _json_text(_trace_doc()).encode()},
                    ["simulate", "--workload", "{dir}/trace.json", *SERVING,
                     "--deployment", "{dir}/missing.yaml"])
    return st.sampled_from(["folder", "fifo", "missing", "long", "out_is_file",
                            "out_under_file", "dev_zero", "symlink_loop",
                            "missing_deployment"]).map(case)


def _trace_files(name: str) -> dict[str, bytes]:
    return {name: _json_text(_trace_doc()).encode()}


KINDS: dict[str, Callable[[], st.SearchStrategy[Case]]] = {
    "trace_json": lambda: _file_case(
        "trace_json", "trace.json", _out("simulate", "--workload", "{dir}/trace.json", *SERVING),
        damaged(_trace_doc).map(_json_text)),
    "trace_jsonl": lambda: _file_case(
        "trace_jsonl", "trace.jsonl",
        _out("simulate", "--workload", "{dir}/trace.jsonl", *SERVING),
        damaged(lambda: _requests()).map(_jsonl_text)),
    "azure_csv": lambda: _file_case(
        "azure_csv", "azure.csv", _out("simulate", "--workload", "{dir}/azure.csv", *SERVING),
        damaged_csv(_azure_rows)),
    "burstgpt_csv": lambda: _file_case(
        "burstgpt_csv", "burst.csv", _out("simulate", "--workload", "{dir}/burst.csv", *SERVING),
        damaged_csv(_burstgpt_rows)),
    "mooncake_jsonl": lambda: _file_case(
        "mooncake_jsonl", "mooncake.jsonl",
        _out("simulate", "--workload", "{dir}/mooncake.jsonl", *SERVING),
        damaged(_mooncake_rows).map(_jsonl_text)),
    "deployment_yaml": lambda: damaged_bytes(damaged(_deployment_doc).map(_yaml_text)).map(
        lambda data: Case("deployment_yaml", {"d.yaml": data, **_trace_files("trace.json")},
                          _out("simulate", "--workload", "{dir}/trace.json",
                               "--deployment", "{dir}/d.yaml"))),
    "training_job": lambda: _file_case(
        "training_job", "train.json", _out("simulate", "--workload", "{dir}/train.json"),
        damaged(_training_doc).map(_json_text)),
    "plan_file": lambda: damaged_bytes(damaged(_plan_doc).map(_yaml_text)).map(
        lambda data: Case("plan_file", {"plan.yaml": data,
                                        "train.json": _json_text(_training_doc()).encode()},
                          _out("simulate", "--workload", "{dir}/train.json",
                               "--deployment", "{dir}/plan.yaml"))),
    "model_config": lambda: damaged_bytes(damaged(lambda: dict(MODEL_CONFIG)).map(
        _json_text)).map(lambda data: Case(
            "model_config", {"model/config.json": data, **_trace_files("trace.json")},
            _out("simulate", "--workload", "{dir}/trace.json", "--model", "{dir}/model",
                 "--gpu", "h100", "--engine", "none"))),
    "gpu_spec": lambda: damaged_bytes(damaged(_gpu_doc).map(_json_text)).map(
        lambda data: Case("gpu_spec", {"gpu.json": data, **_trace_files("trace.json")},
                          _out("simulate", "--workload", "{dir}/trace.json", "--model",
                               "llama-3-8b", "--gpu", "{dir}/gpu.json", "--engine", "none"))),
    "validation_records": lambda: damaged_bytes(damaged(_record_doc).map(_json_text)).map(
        lambda data: Case("validation_records", {"records/r.json": data}, ["@records"])),
    "validation_baseline": lambda: damaged_bytes(damaged(_baseline_doc).map(_json_text)).map(
        lambda data: Case("validation_baseline", {"baseline.json": data}, ["@baseline"])),
    "cli_flags": _flag_case,
    "filesystem": _filesystem_case,
}


# ---------------------------------------------------------------- the judge

class Hang(BaseException):
    """The time limit passed."""


def _alarm(signum: int, frame: object) -> None:
    raise Hang


@dataclass
class Verdict:
    outcome: str  # clean, ok, traceback, hang, suspicious
    detail: str


def _materialize(case: Case, folder: Path) -> list[str]:
    for name, data in case.files.items():
        kind, _, name = name.rpartition(":")
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "FIFO":
            os.mkfifo(path)
        elif kind == "LOOP":
            os.symlink(path, path)
        else:
            path.write_bytes(data)
    return [arg.replace("{dir}", str(folder)) for arg in case.argv]


def _library_call(argv: list[str], folder: Path) -> tuple[int, str]:
    """The validation inputs, read by the gate's own readers (a whole ``validate`` run
    takes minutes; its readers are the edge): exit 2 for ClusterSimError."""
    try:
        if argv[0] == "@records":
            predict_records(load_records(folder / "records"))
        else:
            _read_baseline(folder / "baseline.json")
    except ClusterSimError as error:
        return 2, f"error: {error}\n"
    return 0, ""


def _check_outputs(out: Path) -> str | None:
    """What is wrong with a run's outputs (None when they hold)."""
    if (out / "training_summary.json").is_file():
        summary = json.loads((out / "training_summary.json").read_text())
        step, mfu = summary.get("step_s"), summary.get("mfu")
        if not (isinstance(step, float) and math.isfinite(step) and step > 0):
            return f"training step_s {step!r}"
        if not (isinstance(mfu, float) and 0 < mfu <= 1):
            return f"training mfu {mfu!r}"
        return None
    if not (out / "summary.json").is_file():
        return "no summary.json"
    summary = json.loads((out / "summary.json").read_text())
    counts = summary["requests"]
    if counts["submitted"] != counts["finished"] + counts["rejected"]:
        return f"requests {counts}"
    rows = pd.read_csv(out / "requests.csv")
    if len(rows) != counts["finished"]:
        return f"{len(rows)} rows for {counts['finished']} finished requests"
    if counts["finished"] and summary["ttft_s"]["mean"] is None:
        return "ttft_s null"
    times = rows[["arrival_s", "first_scheduled_s", "first_token_s", "finish_s", "ttft_s",
                  "e2e_s", "queueing_delay_s"]]
    if times.isna().any().any() or (times < 0).any().any():
        return "NaN or negative time in requests.csv"
    if (rows["e2e_s"] <= 0).any() or (rows["e2e_s"] > 1e7).any():
        return f"e2e_s out of range ({rows['e2e_s'].min()!r}..{rows['e2e_s'].max()!r})"
    if not ((rows["arrival_s"] <= rows["first_scheduled_s"])
            & (rows["first_scheduled_s"] <= rows["first_token_s"])
            & (rows["first_token_s"] <= rows["finish_s"])).all():
        return "timestamps not causal"
    return None


def _run(case: Case, folder: Path, timeout_s: float) -> tuple[int, str]:
    """The exit status and stderr of a case's command line, or Hang."""
    stdout, stderr = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        argv = _materialize(case, folder)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            if argv[0].startswith("@"):
                code, text = _library_call(argv, folder)
                stderr.write(text)
            else:
                code = run_command(app, ["clustersim", *argv])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return code, stderr.getvalue()


def judge(case: Case, timeout_s: float = 20.0) -> Verdict:
    """Run one case's command line in this process and sort its answer."""
    folder = Path(tempfile.mkdtemp(prefix="fuzz-"))
    try:
        try:
            code, err = _run(case, folder, timeout_s)
        except Hang:
            return Verdict("hang", f"no answer within {timeout_s:g} s")
        except BaseException as error:  # escaped even the command line's own handler
            return Verdict("traceback", f"{type(error).__name__}: {error}"[:300])
        problem = _verdict_outputs(folder) if code == 0 else None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    lines = [line for line in err.splitlines() if line.strip()]
    if code == 2 and len(lines) == 1 and lines[0].startswith("error: "):
        return Verdict("clean", lines[0][:300])
    if code == 0 and "Traceback" not in err:
        return Verdict("suspicious", problem) if problem else Verdict("ok", "")
    return Verdict("traceback", f"exit {code}: " + " | ".join(lines[-3:])[:500])


def _verdict_outputs(folder: Path) -> str | None:
    out = folder / "out"
    if not out.exists():
        return None  # a command without outputs (or asked for none)
    try:
        return _check_outputs(out)
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"unreadable outputs ({type(error).__name__}: {error})"


def base_cases() -> dict[str, Case]:
    """Every file kind's undamaged input: each must be a valid run (``ok``), or the
    fuzzer would only ever damage inputs that were already refused."""
    trace = _trace_files("trace.json")
    train = {"train.json": _json_text(_training_doc()).encode()}
    serving = ["simulate", "--workload", "{dir}/trace.json"]
    return {
        "trace_json": Case("trace_json", trace, _out(*serving, *SERVING)),
        "trace_jsonl": Case("trace_jsonl", {"t.jsonl": _jsonl_text(_requests()).encode()},
                            _out("simulate", "--workload", "{dir}/t.jsonl", *SERVING)),
        "azure_csv": Case("azure_csv", {"a.csv": _csv_text(_azure_rows()).encode()},
                          _out("simulate", "--workload", "{dir}/a.csv", *SERVING)),
        "burstgpt_csv": Case("burstgpt_csv", {"b.csv": _csv_text(_burstgpt_rows()).encode()},
                             _out("simulate", "--workload", "{dir}/b.csv", *SERVING)),
        "mooncake_jsonl": Case("mooncake_jsonl",
                               {"m.jsonl": _jsonl_text(_mooncake_rows()).encode()},
                               _out("simulate", "--workload", "{dir}/m.jsonl", *SERVING)),
        "deployment_yaml": Case("deployment_yaml",
                                {"d.yaml": _yaml_text(_deployment_doc()).encode(), **trace},
                                _out(*serving, "--deployment", "{dir}/d.yaml")),
        "training_job": Case("training_job", train,
                             _out("simulate", "--workload", "{dir}/train.json")),
        "plan_file": Case("plan_file", {"plan.yaml": _yaml_text(_plan_doc()).encode(), **train},
                          _out("simulate", "--workload", "{dir}/train.json", "--deployment",
                               "{dir}/plan.yaml")),
        "model_config": Case("model_config",
                             {"model/config.json": _json_text(MODEL_CONFIG).encode(), **trace},
                             _out(*serving, "--model", "{dir}/model", "--gpu", "h100",
                                  "--engine", "none")),
        "gpu_spec": Case("gpu_spec", {"gpu.json": _json_text(_gpu_doc()).encode(), **trace},
                         _out(*serving, "--model", "llama-3-8b", "--gpu", "{dir}/gpu.json",
                              "--engine", "none")),
        "validation_records": Case("validation_records",
                                   {"records/r.json": _json_text(_record_doc()).encode()},
                                   ["@records"]),
        "validation_baseline": Case("validation_baseline",
                                    {"baseline.json": _json_text(_baseline_doc()).encode()},
                                    ["@baseline"]),
    }
