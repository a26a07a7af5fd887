"""The figures in README.md and docs/ are written from the committed result files, never by hand.

A generated block sits between `<!-- bench:NAME -->` and `<!-- /bench -->`; `python -m bench.report`
rewrites every block from `bench/results/`, and `--check` exits non-zero when a block differs from
what its results give (a unit test runs that check, so a figure cannot drift from its run). Each
block says which results file, commit, machine and date its figures come from.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import RESULTS

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- bench:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /bench -->)", re.S)


class MissingResults(Exception):
    """A block needs a results file that has not been produced (run its benchmark)."""


def load(area: str, results: Path) -> dict[str, Any]:
    path = results / f"{area}.json"
    if not path.exists():
        raise MissingResults(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} is missing")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _short(commit: str) -> str:
    return commit[:10] + ("+dirty" if commit.endswith("+dirty") else "")


def provenance(area: str, data: dict[str, Any]) -> str:
    m = data.get("machine", {})
    short = _short(str(data.get("commit", "unknown")))
    return (
        f"_From `bench/results/{area}.json`: {m.get('cpus', '?')} vCPU {m.get('cpu_model', '?')}, "
        f"load average {m.get('load_average_1m', '?')} at the end, commit `{short}`, "
        f"{data.get('date', '?')}._"
    )


def p3(s: dict[str, Any]) -> str:
    return f"{s['p50']:g} / {s['p95']:g} / {s['p99']:g}"


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def agent_block(results: Path) -> str:
    d = load("agent", results)
    lat, barge, mem = d["latency"], d["barge_in"], d["memory"]
    rows = [
        [
            f"Voice-to-voice at the client, {lat['voice_to_voice_ms']['n']} turns",
            p3(lat["voice_to_voice_ms"]) + " ms",
            "—",
        ],
        [
            "Overhead = voice-to-voice minus the 500 ms end-of-turn silence",
            p3(lat["overhead_ms"]) + " ms",
            "p95 ≤ 150 ms",
        ],
        [
            "Same, as the agent reports it (last voiced frame in → first reply frame out)",
            p3(lat["agent_reported_voice_to_voice_ms"]) + " ms",
            "—",
        ],
        ["Turns without a reply", f"{lat.get('failed', 'not counted')}", "0"],
        [
            f"Barge-in: speech onset → agent audio stops at the client, {barge['barge_in_ms']['n']} trials",
            p3(barge["barge_in_ms"]) + " ms",
            "p95 ≤ 250 ms",
        ],
        [
            "Barge-ins missed (agent never spoke, or never stopped)",
            f"{barge.get('failed', 'not counted')}",
            "0",
        ],
        [
            f"RSS per idle connected call ({mem['idle_sessions']} calls)",
            f"{mem['rss_per_idle_session_mb']:g} MB",
            "≤ 10 MB",
        ],
        [
            f"RSS growth over {mem['churn_sessions']} sessions created and ended, after warm-up",
            f"{mem['growth_after_warmup_mb']:+g} MB",
            "≤ 5 MB",
        ],
    ]
    return table(["Metric", "p50 / p95 / p99", "Target"], rows) + "\n\n" + provenance("agent", d)


def capacity_block(results: Path) -> str:
    d = load("agent", results)
    rows = [
        [
            str(c["sessions"]),
            f"{c['agent_cpu_percent']:g} %",
            f"{c['late_percent']:g} %",
            f"{c['received_percent_at_client']:g} %",
            f"{c['loadgen_cpu_percent']:g} %",
        ]
        for c in d["capacity"]
    ]
    head = ["Calls", "Agent CPU (of one core)", "Late frames", "Received at clients", "Load generator CPU"]
    return table(head, rows) + "\n\n" + provenance("agent", d)


def _median(runs: list[dict[str, Any]], pick: Callable[[dict[str, Any]], float]) -> str:
    values = [pick(r) for r in runs]
    return f"{round(statistics.median(values), 1):g} ({', '.join(f'{v:g}' for v in values)})"


def _measured(runs: list[dict[str, Any]], pick: Callable[[dict[str, Any]], float]) -> bool:
    try:
        for r in runs:
            pick(r)
    except (KeyError, IndexError):
        return False
    return True


def ab_block(name: str) -> Callable[[Path], str]:
    def render(results: Path) -> str:
        d = load(f"ab-{name}", results)
        before, after = d["runs"]["before"], d["runs"]["after"]
        picks: list[tuple[str, Callable[[dict[str, Any]], float]]] = [
            ("Voice-to-voice p50 (ms)", lambda r: r["latency"]["voice_to_voice_ms"]["p50"]),
            ("Voice-to-voice p95 (ms)", lambda r: r["latency"]["voice_to_voice_ms"]["p95"]),
            ("Barge-in p50 (ms)", lambda r: r["barge_in"]["barge_in_ms"]["p50"]),
            ("Barge-in p95 (ms)", lambda r: r["barge_in"]["barge_in_ms"]["p95"]),
            ("Agent CPU at 30 calls (% of a core)", lambda r: r["capacity"][0]["agent_cpu_percent"]),
            ("Late frames at 30 calls (%)", lambda r: r["capacity"][0]["late_percent"]),
            ("RSS per idle call (MB)", lambda r: r["memory"]["rss_per_idle_session_mb"]),
        ]
        rows = [
            [what, _median(before, pick), _median(after, pick)]
            for what, pick in picks
            if _measured(before + after, pick)
        ]
        head = [
            "Median of the runs (each run)",
            f"before `{_short(d['before'])}`",
            f"after `{_short(d['after'])}`",
        ]
        return table(head, rows) + "\n\n" + provenance(f"ab-{name}", d)

    return render


def turn_block(results: Path) -> str:
    d = load("turn", results)
    rows = [
        [
            "Session created → media connected",
            p3(d["relay"]["setup_ms"]) + " ms",
            p3(d["direct"]["setup_ms"]) + " ms",
        ],
        [
            "Voice-to-voice (500 ms silence included)",
            p3(d["relay"]["voice_to_voice_ms"]) + " ms",
            p3(d["direct"]["voice_to_voice_ms"]) + " ms",
        ],
    ]
    n = d["relay"]["setup_ms"]["n"]
    return (
        table([f"p50 / p95 / p99 ({n} calls each)", "Relay-only", "Direct"], rows)
        + "\n\n"
        + provenance("turn", d)
    )


def readme_block(results: Path) -> str:
    agent = load("agent", results)
    lat, barge = agent["latency"]["voice_to_voice_ms"], agent["barge_in"]["barge_in_ms"]
    rows = [
        [
            "Voice-to-voice at the client, including the 500 ms end-of-turn silence",
            f"{lat['p50']:g} / {lat['p95']:g} ms (n={lat['n']})",
        ],
        [
            "Barge-in: user starts speaking → agent audio stops at the client",
            f"{barge['p50']:g} / {barge['p95']:g} ms (n={barge['n']})",
        ],
    ]
    redis_path = results / "redis.json"
    if redis_path.exists():
        resume = load("redis", results)["agents"]["resume_after_kill9_ms"]
        rows.append(
            [
                "Session resumed on another agent after `kill -9` (WebSocket open → `session` event)",
                f"{resume['p50']:.1f} / {resume['p95']:.1f} ms (n={resume['n']})",
            ]
        )
    m = agent["machine"]
    commit = agent["commit"][:10]
    note = f"_{m['cpus']} vCPU {m['cpu_model']}; from `bench/results/` (`make bench`), commit `{commit}`._"
    return table(["", "p50 / p95"], rows) + "\n\n" + note


GENERATORS: dict[str, Callable[[Path], str]] = {
    "agent": agent_block,
    "agent-capacity": capacity_block,
    "ab-architecture": ab_block("architecture"),
    "ab-ice": ab_block("ice"),
    "turn": turn_block,
    "readme-measured": readme_block,
}


def sync(files: list[Path] = DOCS, results: Path = RESULTS, check: bool = False) -> list[str]:
    """Rewrite (or, with check, compare) every block; the blocks that were out of date."""
    stale: list[str] = []
    for path in files:
        text = path.read_text()

        def fill(m: re.Match[str], path: Path = path) -> str:
            name = m.group("name")
            if name not in GENERATORS:
                raise KeyError(f"{path.name}: unknown bench block {name!r}")
            body = GENERATORS[name](results) + "\n"
            if body != m.group("body"):
                stale.append(f"{path.relative_to(ROOT)}: {name}")
            return m.group(1) + body + m.group(4)

        new = BLOCK.sub(fill, text)
        if new != text and not check:
            path.write_text(new)
    return stale


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 when a block differs from its results")
    opts = ap.parse_args()
    try:
        stale = sync(check=opts.check)
    except MissingResults as exc:
        print(f"cannot write the docs' figures: {exc}", file=sys.stderr)
        return 1
    for s in stale:
        print(("out of date: " if opts.check else "rewritten: ") + s)
    return 1 if opts.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
