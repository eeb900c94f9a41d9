"""The reference executor: the torch model against a plain full forward, and the driver
that replays a trace through the scheduler (with a fake executor and on CPU)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from profiles.errors import ClusterSimError
from simulator.serving.engine import resolve, simulate
from simulator.serving.scheduler import StepPlan
from tests.conftest import make_deployment, make_trace
from validation.reference.driver import BlockTables, run_reference
from validation.reference.executor import StepRows
from workloads.loaders import save_workload


class FakeClock:
    """Simulated wall clock: only sleeping and running steps move it."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.now_s += seconds


class CostModelExecutor:
    """Runs nothing: each step takes the cost model's time on the fake clock; checks the
    rows' block tables as it goes."""

    def __init__(self, clock: FakeClock, cost_model: object) -> None:
        self.clock = clock
        self.cost_model = cost_model
        self.rows: list[StepRows] = []

    def run(self, rows: StepRows) -> tuple[list[int], float]:
        from profiles.cost_model import BatchShape
        self.rows.append(rows)
        # The KV cache grows block by block: each row holds exactly the blocks its
        # context and new tokens fill (16 tokens a block), no two rows share one.
        for table, q, c in zip(rows.block_tables, rows.query_lens, rows.context_lens,
                               strict=True):
            assert len(table) == -(-(c + q) // 16)
        held = [block for table in rows.block_tables for block in table]
        assert len(held) == len(set(held))
        shape = BatchShape(list(rows.query_lens), list(rows.context_lens), sum(rows.sampled))
        seconds = self.cost_model.predict(shape).total_s  # type: ignore[attr-defined]
        self.clock.now_s += seconds
        return [7] * sum(rows.sampled), seconds


class PlanRecorder:
    def __init__(self) -> None:
        self.shapes: list[tuple[list[int], list[int]]] = []

    def on_step(self, replica_id: int, spans: Sequence[tuple[float, float]], plan: StepPlan,
                cost: object, used: int) -> None:
        self.shapes.append((list(plan.num_new_tokens), list(plan.context_lens)))


def _trace() -> object:
    return make_trace([0.0, 0.0, 0.01, 0.5, 0.52, 3.0], [300, 40, 1200, 64, 900, 5],
                      [20, 64, 5, 30, 8, 3])


def _pressure_trace() -> object:
    """Five requests that outgrow 60 blocks of 16 tokens together (2,000 > 960 tokens)."""
    return make_trace([0.0, 0.0, 0.0, 0.01, 0.02], [200] * 5, [200] * 5)


@pytest.mark.parametrize("policy", ["prefill-first", "stall-free", "running-first", "orca"])
@pytest.mark.parametrize(("trace_of", "num_blocks", "max_model_len"),
                         [(_trace, 90, 1280), (_pressure_trace, 60, 960)])
def test_the_driver_runs_exactly_the_simulators_batches(policy: str, trace_of: object,
                                                        num_blocks: int,
                                                        max_model_len: int) -> None:
    """With steps that take the cost model's time on a simulated clock, the driver makes
    the simulator's schedule: the same step shapes in the same order, the same TTFT, E2E
    and preemptions per request, with and without KV pressure."""
    deployment = make_deployment(**{"scheduler.policy": policy,
                                    "scheduler.max_model_len": max_model_len,
                                    "scheduler.num_gpu_blocks_override": num_blocks})
    trace = trace_of()  # type: ignore[operator]
    recorder = PlanRecorder()
    simulated = simulate(deployment, trace, recorders=[recorder])  # type: ignore[arg-type]
    assert simulated.ok and simulated.requests is not None
    resolved = resolve(deployment)
    clock = FakeClock()
    executor = CostModelExecutor(clock, resolved.cost_models[0])
    run = run_reference(resolved, trace, executor, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    assert [(list(r.query_lens), list(r.context_lens)) for r in executor.rows] == recorder.shapes
    for column in ("ttft_s", "e2e_s", "num_preemptions"):
        assert run.requests[column].tolist() == pytest.approx(
            simulated.requests[column].tolist(), rel=1e-12)
    assert len(run.steps) == len(recorder.shapes)
    assert run.steps["device_s"].sum() == pytest.approx(
        sum(run.steps["end_s"] - run.steps["start_s"]), rel=1e-12)


def test_a_preempted_request_recomputes_its_own_tokens() -> None:
    """After a recompute preemption, the request's rows restart at context 0 with its
    prompt ids followed by the tokens it sampled (7s from the fake executor)."""
    deployment = make_deployment(**{"scheduler.policy": "prefill-first",
                                    "scheduler.max_model_len": 960,
                                    "scheduler.num_gpu_blocks_override": 60})
    resolved = resolve(deployment)
    clock = FakeClock()
    executor = CostModelExecutor(clock, resolved.cost_models[0])
    run = run_reference(resolved, _pressure_trace(), executor, clock=clock,  # type: ignore[arg-type]
                        sleep=clock.sleep)
    assert run.requests["num_preemptions"].sum() > 0
    first_ids: dict[int, list[int]] = {}
    recomputed = 0
    for rows in executor.rows:
        offset = 0
        for q, c in zip(rows.query_lens, rows.context_lens, strict=True):
            ids = list(rows.token_ids[offset:offset + q])
            offset += q
            if c == 0 and q > 1:
                key = len(first_ids)
                match = [k for k, v in first_ids.items() if ids[:len(v)] == v]
                if match:
                    recomputed += 1
                    tail = ids[len(first_ids[match[0]]):]
                    assert tail == [7] * len(tail)
                else:
                    first_ids[key] = ids
    assert recomputed > 0


def test_block_tables_grow_by_blocks_and_return_them() -> None:
    tables = BlockTables(num_blocks=6, block_size=16)
    assert tables.ensure(0, 17) == [0, 1]  # 17 tokens need two blocks
    assert tables.ensure(1, 16) == [2]
    assert tables.ensure(0, 32) == [0, 1]  # still two
    assert tables.ensure(0, 33) == [0, 1, 3]
    tables.free(0)
    assert tables.num_free == 5
    with pytest.raises(RuntimeError, match="exhausted"):
        tables.ensure(2, 6 * 16)


@pytest.mark.parametrize(("fields", "message"), [
    ({"parallelism.tp": 2}, "parallelism"),
    ({"replicas": 2}, "parallelism"),
    ({"scheduler.preemption_mode": "swap"}, "preemption_mode"),
    ({"scheduler.enable_prefix_caching": True}, "prefix_caching"),
    ({"scheduler.policy": "static"}, "continuous batching"),
])
def test_what_the_executor_does_not_run_is_refused(fields: dict[str, object],
                                                   message: str) -> None:
    resolved = resolve(make_deployment(**fields))
    with pytest.raises(ClusterSimError, match=message):
        run_reference(resolved, _trace(), CostModelExecutor(FakeClock(), None))  # type: ignore[arg-type]


# ---- the torch model ------------------------------------------------------------------

torch = pytest.importorskip("torch")


def _full_forward_logits(model: object, tokens: list[int]) -> object:
    """The last position's logits by a plain forward over the whole sequence: no cache,
    keys repeated per query head, rotary as complex rotation, an explicit causal mask."""
    import torch.nn.functional as F
    m = model
    spec = m.spec  # type: ignore[attr-defined]
    heads, kv_heads, d = spec.num_attention_heads, spec.num_kv_heads, spec.head_dim
    n = len(tokens)
    positions = torch.arange(n, dtype=torch.float64)
    freqs = 1.0 / (10_000.0 ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    rotation = torch.polar(torch.ones(n, d // 2, dtype=torch.float64),
                           positions[:, None] * freqs[None, :])[:, None, :]

    def rope(x: object) -> object:
        z = torch.complex(x[..., : d // 2].double(), x[..., d // 2:].double()) * rotation
        return torch.cat((z.real, z.imag), dim=-1).float()

    def norm(x: object, w: object) -> object:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w

    x = m.embedding[torch.tensor(tokens)]  # type: ignore[attr-defined]
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    for layer in m.layers:  # type: ignore[attr-defined]
        qkv = norm(x, layer.attn_norm) @ layer.qkv
        q = rope(qkv[:, :spec.q_size].view(n, heads, d))
        k = rope(qkv[:, spec.q_size:spec.q_size + spec.kv_size].view(n, kv_heads, d))
        v = qkv[:, spec.q_size + spec.kv_size:].reshape(n, kv_heads, d)
        k = k.repeat_interleave(heads // kv_heads, dim=1)
        v = v.repeat_interleave(heads // kv_heads, dim=1)
        scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(d)
        scores = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        x = x + torch.einsum("hqk,khd->qhd", scores, v).reshape(n, -1) @ layer.o
        gate, up = (norm(x, layer.mlp_norm) @ layer.gate_up).chunk(2, dim=-1)
        x = x + (F.silu(gate) * up) @ layer.down
    return norm(x[-1:], m.final_norm) @ m.lm_head  # type: ignore[attr-defined]


def test_paged_chunked_steps_match_a_full_forward(tiny_model_path: str) -> None:
    """Request A: a 13-token prompt in chunks of 5 and 8, then two decodes; request B: a
    3-token prompt, then decodes, in the same steps. Each sampled row's logits equal a
    plain full forward over that request's tokens so far (fp32, 1e-4)."""
    from profiles.models import load_model
    from validation.reference.model import ReferenceModel
    model = ReferenceModel(load_model(tiny_model_path), num_blocks=12, block_size=4,
                           device="cpu", dtype="fp32", seed=3)
    a, b = list(range(100, 113)), [5, 6, 7]
    tables = {"a": [3, 0, 7, 1, 9], "b": [4, 11]}  # scattered physical blocks
    steps = [  # (rows of (request, first new position, new tokens), sampled)
        [("a", 0, 5, False), ("b", 0, 3, True)],
        [("a", 5, 8, True), ("b", 3, 1, True)],
        [("a", 13, 1, True), ("b", 4, 1, True)],
        [("a", 14, 1, True)],
    ]
    sequences = {"a": a, "b": b}
    for step in steps:
        ids: list[int] = []
        for name, start, count, _ in step:
            ids += sequences[name][start:start + count]
        rows = StepRows(ids, [s[2] for s in step], [s[1] for s in step],
                        [tables[s[0]] for s in step], [s[3] for s in step])
        logits = model.forward(rows)  # one row per sampled request
        sampled = [row for row in step if row[3]]
        assert logits.shape == (len(sampled), 1000)
        for index, (name, start, count, _) in enumerate(sampled):
            expected = _full_forward_logits(model, sequences[name][:start + count])
            assert torch.allclose(logits[index:index + 1], expected, rtol=1e-4, atol=1e-4)
            sequences[name] = sequences[name] + [int(logits[index].argmax())]


def test_a_reference_run_on_cpu_produces_every_token(tiny_model_path: str,
                                                     tmp_path: Path) -> None:
    """The tiny model on CPU in real time: every request gets all its output tokens, the
    steps carry exactly the scheduled tokens, and the CLI writes and compares the run."""
    trace = make_trace([0.0, 0.0, 0.02, 0.05], [40, 7, 90, 20], [6, 9, 3, 5])
    trace_path = tmp_path / "trace.json"
    save_workload(trace, trace_path)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "reference", "run", "--workload", str(trace_path), "--model", tiny_model_path,
        "--gpu", "a100", "--device", "cpu", "--dtype", "fp32", "--scheduler", "stall-free",
        "--max-num-batched-tokens", "64", "--max-model-len", "128", "--num-gpu-blocks", "64",
        "--out", str(out)])
    assert result.exit_code == 0, result.output
    import pandas as pd
    steps = pd.read_csv(out / "steps.csv")
    requests = pd.read_csv(out / "requests.csv")
    assert (requests["finish_s"] >= requests["first_token_s"]).all()
    assert steps["num_tokens"].sum() == 157 + (23 - 4)  # prompts + outputs after the first
    assert steps["num_tokens"].max() <= 64
    assert (steps["device_s"] > 0).all()
    compare = CliRunner().invoke(app, ["reference", "compare", str(out)])
    assert compare.exit_code == 0, compare.output
    assert "per-step" in compare.output and "ttft" in compare.output
    records = tmp_path / "records"
    records.mkdir()
    added = CliRunner().invoke(app, ["reference", "record", str(out), "--id", "cpu-tiny",
                                     "--records", str(records)])
    assert added.exit_code == 0, added.output
    again = CliRunner().invoke(app, ["reference", "record", str(out), "--id", "cpu-tiny",
                                     "--records", str(records)])
    assert again.exit_code == 2 and "already recorded" in again.output
    import validation
    rows = validation.predict_records(validation.load_records(records)).set_index("id")
    assert len(rows) == len(validation.REFERENCE_STATISTICS)
    assert (records / "runs" / "cpu-tiny" / "steps.csv").is_file()
    assert rows.loc["cpu-tiny:ttft_p50", "measured"] == pytest.approx(
        requests["ttft_s"].median() * 1e3)
    assert rows.loc["cpu-tiny:step_time_p50", "measured"] == pytest.approx(
        steps["device_s"].median() * 1e3)
    assert (rows["predicted"] > 0).all()


def test_decode_rows_of_mixed_lengths_match_a_full_forward(tiny_model_path: str) -> None:
    """Six prompts of 3-40 tokens prefilled in one step, then one decode step of all six
    (attention in length groups): every row's logits equal a plain full forward."""
    from profiles.models import load_model
    from validation.reference.model import ReferenceModel
    model = ReferenceModel(load_model(tiny_model_path), num_blocks=80, block_size=4,
                           device="cpu", dtype="fp32", seed=5)
    lengths = [40, 3, 17, 9, 26, 5]
    prompts = [[(7 * r + i) % 1000 for i in range(n)] for r, n in enumerate(lengths)]
    tables = [list(range(79 - 11 * r, 79 - 11 * r - 11, -1)) for r in range(6)]
    first = model.forward(StepRows([t for p in prompts for t in p], lengths, [0] * 6, tables,
                                   [True] * 6))
    sequences = [[*p, int(first[r].argmax())] for r, p in enumerate(prompts)]
    logits = model.forward(StepRows([s[-1] for s in sequences], [1] * 6, lengths, tables,
                                    [True] * 6))
    for r, sequence in enumerate(sequences):
        expected = _full_forward_logits(model, sequence)
        assert torch.allclose(logits[r:r + 1], expected, rtol=1e-4, atol=1e-4)


def test_a_run_on_a_missing_gpu_is_a_one_line_error(tiny_model_path: str,
                                                    tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    trace_path = tmp_path / "trace.json"
    save_workload(make_trace([0.0], [8], [2]), trace_path)
    result = CliRunner().invoke(app, [
        "reference", "run", "--workload", str(trace_path), "--model", tiny_model_path,
        "--gpu", "a100", "--num-gpu-blocks", "8", "--max-model-len", "64",
        "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.output.startswith("error: --device cuda: no CUDA/ROCm device is visible")
    assert not (tmp_path / "run").exists()
