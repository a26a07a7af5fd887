"""The benchmark targets check: a figure beyond its limit, or missing, is a miss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.common import RESULTS
from bench.targets import TARGETS, Target, check, limit, values_at


def test_paths_reach_nested_figures_and_every_list_entry() -> None:
    data = {"a": {"b": 3}, "c": [{"d": 1}, {"d": 2}]}
    assert values_at(data, "a.b") == [3]
    assert values_at(data, "c[*].d") == [1, 2]
    assert values_at(data, "a.x") == []


def test_a_filter_picks_the_list_entries_whose_fields_match() -> None:
    points = [
        {"sender": "browser-like", "pattern": "random", "loss_percent": 10, "lead_s": 0.0, "ok": 80},
        {"sender": "browser-like, 2 s in", "pattern": "random", "loss_percent": 10, "lead_s": 2.0, "ok": 100},
        {"sender": "browser-like", "pattern": "bursty", "loss_percent": 10, "lead_s": 0.0, "ok": 50},
        {"sender": "browser-like", "pattern": "random", "loss_percent": 20, "lead_s": 0.0, "ok": 75},
    ]
    data = {"points": points}
    assert values_at(data, "points[sender=browser-like,pattern=random,loss_percent=10].ok") == [80]
    assert values_at(data, "points[lead_s=2.0].ok") == [100]  # a dot inside the filter is its value's
    assert values_at(data, "points[pattern=random].ok") == [80, 100, 75]
    assert values_at(data, "points[pattern=none].ok") == []  # no such point: missing, never a pass
    assert values_at({"points": [{"flag": True, "ok": 1}]}, "points[flag=1].ok") == []  # true is not 1


def test_a_malformed_path_or_filter_is_an_error_not_a_missing_figure() -> None:
    with pytest.raises(ValueError, match="field=value"):
        values_at({"points": [{"a": 1}]}, "points[a].b")
    with pytest.raises(ValueError, match="bad target path"):
        values_at({}, "a..b")


def test_a_list_entry_that_misses_its_target_is_a_miss_and_other_entries_do_not_count(
    tmp_path: Path,
) -> None:
    path = "points[sender=browser-like,pattern=random,loss_percent=10].understood_percent"
    point = {"sender": "browser-like", "pattern": "random", "loss_percent": 10}
    (tmp_path / "loss.json").write_text(
        json.dumps(
            {
                "points": [
                    {**point, "understood_percent": 80.0},
                    {**point, "sender": "fec-always", "understood_percent": 95.0},
                ]
            }
        )
    )
    met = {(t.area, t.path): (shown, ok) for t, shown, ok in check(tmp_path)}
    assert met[("loss", path)] == ("80", False)  # 16/20 < 90 %


def test_every_target_names_a_figure_its_committed_results_hold() -> None:
    """A key misspelt in a path would read as a figure never measured; with the results file there,
    every path must find its figure (met or not)."""
    missing = [
        f"{t.area} {t.path}"
        for t, shown, _ in check()
        if (RESULTS / f"{t.area}.json").exists() and shown == "missing"
    ]
    assert missing == []


def test_the_loss_benchmark_takes_its_target_from_here() -> None:
    from bench.loss import target_percent

    point = {"sender": "browser-like", "pattern": "random", "loss_percent": 10, "understood_percent": 80.0}
    assert target_percent(point) == 90.0
    assert target_percent({**point, "sender": "browser-like, 2 s in"}) is None
    assert target_percent({**point, "loss_percent": 20}) is None


def test_a_benchmark_reads_its_limit_from_here() -> None:
    assert limit("sizing", "one_call_overhead_p95_ms") == 150.0
    with pytest.raises(KeyError):
        limit("sizing", "no.such.figure")


def test_a_missing_or_failing_figure_is_a_miss(tmp_path: Path) -> None:
    (tmp_path / "agent.json").write_text(
        json.dumps(
            {"latency": {"overhead_ms": {"p95": 151.0}, "failed": 0}, "capacity": [{"late_percent": 0.5}]}
        )
    )
    met = {(t.area, t.path): ok for t, _, ok in check(tmp_path)}
    assert met[("agent", "latency.overhead_ms.p95")] is False  # 151 > 150
    assert met[("agent", "latency.failed")] is True
    assert met[("agent", "capacity[*].late_percent")] is True
    assert met[("agent", "barge_in.barge_in_ms.p95")] is False  # not measured: never a pass
    assert met[("redis", "store.save_ms.p99")] is False  # no results file at all


def test_targets_are_well_formed() -> None:
    assert all(isinstance(t, Target) and t.op in ("<=", "<", ">=", "==") for t in TARGETS)
    assert len({(t.area, t.path) for t in TARGETS}) == len(TARGETS)
