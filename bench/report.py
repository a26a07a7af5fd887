"""The figures in README.md and docs/ are written from the committed result files, never by hand.

A generated block sits between `<!-- bench:NAME -->` and `<!-- /bench -->`; `python -m bench.report`
rewrites every block from `bench/results/`, and `--check` exits non-zero when a block differs from
what its results give (a unit test runs that check, so a figure cannot drift from its run). Each
block says which results file, commit, machine and date its figures come from.
"""

from __future__ import annotations

import argparse
import importlib
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


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def load(area: str, results: Path) -> dict[str, Any]:
    path = results / f"{area}.json"
    if not path.exists():
        raise MissingResults(f"{shown(path)} is missing")
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


def _p2(s: dict[str, Any]) -> str:
    return f"{s['p50']:g} / {s['p95']:g} ms (n={s['n']})"


def heard_rows(d: dict[str, Any]) -> list[list[str]]:
    """What the user hears, from the browser benchmark's default configuration: the figures the
    README and the docs lead with (the probe of `bench.agent` leaves the browser out)."""
    c = d["configs"]["default"]
    lat, barge = c["latency"], c["barge_in"]
    rows = [
        [
            "Voice-to-voice heard in Chromium: end of the user's speech → first reply audio "
            f"(end of turn: {c.get('turn_detector') or 'as configured'})",
            _p2(lat["voice_to_voice_ms"]),
        ],
    ]
    if lat.get("over_silence_ms"):
        over = lat["over_silence_ms"]
        rows.append(
            [
                "The same beyond the silence the agent waited before taking the turn "
                f"(mean {over['silence_waited_ms']:.0f} ms)",
                f"{over['p50']:.0f} / {over['p95']:.0f} ms",
            ]
        )
    rows.append(
        ["Barge-in heard in Chromium: user starts speaking → agent audio silent", _p2(barge["barge_in_ms"])]
    )
    if "dashboard" in lat:
        rows.append(
            [
                "The dashboard's heard figure apart from that measurement, same turn",
                _p2(lat["dashboard"]["difference_ms"]),
            ]
        )
    if "start" in d:
        rows.append(["Click on Start → connected", _p2(d["start"]["click_to_connected_ms"])])
    return rows


def heard_block(results: Path) -> str:
    d = load("browser", results)
    return (
        table(["Headless Chromium, the product's page", "p50 / p95"], heard_rows(d))
        + "\n\n"
        + provenance("browser", d)
    )


def readme_block(results: Path) -> str:
    browser = load("browser", results)
    rows = heard_rows(browser)
    redis_path = results / "redis.json"
    if redis_path.exists():
        resume = load("redis", results)["agents"]["resume_after_kill9_ms"]
        rows.append(
            [
                "Session resumed on another agent after `kill -9` (WebSocket open → `session` event)",
                f"{resume['p50']:.1f} / {resume['p95']:.1f} ms (n={resume['n']})",
            ]
        )
    loss_path = results / "loss.json"
    if loss_path.exists():
        points = load("loss", results)["points"]

        def understood(sender: str, lead: float) -> str:
            p = next(
                (
                    p
                    for p in points
                    if p["sender"] == sender
                    and p["pattern"] == "random"
                    and p["loss_percent"] == 10
                    and p.get("lead_s", 0.0) == lead
                ),
                None,
            )
            return "not measured" if p is None else f"{p['understood']}/{p['runs']}"

        rows.append(
            [
                "Phrases understood at 10 % random uplink loss: browser-like sender (RED) from its first"
                " word / the same without RED / 2 s into the call / FEC from the first packet",
                f"{understood('browser-like', 0.0)} / {understood('browser-like, no RED', 0.0)}"
                f" / {understood('browser-like, 2 s in', 2.0)} / {understood('fec-always', 0.0)}",
            ]
        )
    m = browser["machine"]
    commit = _short(str(browser["commit"]))
    note = (
        f"_{m['cpus']} vCPU {m['cpu_model']}, load average {m.get('load_average_1m', '?')} at the end of the "
        f"browser run; from `bench/results/` (`make bench`), commit `{commit}`._"
    )
    return table(["", "p50 / p95"], rows) + "\n\n" + note


def redis_block(results: Path) -> str:
    # Lazy: the benchmark module pulls in the agent and the test servers, which the other blocks
    # do not need. The rows are the ones `python -m bench.redis` prints.
    from bench.redis import report

    d = load("redis", results)
    return report(d) + "\n\n" + provenance("redis", d)


