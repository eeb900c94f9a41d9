"""The fuzz suite: for every input kind a user can hand clustersim, damaged inputs get a
clean one-line error or a valid result, never a traceback, a hang or NaN in the outputs
(the kinds and the judge are in ``tests/fuzzing.py``; ``bench/fuzz.py`` runs the same
strategies over thousands of inputs)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.fuzzing import KINDS, MODEL_CONFIG, SERVING, Case, Verdict, base_cases, judge

EXAMPLES = 12  # per kind; derandomized, so CI sees the same inputs on every run


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_damaged_inputs_get_a_clean_error_or_a_valid_result(kind: str) -> None:
    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck))
    @given(KINDS[kind]())
    def check(case: Case) -> None:
        verdict = judge(case, timeout_s=30)
        assert verdict.outcome in ("clean", "ok"), \
            f"{verdict.outcome}: {verdict.detail}\n{case.argv}\n{case.files}"

    check()


@pytest.mark.parametrize("kind", sorted(base_cases()))
def test_every_kind_starts_from_a_valid_input(kind: str) -> None:
    assert judge(base_cases()[kind]) == Verdict("ok", "")


def test_the_judge_tells_the_outcomes_apart() -> None:
    """The judge itself: a valid run is ok, a bad flag or record a clean error."""
    trace = (b'{"requests": [{"arrival_s": 0, "prompt_tokens": 50, "output_tokens": 4},'
             b' {"arrival_s": 0.1, "prompt_tokens": 80, "output_tokens": 1}]}')
    ok = judge(Case("t", {"t.json": trace},
                    ["simulate", "--workload", "{dir}/t.json", *SERVING, "--out", "{dir}/out"]))
    assert ok == Verdict("ok", "")
    clean = judge(Case("t", {"t.json": trace},
                       ["simulate", "--workload", "{dir}/t.json", *SERVING, "--tp", "0"]))
    assert clean.outcome == "clean" and "parallelism.tp" in clean.detail
    broken = judge(Case("t", {"r/r.json": b'{"records": [{"id": 1}]}'}, ["@records"]))
    assert broken.outcome == "clean", broken


def _trace(arrival: str = "0", prompt: str = "100") -> bytes:
    return (f'{{"requests": [{{"arrival_s": {arrival}, "prompt_tokens": {prompt}, '
            f'"output_tokens": 4}}]}}').encode()


def _azure(tokens: str, stamp: str = "2023-11-16 18:15:47") -> bytes:
    return ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46+00:00,100,5\n"
            f"{stamp},100,{tokens}\n").encode()


RUN = ["simulate", "--workload", "{dir}/t.json", *SERVING, "--out", "{dir}/out"]
AZURE = ["simulate", "--workload", "{dir}/a.csv", *SERVING, "--out", "{dir}/out"]
MODEL = ["simulate", "--workload", "{dir}/t.json", "--model", "{dir}/m", "--gpu", "h100",
         "--engine", "none"]


def _config(**fields: object) -> bytes:
    return json.dumps({**MODEL_CONFIG, **fields}).encode()


@pytest.mark.parametrize(("files", "argv", "outcome", "fragment"), [
    ({"a.csv": _azure("inf")}, AZURE, "clean", "GeneratedTokens"),  # once wrapped to -2^63
    ({"a.csv": _azure("7", "2023-11-16 18:15:47+05:00")}, AZURE, "ok", ""),  # mixed zones
    ({"t.json": _trace(arrival="1e15")}, RUN, "clean", "arrival_s"),  # once zero latency
    ({"t.json": _trace(prompt=str(2**63))}, RUN, "clean", "prompt_tokens"),
    ({"t.json": _trace(arrival="9" * 5000)}, RUN, "clean", "64 bits"),
    ({"t.json": _trace(arrival="NaN")}, RUN, "clean", "NaN"),
    ({"t.json": b"[" * 100_000 + b"]" * 100_000}, RUN, "clean", "nested"),
    ({"t.json": b'{"requests": [\xff]}'}, RUN, "clean", "UTF-8"),
    ({"t.json": _trace(), "m/config.json": _config(hidden_size="5")}, MODEL, "clean",
     "hidden_size"),
    ({"t.json": _trace(), "m/config.json": _config(num_attention_heads=0)}, MODEL, "clean",
     "num_attention_heads"),
    ({"j.json": json.dumps({"kind": "training", "model": "llama-3-8b", "gpu": "h100",
                            "seq_len": 2048, "global_batch": 4_000_000,
                            "plan": {"pp": 2}}).encode()},
     ["simulate", "--workload", "{dir}/j.json"], "clean", "pipeline slots"),  # once a hang
])
def test_the_inputs_the_first_fuzzing_broke_on(files: dict[str, bytes], argv: list[str],
                                               outcome: str, fragment: str) -> None:
    verdict = judge(Case("regression", files, argv))
    assert verdict.outcome == outcome and fragment in verdict.detail, verdict
