"""Every benchmark target, in one place, checked against the committed result files.

`make bench` runs every module, then this check: it prints each target with its measured value
and exits non-zero when one is missed (or its figure is missing: a miss is never a pass).
`python -m bench.targets` checks the result files as they are, without running anything.

A path names a figure in `bench/results/<area>.json`: dotted keys, `[*]` for every entry of a list,
`[field=value,...]` for the entries of a list whose fields have those values (a loss point is one
entry of a list, known by its sender, pattern and rate, not by its position).
"""

from __future__ import annotations

import json
import math
import operator
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import RESULTS


@dataclass(frozen=True)
class Target:
    area: str
    path: str
    op: str  # "<=", "<", ">=", "=="
    limit: float
    what: str


TARGETS: tuple[Target, ...] = (
    Target(
        "agent", "latency.overhead_ms.p95", "<=", 150, "voice-to-voice over the end-of-turn silence, p95 (ms)"
    ),
    Target("agent", "latency.failed", "==", 0, "turns without a reply"),
    Target(
        "agent", "barge_in.barge_in_ms.p95", "<=", 250, "barge-in: speech onset to agent silent, p95 (ms)"
    ),
    Target("agent", "barge_in.failed", "==", 0, "barge-ins the agent did not stop for, or never spoke"),
    Target("agent", "memory.rss_per_idle_session_mb", "<=", 10, "RSS per idle connected session (MB)"),
    Target("agent", "memory.growth_after_warmup_mb", "<=", 5, "RSS growth over the churn after warm-up (MB)"),
    Target("agent", "capacity[*].late_percent", "<", 1, "outbound frames produced late (%)"),
    Target("agent", "capacity[*].stalled_percent", "<", 1, "outbound audio stalled, share of call time (%)"),
    Target(
        "browser",
        "configs.default.latency.voice_to_voice_ms.p50",
        "<=",
        450,
        "in Chromium: end of speech to first reply audio, p50 (ms)",
    ),
    Target(
        "browser",
        "configs.default.latency.over_silence_ms.p50",
        "<=",
        120,
        "in Chromium: voice-to-voice beyond the silence the agent waited, p50 (ms)",
    ),
    Target(
        "browser",
        "configs.default.barge_in.barge_in_ms.p95",
        "<=",
        150,
        "in Chromium: barge-in speech onset to agent silent, p95 (ms)",
    ),
    Target("browser", "failed", "==", 0, "in Chromium: turns with no reply or barge-ins missed, all configs"),
    Target(
        "browser",
        "configs.default.latency.dashboard.difference_ms.p95",
        "<=",
        30,
        "in Chromium: the dashboard's heard figure apart from the page-side measurement, same turn, p95 (ms)",
    ),
    Target(
        "browser",
        "configs.default.latency.dashboard.missing",
        "==",
        0,
        "in Chromium: turns heard with no figure on the dashboard",
    ),
    Target(
        "browser", "start.click_to_connected_ms.p50", "<=", 150, "in Chromium: click to connected, p50 (ms)"
    ),
    Target(
        "turntaking",
        "default.questions.end_of_turn_ms.p50",
        "<=",
        250,
        "end of a complete question to the turn taken, p50 (ms)",
    ),
    Target(
        "turntaking",
        "default.cut_offs[pause_ms=800].percent",
        "<=",
        10,
        "turns taken at an 800 ms pause mid-sentence (%)",
    ),
    Target(
        "turntaking",
        "default.false_interruptions.percent",
        "<=",
        10,
        "replies cut by a backchannel or a noise (%)",
    ),
    Target(
        "turntaking",
        "default.barge_in.barge_in_ms.p95",
        "<=",
        200,
        "real interruption: speech onset to agent silent, p95 (ms)",
    ),
    Target("turntaking", "default.barge_in.missed", "==", 0, "real interruptions the agent did not stop for"),
    Target(
        "turntaking",
        "default.load.turn_decision_cpu_percent",
        "<=",
        5,
        "turn decisions at 30 calls (% of one core)",
    ),
    Target(
        "turntaking",
        "default.load.turn_decision_cpu_projected_percent",
        "<=",
        5,
        "turn decisions at 30 calls if every question were decided (% of one core)",
    ),
    Target("providers", "overhead_ms.per_turn.p95", "<=", 20, "cloud adapter overhead per turn, p95 (ms)"),
    Target(
        "providers", "cancel_to_upstream_closed_ms.llm.p95", "<=", 50, "barge-in to LLM stream closed (ms)"
    ),
    Target(
        "providers", "cancel_to_upstream_closed_ms.tts.p95", "<=", 50, "barge-in to TTS stream closed (ms)"
    ),
    Target(
        "providers", "cancel_to_upstream_closed_ms.stt.p95", "<=", 50, "barge-in to STT socket closed (ms)"
    ),
    Target(
        "redis-failover",
        "allocation_ms.p95",
        "<=",
        10_000,
        "Redis primary killed: new sessions allocated again, p95 (ms)",
    ),
    Target("redis-failover", "allocation_ms.missing", "==", 0, "kills after which allocation never returned"),
    Target("redis-failover", "acknowledged_lost", "==", 0, "acknowledged session records lost in failovers"),
    Target("redis", "store.save_ms.mean", "<", 1, "session save, mean (ms)"),
    Target("redis", "store.save_ms.p99", "<", 2, "session save, p99 (ms)"),
    Target("redis", "store.allocate_ms.p99", "<", 2, "allocation, one caller, p99 (ms)"),
    Target(
        "redis",
        "store.allocate_concurrent.sessions_per_s",
        ">=",
        5000,
        "allocations per second, 32 asyncio callers in one process",
    ),
    Target(
        "redis",
        "store.allocate_redis_benchmark.sessions_per_s",
        ">=",
        5000,
        "allocations per second, redis-benchmark 16 clients",
    ),
    Target(
        "redis",
        "store.allocate_redis_benchmark.p99_ms",
        "<",
        2,
        "allocation, redis-benchmark 16 clients, p99 (ms)",
    ),
    Target(
        "redis",
        "store.allocate_redis_benchmark_4.sessions_per_s",
        ">=",
        5000,
        "allocations per second, redis-benchmark 4 clients",
    ),
    Target(
        "redis",
        "store.allocate_redis_benchmark_4.p99_ms",
        "<",
        2,
        "allocation, redis-benchmark 4 clients, p99 (ms)",
    ),
    Target("redis", "store.pubsub_one_way_ms.p99", "<", 5, "pub/sub one way, p99 (ms)"),
    Target("redis", "agents.resume_after_kill9_ms.p99", "<", 100, "resume after kill -9, p99 (ms)"),
    Target("operator", "reconcile_ms.p99", "<", 1000, "pool created to all owned objects stored, p99 (ms)"),
    Target("operator", "external_metric_value", "==", 10, "external metric for 4 + 3 + 1 sessions, buffer 2"),
    Target(
        "operator",
        "cold_start.resume_owned_object_write_requests",
        "==",
        0,
        "write requests to owned objects on a restart",
    ),
    Target("sessions-api", "list_ms.p95", "<=", 150, "kubectl get voicesessions, 1,000 sessions, p95 (ms)"),
    Target("sessions-api", "watch_ms.p95", "<=", 200, "a new session in kubectl get -w, p95 (ms)"),
    Target("sessions-api", "delete_ms.p95", "<=", 500, "kubectl delete voicesession to hang-up, p95 (ms)"),
    Target("soak", "failed_turns", "==", 0, "turns without a reply"),
    Target("soak", "client_error_event_count", "==", 0, "error events at the clients"),
    Target("soak", "agent_errors", "==", 0, "errors logged by the agent"),
    Target("soak", "frames_delivered_percent", ">=", 99, "audio frames delivered at the clients (%)"),
    Target("soak", "rtp_packets_lost", "==", 0, "RTP packets lost, agent to clients (loopback)"),
    Target("soak", "agent_late_frames_percent", "<", 1, "frames produced late by the agent (%)"),
    Target(
        "loss",
        "points[sender=browser-like,pattern=random,loss_percent=10].understood_percent",
        ">=",
        90,
        "phrases understood at 10 % random uplink loss, browser-like sender from its first word (%)",
    ),
    Target(
        "sizing", "one_call_overhead_p95_ms", "<=", 150, "one call: voice-to-voice over the silence, p95 (ms)"
    ),
    Target("sizing", "calls_per_core", ">=", 1, "calls per agent core that pass the sizing rule"),
    # Backups have no limit to meet: the figures must be measured and written down.
    Target("backup", "snapshot_s", ">=", 0, "backup of 10,000 sessions, measured (s)"),
    Target("backup", "restore_s", ">=", 0, "restore of 10,000 sessions, measured (s)"),
    Target("liveness", "declared_dead", "==", 0, "live agents declared dead in a loaded 10-minute run"),
    Target("liveness", "fenced_takeovers", "==", 0, "calls taken from a live owner (fenced) in that run"),
    Target(
        "liveness",
        "longest_silence_s",
        "<=",
        2,
        "longest silence a client sat in before it was told anything (s)",
    ),
    Target("liveness", "contradicting_closes", "==", 0, "closes whose code contradicts docs/api.md"),
    Target("rollout", "dropped_calls", "==", 0, "calls dropped in a 3-agent rollout with 30 live calls"),
    Target("rollout", "unanswered", "==", 0, "questions left unanswered during that rollout"),
    Target("rollout", "gap_ms.p95", "<=", 500, "audio gap per moved call, p95 (ms, client)"),
    Target("rollout", "exit_after_sigterm_s.max", "<=", 15, "an old agent's exit after SIGTERM (s)"),
    Target("recognition", "gap_points.call.all", "<=", 5, "word accuracy: call below file (points)"),
    Target(
        "recognition", "gap_points.call.first", "<=", 5, "word accuracy: first utterance below file (points)"
    ),
)

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    "==": operator.eq,
}


