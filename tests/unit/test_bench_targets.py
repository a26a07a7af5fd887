"""The benchmark targets check: a figure beyond its limit, or missing, is a miss."""

from __future__ import annotations

import json
from pathlib import Path

from bench.targets import TARGETS, Target, check, values_at


def test_paths_reach_nested_figures_and_every_list_entry() -> None:
    data = {"a": {"b": 3}, "c": [{"d": 1}, {"d": 2}]}
    assert values_at(data, "a.b") == [3]
    assert values_at(data, "c[*].d") == [1, 2]
    assert values_at(data, "a.x") == []


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
