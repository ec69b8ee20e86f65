import json
import math
import statistics

import pytest

from lco.eval.results import ResultStore, aggregate, aggregate_runs, format_aggregate


def test_aggregate_is_mean_sample_std_and_standard_error():
    values = [58.0, 60.5, 57.25, 61.0]
    agg = aggregate(values)
    assert agg["mean"] == pytest.approx(statistics.fmean(values))
    assert agg["std"] == pytest.approx(statistics.stdev(values))  # n − 1 in the denominator
    assert agg["sem"] == pytest.approx(statistics.stdev(values) / math.sqrt(4))
    assert agg["n"] == 4 and agg["values"] == values


def test_aggregate_of_one_seed_has_no_spread():
    agg = aggregate([0.3])
    assert agg["mean"] == 0.3 and agg["std"] is None and agg["sem"] is None
    assert "1 seed" in format_aggregate(agg)


def test_aggregate_runs_aggregates_each_metric_over_seeds():
    agg = aggregate_runs([{"pass@1": 50.0, "x": 1.0}, {"pass@1": 54.0}])
    assert set(agg) == {"pass@1"}  # only metrics every seed has
    assert agg["pass@1"]["mean"] == 52.0 and agg["pass@1"]["std"] == pytest.approx(math.sqrt(8))
    assert format_aggregate(agg["pass@1"]).startswith("52.00 ± 2.83")


def test_store_saves_runs_and_loads_them_back(tmp_path):
    store = ResultStore(tmp_path / "out", {"model": "m", "beta": 1.0})
    assert store.load("math", "amc23", "seed_0") is None
    path = store.save("math", "amc23", "seed_0", {"metrics": {"pass@1": 40.0}})
    assert path == tmp_path / "out" / "math" / "amc23" / "seed_0.json"
    assert store.load("math", "amc23", "seed_0") == {"metrics": {"pass@1": 40.0}}
    assert not list(path.parent.glob(".*tmp*"))  # the atomic write left no temporary file
    assert json.loads((tmp_path / "out" / "config.json").read_text()) == {"model": "m", "beta": 1.0}


def test_store_refuses_to_mix_results_of_another_configuration(tmp_path):
    ResultStore(tmp_path, {"model": "typo"})  # nothing computed: nothing recorded
    store = ResultStore(tmp_path, {"model": "a", "beta": 1.0, "suite": "math"})
    store.save("math", "amc23", "seed_0", {})
    ResultStore(tmp_path, {"model": "a", "beta": 1.0, "suite": "math"})  # same config: resume
    with pytest.raises(ValueError, match="differing settings: beta, model"):
        ResultStore(tmp_path, {"model": "b", "beta": 2.0, "suite": "math"})