def operator_block(results: Path) -> str:
    d = load("operator", results)
    rec, met, cold = d["reconcile_ms"], d["external_metric_ms"], d["cold_start"]
    pools = cold["pools"]
    rows = [
        [
            f"Reconcile: pool created → all 5 owned objects stored, p50 / p95 / p99 ({rec['n']} pools, "
            "one after another)",
            p3(rec) + " ms",
            f"< {d['reconcile_target_ms'] / 1000:g} s",
        ],
        [
            "External metric request (`voicepool_session_demand`, Redis read included), p50 / p95 / p99 "
            f"({met['n']} requests)",
            p3(met) + " ms",
            "—",
        ],
        [
            "External metric value (4 + 3 + 1 active sessions, buffer 2)",
            str(d["external_metric_value"]),
            str(d["external_metric_expected"]),
        ],
        [
            f"{pools} pools from a cold start (operator started over existing pools): all objects / "
            "all status",
            f"{cold['all_objects_s']:g} s / {cold['all_status_s']:g} s",
            "—",
        ],
        [
            "Cold start: API calls per pool (of which writes: 5 creates, finalizer, kopf's record, "
            "status, event)",
            f"{cold['api_calls_per_pool']:g} ({cold['writes_per_pool']:g})",
            "—",
        ],
        [f"Restart over {pools} reconciled pools: all resumed", f"{cold['resume_s']:g} s", "—"],
        [
            "Restart: API calls per pool (writes) / write requests to owned objects",
            f"{cold['resume_api_calls_per_pool']:g} ({cold['resume_writes_per_pool']:g}) / "
            f"{cold['resume_owned_object_write_requests']}",
            "— / 0",
        ],
        [
            "Restart: every owned object unchanged (same resourceVersion)",
            "yes" if cold["resume_objects_unchanged"] else "no",
            "yes",
        ],
    ]
    return table(["Metric", "Measured", "Target"], rows) + "\n\n" + provenance("operator", d)


def providers_block(results: Path) -> str:
    d = load("providers", results)
    over, cancel, targets = d["overhead_ms"], d["cancel_to_upstream_closed_ms"], d["targets"]
    overhead_target = f"p95 ≤ {targets['overhead_per_turn_p95_ms']:g} ms"
    cancel_target = f"p95 ≤ {targets['cancel_p95_ms']:g} ms"
    picks = [
        (
            f"Adapter overhead per turn (STT finalize + LLM first token + TTS first audio), "
            f"{over['per_turn']['n']} turns",
            over["per_turn"],
            overhead_target,
        ),
        ("— STT finalize", over["stt_finalize"], ""),
        ("— LLM first token", over["llm_first_token"], ""),
        ("— TTS first audio", over["tts_first_audio"], ""),
        ("LLM whole reply", over["llm_whole_reply"], ""),
        ("TTS whole sentence", over["tts_whole_sentence"], ""),
        (
            "Client CPU on the critical path (finish, to first token, to first audio)",
            d["client_cpu_on_the_critical_path_ms"],
            "",
        ),
        (
            "Client CPU per turn, all three stages (audio upload, whole reply)",
            d["client_cpu_per_turn_ms"],
            "",
        ),
        (
            f"Barge-in → LLM HTTP stream closed (seen by the fake), {cancel['llm']['n']} trials",
            cancel["llm"],
            cancel_target,
        ),
        ("Barge-in → TTS HTTP stream closed", cancel["tts"], cancel_target),
        ("Barge-in → Deepgram socket closed", cancel["stt"], cancel_target),
    ]
    rows = [[what, p3(s) + " ms", target or "—"] for what, s, target in picks]
    load_avg = d["load_average_1m"]
    return (
        table(["Metric", "p50 / p95 / p99", "Target"], rows)
        + "\n\n"
        + provenance("providers", d)
        + f" _Load average {load_avg['before']:.1f} before the run._"
    )


def soak_block(results: Path) -> str:
    # Lazy for the same reason as redis_block; the rows are the ones `python -m bench.soak` prints.
    from bench.soak import rows_of

    d = load("soak", results)
    head = [f"{d['sessions']} sessions, a turn every {d['turn_every_s']:g} s each", "Measured", "Target"]
    return table(head, [list(r) for r in rows_of(d)]) + "\n\n" + provenance("soak", d)


def own_table(area: str, module: str) -> Callable[[Path], str]:
    """A block that is the benchmark's own table (`bench.<module>.report`, not a copy) and its
    provenance; imported when the block is written, so a block needs only its own module's deps."""

    def render(results: Path) -> str:
        report = importlib.import_module(f"bench.{module}").report
        d = load(area, results)
        return str(report(d)) + "\n\n" + provenance(area, d)

    return render


def liveness_block(results: Path) -> str:
    from bench.liveness import report  # the benchmark's own table, not a copy

    d = load("liveness", results)
    before = load("liveness-before", results) if (results / "liveness-before.json").exists() else None
    out = report(d, before) + "\n\n" + provenance("liveness", d)
    return out if before is None else out + " " + provenance("liveness-before", before)


GENERATORS: dict[str, Callable[[Path], str]] = {
    "backup": own_table("backup", "backup"),
    "turntaking": own_table("turntaking", "turntaking"),
    "liveness": liveness_block,
    "rollout": own_table("rollout", "rollout"),
    "recognition": own_table("recognition", "recognition"),
    "decoder": own_table("decoder", "decoder"),
    "browser": own_table("browser", "browser"),
    "browser-heard": heard_block,
    "loss": own_table("loss", "loss"),
    "sizing": own_table("sizing", "sizing"),
    "agent": agent_block,
    "agent-capacity": capacity_block,
    "ab-architecture": ab_block("architecture"),
    "ab-ice": ab_block("ice"),
    "turn": turn_block,
    "redis": redis_block,
    "redis-failover": own_table("redis-failover", "redis_failover"),
    "operator": operator_block,
    "sessions-api": own_table("sessions-api", "sessions_api"),
    "providers": providers_block,
    "soak": soak_block,
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
                stale.append(f"{shown(path)}: {name}")
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
