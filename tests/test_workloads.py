"""Trace loaders (each format: a sample parses, a corrupted one is refused) and generators."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.errors import ClusterSimError
from workloads.generators import GeneratorSpec, generate, parse_distribution
from workloads.loaders import load_workload, save_workload

AZURE = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:15:47.1000000,879,19
"""
BURSTGPT = """Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type
5,ChatGPT,472,18,490,Conversation log
45,ChatGPT,1087,0,1087,Conversation log
118,GPT-4,417,276,693,Conversation log
"""
MOONCAKE = """{"timestamp": 0, "input_length": 6955, "output_length": 52, "hash_ids": [0, 1, 2]}
{"timestamp": 1500, "input_length": 6472, "output_length": 26, "hash_ids": [0, 3]}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_azure_csv_parses_and_sorts_by_time(tmp_path: Path) -> None:
    trace = load_workload(write(tmp_path, "azure.csv", AZURE))
    assert trace.metadata["format"] == "azure"
    assert trace.prompt_tokens.tolist() == [374, 879, 396]
    assert trace.arrival_s.tolist() == pytest.approx([0.0, 0.41941, 4.314579])


def test_azure_csv_bad_token_count_names_row_and_column(tmp_path: Path) -> None:
    bad = AZURE.replace("396,109", "396,-3")
    with pytest.raises(ClusterSimError, match=r"row 3: column 'GeneratedTokens'"):
        load_workload(write(tmp_path, "azure.csv", bad))
    bad_time = AZURE.replace("2023-11-16 18:15:50.9951690", "yesterday")
    with pytest.raises(ClusterSimError, match=r"row 3: column 'TIMESTAMP'"):
        load_workload(write(tmp_path, "azure.csv", bad_time))


def test_burstgpt_drops_failed_requests(tmp_path: Path) -> None:
    trace = load_workload(write(tmp_path, "burst.csv", BURSTGPT))
    assert trace.metadata["format"] == "burstgpt"
    assert len(trace) == 2 and trace.metadata["dropped_failed_requests"] == 1
    assert trace.arrival_s.tolist() == [5.0, 118.0]


def test_burstgpt_missing_column_is_named(tmp_path: Path) -> None:
    bad = BURSTGPT.replace("Response tokens", "Reply tokens")
    with pytest.raises(ClusterSimError, match="missing column.*Response tokens"):
        load_workload(write(tmp_path, "burst.csv", bad))
    with pytest.raises(ClusterSimError, match="neither Azure"):
        load_workload(write(tmp_path, "other.csv", "a,b\n1,2\n"))


def test_mooncake_jsonl_keeps_block_hashes(tmp_path: Path) -> None:
    trace = load_workload(write(tmp_path, "mooncake.jsonl", MOONCAKE))
    assert trace.metadata["format"] == "mooncake"
    assert trace.arrival_s.tolist() == [0.0, 1.5]
    assert trace.extras["block_hashes"] == [[0, 1, 2], [0, 3]]


def test_mooncake_corrupt_line_is_named(tmp_path: Path) -> None:
    bad = MOONCAKE + '{"timestamp": 9, "input_length": "many", "output_length": 5}\n'
    with pytest.raises(ClusterSimError, match="line 3: field 'input_length' must be a number"):
        load_workload(write(tmp_path, "mooncake.jsonl", bad))
    with pytest.raises(ClusterSimError, match="line 2: not valid JSON"):
        load_workload(write(tmp_path, "m.jsonl", '{"timestamp": 0, "input_length": 1, '
                                              '"output_length": 1}\n{oops\n'), "mooncake")


def test_json_trace_and_schema_errors(tmp_path: Path) -> None:
    good = [{"arrival_s": 0.5, "prompt_tokens": 10, "output_tokens": 2, "session_id": "u1"},
            {"arrival_s": 0.1, "prompt_tokens": 20, "output_tokens": 3, "request_id": "x"}]
    trace = load_workload(write(tmp_path, "t.json", json.dumps(good)))
    assert trace.request_ids == ["x", 0] and trace.extras["session_id"] == [None, "u1"]
    bad = [dict(good[0], prompt_tokens=0)]
    with pytest.raises(ClusterSimError, match=r"field '0.prompt_tokens'.*greater than or equal"):
        load_workload(write(tmp_path, "bad.json", json.dumps(bad)))
    with pytest.raises(ClusterSimError, match="not valid JSON"):
        load_workload(write(tmp_path, "broken.json", "[{"))
    with pytest.raises(ClusterSimError, match="line 2.*arrival_s"):
        load_workload(write(tmp_path, "bad.jsonl", json.dumps(good[0]) + "\n"
                            + json.dumps(dict(good[0], arrival_s=-1)) + "\n"))
    with pytest.raises(ClusterSimError, match="no such file"):
        load_workload(tmp_path / "missing.json")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e4, allow_nan=False), st.integers(1, 10**5),
                          st.integers(1, 10**4)), min_size=1, max_size=30),
       st.sampled_from([".json", ".jsonl"]))
def test_save_then_load_round_trips(tmp_path_factory, rows, suffix) -> None:
    """Any valid trace survives a write and a read (to the microsecond)."""
    from workloads.schema import RequestTrace

    trace = RequestTrace.from_columns(*zip(*rows, strict=True))
    path = tmp_path_factory.mktemp("rt") / f"trace{suffix}"
    save_workload(trace, path)
    back = load_workload(path)
    assert back.prompt_tokens.tolist() == trace.prompt_tokens.tolist()
    assert back.output_tokens.tolist() == trace.output_tokens.tolist()
    assert np.allclose(back.arrival_s, trace.arrival_s, atol=1e-6)


def test_generator_is_seeded_and_hits_the_target_mean() -> None:
    spec = GeneratorSpec(num_requests=20000, arrival={"kind": "gamma", "rate_per_s": 5, "cv": 2},
                         prompt={"kind": "lognormal", "mean": 1155, "sigma": 0.5, "max": 3000},
                         output={"kind": "uniform", "low": 10, "high": 20}, seed=7)
    first, second = generate(spec), generate(spec)
    assert first.prompt_tokens.tolist() == second.prompt_tokens.tolist()
    assert first.prompt_tokens.mean() == pytest.approx(1155, rel=0.01)
    assert first.prompt_tokens.max() <= 3000
    assert first.output_tokens.min() >= 10 and first.output_tokens.max() <= 20
    gaps = np.diff(first.arrival_s)
    assert gaps.mean() == pytest.approx(0.2, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(2.0, rel=0.1)


def test_distribution_strings() -> None:
    assert parse_distribution("fixed:value=128", "--output").value == 128
    assert parse_distribution("empirical:values=5|7|9", "--prompt").values == [5, 7, 9]
    with pytest.raises(ClusterSimError, match="expected key=value"):
        parse_distribution("lognormal:mean", "--prompt")
    with pytest.raises(ClusterSimError, match="--prompt 'zipf:a=1'"):
        parse_distribution("zipf:a=1", "--prompt")
    with pytest.raises(ClusterSimError, match="mean=5000.0 must lie strictly between"):
        parse_distribution("lognormal:mean=5000,sigma=1,max=4000", "--prompt")


def test_bundled_examples_load() -> None:
    examples = Path(__file__).parent.parent / "workloads" / "examples"
    for name in ("chat.json", "summarization.json"):
        trace = load_workload(examples / name)
        assert len(trace) > 100 and trace.metadata["generator"]["seed"] in (1, 2)


def test_chat_generator_shares_prefixes_and_builds_sessions() -> None:
    """2 system prompts x 2 users, 3 turns each, fixed lengths: turn t's prompt is the
    100-token system prompt plus t-1 earlier (50 + 20)-token exchanges plus a question."""
    from workloads.generators import ChatSpec, generate_chat

    spec = ChatSpec(num_requests=12, arrival={"kind": "poisson", "rate_per_s": 100},
                    num_system_prompts=2, users_per_prompt=2, system_prompt_tokens=100,
                    question={"kind": "fixed", "value": 50},
                    output={"kind": "fixed", "value": 20}, turns_per_session=3,
                    think_time_s=1.0, seed=4)
    trace = generate_chat(spec)
    assert set(trace.prompt_tokens.tolist()) == {150, 220, 290}
    sessions = trace.extras["session_id"]
    for session in set(sessions):
        turns = [i for i, s in enumerate(sessions) if s == session]
        assert trace.prompt_tokens[turns].tolist() == [150, 220, 290][:len(turns)]
        gaps = np.diff(trace.arrival_s[turns])
        assert (gaps >= 1.0 - 1e-12).all()  # think time between a user's turns
    assert set(trace.extras["prefix_id"]) == {"system-0", "system-1"}


def test_a_request_id_past_64_bits_is_a_one_line_error(tmp_path) -> None:
    """A numeric id must fit in 64 bits (as the rows store it); a string may be longer."""
    from workloads.loaders import load_workload

    path = tmp_path / "trace.jsonl"
    path.write_text('{"request_id": 18446744073709551616, "arrival_s": 0, '
                    '"prompt_tokens": 10, "output_tokens": 2}\n')
    with pytest.raises(ClusterSimError, match="line 1: field 'request_id"):
        load_workload(path)
    path.write_text('{"request_id": "18446744073709551616", "arrival_s": 0, '
                    '"prompt_tokens": 10, "output_tokens": 2}\n')
    assert load_workload(path).request_ids == ["18446744073709551616"]
    whole = tmp_path / "trace.json"  # the plain columns' fast path, too
    whole.write_text('{"requests": [{"request_id": 18446744073709551616, "arrival_s": 0, '
                     '"prompt_tokens": 10, "output_tokens": 2}]}')
    with pytest.raises(ClusterSimError, match="field 'requests.0.request_id"):
        load_workload(whole)


def test_duplicate_request_ids_are_refused(tmp_path) -> None:
    import json

    from profiles.errors import ClusterSimError
    from workloads.loaders import load_workload

    path = tmp_path / "dup.json"
    path.write_text(json.dumps([
        {"arrival_s": 0.0, "prompt_tokens": 5, "output_tokens": 2, "request_id": "a"},
        {"arrival_s": 1.0, "prompt_tokens": 5, "output_tokens": 2, "request_id": "a"}]))
    with pytest.raises(ClusterSimError, match="request_id 'a' appears twice"):
        load_workload(path)


def test_plain_records_read_as_columns_equal_the_schema_path(tmp_path: Path) -> None:
    """A trace of only the four plain fields is read without a model per record (speed);
    the trace is the one the schema's path reads, and anything else (an extra field, a
    bool, a null id, a value out of range) goes through the schema and its error."""
    from workloads.loaders import _RECORDS, _plain_trace
    from workloads.schema import RequestTrace

    records = [{"request_id": "a", "arrival_s": 0, "prompt_tokens": 5, "output_tokens": 2},
               {"arrival_s": 1.5, "prompt_tokens": 7, "output_tokens": 1},
               {"request_id": 7, "arrival_s": 0.25, "prompt_tokens": 1, "output_tokens": 9}]
    fast = _plain_trace(records, {"source": "x"})
    slow = RequestTrace.from_records(_RECORDS.validate_python(records), {"source": "x"})
    assert fast is not None
    for name in ("arrival_s", "prompt_tokens", "output_tokens", "priority"):
        assert getattr(fast, name).tolist() == getattr(slow, name).tolist()
        assert getattr(fast, name).dtype == getattr(slow, name).dtype
    assert (fast.request_ids, fast.extras, fast.metadata) == (
        slow.request_ids, slow.extras, slow.metadata)
    for bad in ({"prefix_id": "p"}, {"prompt_tokens": True}, {"request_id": None},
                {"output_tokens": 0}, {"arrival_s": "1"}):
        assert _plain_trace([records[0] | bad], {}) is None, bad
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"requests": [records[0] | {"output_tokens": 0}]}))
    with pytest.raises(ClusterSimError, match="output_tokens"):
        load_workload(path)


@pytest.mark.parametrize(("text", "message"), [
    ('[{"arrival_s": 1e999, "prompt_tokens": 3, "output_tokens": 2}]',
     "1e999 overflows a 64-bit float"),
    ('{"metadata": {"rate": -1e999}, "requests": '
     '[{"arrival_s": 1, "prompt_tokens": 3, "output_tokens": 2}]}',
     "-1e999 overflows a 64-bit float"),
    ('[{"arrival_s": NaN, "prompt_tokens": 3, "output_tokens": 2}]',
     "NaN is not a JSON number"),
    ('[{"arrival_s": 1, "prompt_tokens": 3, "output_tokens": 2},]', "not valid JSON"),
])
def test_a_plain_trace_read_at_c_speed_still_refuses_what_the_strict_parse_does(
        tmp_path: Path, text: str, message: str) -> None:
    """The plain trace's fast parse (floats as float reads them) turns away what the
    strict one refuses, and the strict one words the error."""
    path = tmp_path / "t.json"
    path.write_text(text)
    with pytest.raises(ClusterSimError, match=message):
        load_workload(path)