# One step of a path: a key, then optionally `[*]` or `[field=value,...]`. A step ends at a dot
# outside brackets, so a filter value may hold one (`[lead_s=2.0]`).
_STEP = re.compile(r"(?P<key>[^.\[\]]+)(?:\[(?P<select>[^\]]*)\])?(?:\.|$)")


def _steps(path: str) -> list[tuple[str, str | None]]:
    steps, at = [], 0
    while at < len(path):
        m = _STEP.match(path, at)
        if m is None or m.end() == at:
            raise ValueError(f"bad target path {path!r} at {path[at:]!r}")
        steps.append((m.group("key"), m.group("select")))
        at = m.end()
    return steps


def _literal(text: str) -> Any:
    """A filter value as the result files hold it: a number where it reads as one, else the text."""
    try:
        return float(text)
    except ValueError:
        return text


def _selects(select: str, entry: Any) -> bool:
    if select == "*":
        return True
    if not isinstance(entry, dict):
        return False
    for term in select.split(","):
        field, sep, want = term.partition("=")
        if not sep:
            raise ValueError(f"bad list filter {select!r}: want field=value[,field=value]")
        have = entry.get(field.strip())
        value = _literal(want.strip())
        if isinstance(have, bool) or have != value:
            return False
    return True


def values_at(data: Any, path: str) -> list[Any]:
    """Every value the path names; [] when the figure is not in the results."""
    found = [data]
    for key, select in _steps(path):
        step: list[Any] = []
        for node in found:
            value = node.get(key) if isinstance(node, dict) else None
            if value is None:
                continue
            if select is None:
                step.append(value)
            elif isinstance(value, list):
                step.extend(entry for entry in value if _selects(select, entry))
        found = step
    return found


