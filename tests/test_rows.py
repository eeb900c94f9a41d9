"""Request rows as numpy columns: the DataFrame and the CSV are pandas' own."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.cluster import ClusterSpec, build_cluster_graph, link_between
from profiles.hardware import load_gpu
from simulator.serving.metrics import linear_percentiles
from simulator.serving.rows import RequestRows

floats = st.floats(allow_nan=True, allow_infinity=False, width=64)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.one_of(st.integers(0, 10**9), st.text(max_size=6)),
                          st.integers(-2**40, 2**40), floats), min_size=1, max_size=20))
def test_csv_and_dataframe_are_what_pandas_makes(rows: list[tuple[object, int, float]]) -> None:
    """Ids (ints, or strings with commas, quotes and newlines), ints and floats with NaN:
    ``csv_text`` is byte for byte ``DataFrame.to_csv(index=False, float_format="%.9g")``
    of the frame built from the same lists, and ``to_pandas`` is that frame."""
    ids, counts, values = (list(column) for column in zip(*rows, strict=True))
    table = RequestRows({"request_id": ids, "count": counts, "value": np.array(values)})
    frame = pd.DataFrame({"request_id": ids, "count": counts, "value": np.array(values)})
    assert table.csv_text("%.9g") == frame.to_csv(index=False, float_format="%.9g")
    pd.testing.assert_frame_equal(table.to_pandas(), frame, check_exact=True)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(-2**40, 2**40), floats, floats, st.booleans()),
                max_size=20))
def test_a_table_of_numbers_is_written_as_pandas_writes_it(
        rows: list[tuple[int, float, float, bool]]) -> None:
    """Numbers only (the one-format path): ints, floats with and without NaN, bools and
    no rows at all give ``to_csv``'s bytes."""
    ints, values, more, flags = ([list(column) for column in zip(*rows, strict=True)]
                                 if rows else ([], [], [], []))
    columns = {"count": np.array(ints, dtype=np.int64), "value": np.array(values, dtype=float),
               "finite": np.nan_to_num(np.array(more, dtype=float)),
               "flag": np.array(flags, dtype=bool)}
    frame = pd.DataFrame(columns)
    assert RequestRows(columns).csv_text("%.9g") == frame.to_csv(index=False,
                                                                float_format="%.9g")


def test_columns_must_be_as_long_as_each_other() -> None:
    rows = RequestRows({"a": [1, 2, 3]})
    with pytest.raises(ValueError, match="column 'b' has 2 values, not 3"):
        rows["b"] = [1.0, 2.0]
    kept = rows.take(np.array([True, False, True]))
    assert kept["a"].tolist() == [1, 3] and len(kept) == 2 and kept.columns == ["a"]


def test_cluster_graph_reads_as_networkx_does() -> None:
    """Two nodes of 8 H100s: the graph and its networkx copy have the same vertices,
    edges and shortest paths, and a cross-node link is one NIC's share."""
    import networkx as nx

    gpu = load_gpu("h100")
    graph = build_cluster_graph(ClusterSpec(num_nodes=2, gpus_per_node=8), gpu)
    copy = graph.to_networkx()
    assert sorted(copy.nodes) == sorted(graph.nodes) and len(copy.edges) == len(graph.edges)
    for a, b in [("n0.g0", "n0.g7"), ("n0.g3", "n1.g5"), ("n1.g0", "network")]:
        assert graph.shortest_path(a, b) == nx.shortest_path(copy, a, b)
    cross = link_between(graph, "n0.g0", "n1.g0")
    assert cross.bandwidth_bytes_per_s == pytest.approx(
        gpu.nic_bandwidth_gbps * 1e9 * gpu.efficiency.network)
    assert math.isclose(cross.latency_s, 2 * gpu.scale_up.latency_us * 1e-6
                        + 2 * gpu.nic_latency_us * 1e-6)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.one_of(
    st.lists(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, width=64),
             min_size=1, max_size=60),
    st.lists(st.integers(0, 4096), min_size=1, max_size=60)))
def test_linear_percentiles_are_numpys(values: list[float]) -> None:
    """Exactly np.percentile's p50, p90, p99 (and any percent), for floats and ints."""
    array = np.array(values)
    for percents in ([50, 90, 99], [0, 100], [33.3], [50]):
        ours = linear_percentiles(array, percents)
        theirs = np.percentile(array, percents)
        assert ours.tolist() == np.asarray(theirs).tolist()
