"""The fuzz suite: for every input kind a user can hand clustersim, damaged inputs get a
clean one-line error or a valid result, never a traceback, a hang or NaN in the outputs
(the kinds and the judge are in ``tests/fuzzing.py``; ``bench/fuzz.py`` runs the same
strategies over thousands of inputs)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.fuzzing import KINDS, Case, Verdict, base_cases, judge

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
    serving = ["--model", "llama-3-8b", "--gpu", "h100", "--engine", "none"]
    ok = judge(Case("t", {"t.json": trace},
                    ["simulate", "--workload", "{dir}/t.json", *serving, "--out", "{dir}/out"]))
    assert ok == Verdict("ok", "")
    clean = judge(Case("t", {"t.json": trace},
                       ["simulate", "--workload", "{dir}/t.json", *serving, "--tp", "0"]))
    assert clean.outcome == "clean" and "parallelism.tp" in clean.detail
    broken = judge(Case("t", {"r/r.json": b'{"records": [{"id": 1}]}'}, ["@records"]))
    assert broken.outcome == "clean", broken