def limit(area: str, path: str) -> float:
    """The limit of one target, for a benchmark that reports against it as it runs."""
    for t in TARGETS:
        if (t.area, t.path) == (area, path):
            return float(t.limit)
    raise KeyError(f"no target {area} {path}")


def check(results: Path = RESULTS) -> list[tuple[Target, str, bool]]:
    """(target, measured as text, met) for every target; a missing figure is not met."""
    out: list[tuple[Target, str, bool]] = []
    cache: dict[str, Any] = {}
    for t in TARGETS:
        if t.area not in cache:
            path = results / f"{t.area}.json"
            cache[t.area] = json.loads(path.read_text()) if path.exists() else None
        values = values_at(cache[t.area], t.path) if cache[t.area] is not None else []
        numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        met = (
            bool(numbers)
            and len(numbers) == len(values)
            and all(not math.isnan(v) and _OPS[t.op](v, t.limit) for v in numbers)
        )
        shown = ", ".join(f"{v:g}" for v in numbers) if numbers else "missing"
        out.append((t, shown, met))
    return out


def report(results: Path = RESULTS) -> int:
    rows = check(results)
    print("| area | target | measured | met |\n|---|---|---|---|")
    for t, shown, met in rows:
        print(f"| {t.area} | {t.what} {t.op} {t.limit:g} | {shown} | {'yes' if met else 'MISSED'} |")
    missed = [t for t, _, met in rows if not met]
    for t in missed:
        print(f"target missed: {t.area} {t.path} {t.op} {t.limit:g} ({t.what})", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(report())
