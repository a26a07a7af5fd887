"""What the user hears: voice-to-voice and barge-in timed inside headless Chromium.

The product's page, unmodified, talks to a fresh agent process; the timing code is injected into
the page and shares nothing with the app (`frontend/e2e/support/ear.ts`). A synthetic microphone
and the agent's audio are timed on the page's one audio clock: from the end of the user's speech to
the first sound of the reply, and from the onset of an interruption to the agent's audio going
silent in the page. This is where the browser's playout buffer shows, which the Python probe of
`bench.agent` leaves out. A turn with no reply, or a barge-in the agent was not speaking for or did
not stop for, is a counted failure, never a figure. Beside the figures: the browser's playout
buffer over each of them, and the agent's own account of the run from its /metrics (which
end-of-turn decision took each turn, how far its outbound audio fell behind its clock), so a slow
figure says where its time went.

Each timed turn is also read off the dashboard: the heard figure the app itself measured and
shows for that turn (src/audio/heard.ts), against this independent measurement of the same turn.
A dashboard that says something other than what was heard is a bug in the app, not noise.

Each timed turn is also split into its parts on one clock, the wall clock both share on this
machine: the page puts its end of speech and the reply's first sound on it, the agent logs its own
steps of the turn (pipeline/turn_metrics.py), and the two are matched by time. So what the user
waits beyond the end-of-turn silence says whether it went in, in the agent or out.

Click to connected is timed too (`frontend/e2e/start.measure.ts`): fresh pages that sit idle, as a
visitor reading them would, before "Start conversation" is clicked; the steps between (microphone,
session, socket, offer, answer, ICE) say where the time went.

The agent's default configuration is measured and, when the agent has a choice of end-of-turn
detector (`turn_detector`, docs/configuration.md), the fixed-silence one beside it in the same run.

`python -m bench.browser [--runs N] [--turns N] [--barge-ins N] [--start-runs N]`; results in
bench/results/browser.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

from bench.common import summary, write
from voice_agent.settings import Settings

FRONTEND = Path(__file__).resolve().parents[1] / "frontend"
# What the built page is made from: newer than dist/index.html means the build is stale.
SOURCES = ["src", "index.html", "package-lock.json", "vite.config.ts", "tsconfig.json"]


def newest_source() -> float:
    newest = 0.0
    for name in SOURCES:
        path = FRONTEND / name
        files = path.rglob("*") if path.is_dir() else [path]
        newest = max([newest, *(f.stat().st_mtime for f in files if f.is_file())])
    return newest


def ensure_build() -> None:
    """The page measured is the tree's: build it when dist/ is missing or older than its sources."""
    if not (FRONTEND / "node_modules").is_dir():
        raise SystemExit("frontend/node_modules is missing: run `make frontend` (npm ci) first")
    index = FRONTEND / "dist" / "index.html"
    if index.exists() and index.stat().st_mtime >= newest_source():
        return
    print("building the frontend (npm run build) ...", flush=True)
    subprocess.run(["npm", "run", "--silent", "build"], cwd=FRONTEND, check=True)


def configurations() -> dict[str, dict[str, str]]:
    """Name -> the agent's environment on top of the inherited one; the default always first."""
    configs: dict[str, dict[str, str]] = {"default": {}}
    field = Settings.model_fields.get("turn_detector")
    if field is not None and field.default != "fixed":
        configs["fixed"] = {"VOICE_TURN_DETECTOR": "fixed"}
    return configs


def measure(env: dict[str, str], args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One run of the page-side measurement against a fresh agent; its raw per-turn JSON."""
    counts = {"RUNS": str(args.runs), "TURNS": str(args.turns), "BARGE_INS": str(args.barge_ins)}
    full = {**os.environ, **env, **counts, "EAR_OUT": str(out)}
    subprocess.run(["npm", "run", "--silent", "e2e:ear"], cwd=FRONTEND, env=full, check=True)
    raw: dict[str, Any] = json.loads(out.read_text())
    return raw


def measure_start(runs: int, out: Path) -> dict[str, Any]:
    """Click to connected over fresh pages against a fresh agent as configured; the page-side JSON."""
    full = {**os.environ, "RUNS": str(runs), "START_OUT": str(out)}
    subprocess.run(["npm", "run", "--silent", "e2e:start"], cwd=FRONTEND, env=full, check=True)
    raw: dict[str, Any] = json.loads(out.read_text())
    return raw


# The page's steps after the click, in the order they happen (frontend/e2e/start.measure.ts).
START_STEPS = [
    "sessionAsked",
    "micAsked",
    "micOpen",
    "sessionReady",
    "socketAsked",
    "socketOpen",
    "offerSent",
    "answer",
    "iceConnected",
    "peerConnected",
]


def summarize_start(raw: dict[str, Any]) -> dict[str, Any]:
    runs: list[dict[str, float]] = raw["runs"]
    return {
        "pages": len(runs),
        "idle_before_click_ms": raw["idleMs"],
        "click_to_connected_ms": summary([r["clickToConnected"] for r in runs]),
        # p50 of each step's time after the click: where the time to connected goes.
        "steps_p50_ms": {
            step: summary([r[step] for r in runs if step in r])["p50"]
            for step in START_STEPS
            if any(step in r for r in runs)
        },
    }


def dashboard_agreement(turns: list[dict[str, Any]]) -> dict[str, Any]:
    """The dashboard's heard figure against this measurement of the same turn; missing: a turn
    heard here that the dashboard never showed a figure for."""
    heard = [t for t in turns if "voiceToVoiceMs" in t]
    pairs = [(t["dashboardMs"], t["voiceToVoiceMs"]) for t in heard if "dashboardMs" in t]
    return {
        "missing": len(heard) - len(pairs),
        "difference_ms": summary([round(abs(d - v), 1) for d, v in pairs]),
        # Signed, dashboard minus heard: which way they differ.
        "signed_ms": summary([round(d - v, 1) for d, v in pairs]),
    }


# A turn's parts, in order, between the page's end of the user's speech and the reply heard there:
# each from the moment before it to its own (frontend/e2e/ear.measure.ts, the agent's log line).
PARTS = {
    "to_agent": "the page's end of speech → the agent's last loud frame (capture, Opus, network, decode)",
    "vad_hangover": "→ the agent's last voiced frame (the VAD calling the quiet after the voice voiced)",
    "silence": "→ the turn taken (the end-of-turn silence)",
    "decode": "→ the final transcript",
    "reply": "→ the first reply audio into the outbound track",
    "slot": "→ its first frame sent (the track's next 20 ms slot)",
    "to_ear": "→ heard in the page (network, the browser's buffer and playout)",
}
_AGENT_STEPS = ("loud_end_ms", None, "taken_ms", "stt_ms", "audio_ready_ms", "voice_to_voice_ms")


def turn_parts(turn: dict[str, Any]) -> dict[str, float] | None:
    """One turn's PARTS in ms, or None when the page or the agent lacks a moment of it."""
    steps = turn.get("agent")
    if not steps or "endUnixMs" not in turn or any(k and k not in steps for k in _AGENT_STEPS):
        return None
    base = steps["voice_end_unix_ms"]
    marks = [
        turn["endUnixMs"],
        *(base + (steps[k] if k else 0.0) for k in _AGENT_STEPS),
        turn["replyUnixMs"],
    ]
    return {name: round(b - a, 1) for name, (a, b) in zip(PARTS, pairwise(marks), strict=True)}


def breakdown(turns: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The parts of the timed turns the agent's log had, and each turn's figure beyond its own
    silence (what the end-of-turn setting does not explain, turn by turn)."""
    split = [(t["voiceToVoiceMs"], p) for t in turns if "voiceToVoiceMs" in t and (p := turn_parts(t))]
    if not split:
        return None
    return {
        "turns": len(split),
        "parts_ms": {name: summary([p[name] for _, p in split]) for name in PARTS},
        "beyond_silence_ms": summary([round(v - p["silence"], 1) for v, p in split]),
    }


def median_bound(buckets: list[list[float]], count: float) -> float | None:
    """The smallest histogram bound (s) at or under which half the observations fall."""
    return next((le for le, n in buckets if count and n >= count / 2), None)


def agent_account(account: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the agent says took its turns (its /metrics after the runs): why a figure is what it is."""
    if not account:
        return None
    silence = account["turnEndSilence"]
    count = silence["count"]
    return {
        "turn_decisions": account["turnDecisions"],
        "turn_end_silence_ms": {
            "n": count,
            "mean": round(silence["sumS"] / count * 1000, 1) if count else None,
            "p50_at_most": None if (b := median_bound(silence["buckets"], count)) is None else b * 1000,
        },
        "interruptions": account["interruptions"],
        "drafts": account.get("drafts"),
        "output_stalled_ms": round(account["outputStalledS"] * 1000, 1),
        "output_late_frames": account["outputLateFrames"],
    }


def over_silence(
    v2v: dict[str, float], agent: dict[str, Any] | None, parts: dict[str, Any] | None = None
) -> dict[str, float] | None:
    """Voice-to-voice beyond the silence the agent waited before taking each turn: what recognition,
    the reply, the network and the browser add to the end-of-turn detector's wait, the share the
    detector's setting does not explain. Turn by turn when the run has the turns' parts; else the
    heard figures less the mean wait from the agent's own histogram."""
    if parts:
        beyond = parts["beyond_silence_ms"]
        waited_mean = parts["parts_ms"]["silence"]["mean"]
        return {"silence_waited_ms": waited_mean} | {k: beyond[k] for k in ("p50", "p95", "p99")}
    waited = agent["turn_end_silence_ms"]["mean"] if agent else None
    if waited is None or not v2v["n"]:
        return None
    return {"silence_waited_ms": waited} | {k: round(v2v[k] - waited, 1) for k in ("p50", "p95", "p99")}


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    runs = raw["perRun"]
    turns = [t for r in runs for t in r["turns"]]
    barges = [b for r in runs for b in r["bargeIns"]]
    v2v = [t["voiceToVoiceMs"] for t in turns if "voiceToVoiceMs" in t]
    stops = [b["bargeInMs"] for b in barges if "bargeInMs" in b]
    receivers = [r["receiver"] for r in runs if r.get("receiver")]
    sample_rates = sorted({r["context"]["sampleRate"] for r in runs if r.get("context")})
    agent = agent_account(raw.get("agent"))
    parts = breakdown(turns)
    return {
        "latency": {
            "turns": len(turns),
            "failed": len(turns) - len(v2v),
            "failures": dict(Counter(t["failed"] for t in turns if "failed" in t)),
            "overlapped": sum(1 for t in turns if t.get("overlapped")),
            "voice_to_voice_ms": summary(v2v),
            "over_silence_ms": over_silence(summary(v2v), agent, parts),
            "parts": parts,
            # The browser's playout buffer over each timed turn: the share of it spent waiting there.
            "buffer_ms": summary([t["bufferMs"] for t in turns if "bufferMs" in t]),
            "dashboard": dashboard_agreement(turns),
        },
        "barge_in": {
            "trials": len(barges),
            "failed": len(barges) - len(stops),
            "failures": dict(Counter(b["failed"] for b in barges if "failed" in b)),
            "barge_in_ms": summary(stops),
            "buffer_ms": summary([b["bufferMs"] for b in barges if "bufferMs" in b]),
        },
        # Per run, over the whole call: how long the browser held the reply before playing it.
        "receiver": {
            "jitter_buffer_ms": summary([r["jitterBufferMs"] for r in receivers]),
            "target_delay_ms": summary([r["targetDelayMs"] for r in receivers]),
            "arrival_jitter_ms": summary([r["jitterMs"] for r in receivers]),
            "concealed_percent": summary([r["concealedPercent"] for r in receivers]),
        },
        "audio_sample_rate_hz": sample_rates,
        "agent": agent,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.no_build:
        if not (FRONTEND / "dist" / "index.html").exists():
            raise SystemExit("frontend/dist is missing: build it (npm run build) or drop --no-build")
    else:
        ensure_build()
    configs: dict[str, Any] = {}
    field = Settings.model_fields.get("turn_detector")
    with tempfile.TemporaryDirectory() as d:
        for name, env in configurations().items():
            print(f"{name} ({env or 'the agent as configured'}) ...", flush=True)
            raw = measure(env, args, Path(d) / f"{name}.json")
            detector = env.get("VOICE_TURN_DETECTOR", field.default if field is not None else None)
            configs[name] = {"env": env, "turn_detector": detector, **summarize(raw)}
        start = None
        if args.start_runs:
            print(f"click to connected, {args.start_runs} pages ...", flush=True)
            start = summarize_start(measure_start(args.start_runs, Path(d) / "start.json"))
    failed = sum(c["latency"]["failed"] + c["barge_in"]["failed"] for c in configs.values())
    return {
        "runs": args.runs,
        "turns_per_run": args.turns,
        "barge_ins_per_run": args.barge_ins,
        "failed": failed,
        "configs": configs,
        **({"start": start} if start else {}),
    }


def _p(s: dict[str, Any]) -> str:
    return f"{s['p50']:g} / {s['p95']:g} / {s['p99']:g} ms" if s["n"] else "—"


def _p50(s: dict[str, Any]) -> str:
    return f"{s['p50']:g} ms" if s["n"] else "—"


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:g} ms"


def _counts(c: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in sorted(c.items())) or "—"


def parts_cell(parts: dict[str, Any] | None) -> str:
    if not parts:
        return "—"
    return ", ".join(f"{k} {v['p50']:g}" for k, v in parts["parts_ms"].items()) + f" ({parts['turns']})"


def report(d: dict[str, Any]) -> str:
    """The table for the console and docs/performance.md: one column per configuration."""
    configs: dict[str, Any] = d["configs"]

    def head(name: str, c: dict[str, Any]) -> str:
        detector = c.get("turn_detector")
        return f"{name} (detector {detector})" if detector else name

    def agreement(dashboard: dict[str, Any]) -> str:
        return f"{_p(dashboard['difference_ms'])} ({dashboard['missing']})"

    def failures(part: dict[str, Any]) -> str:
        why = ", ".join(f"{reason}: {n}" for reason, n in sorted(part["failures"].items()))
        return f"{part['failed']}" + (f" ({why})" if why else "")

    any_config = next(iter(configs.values()))
    rows: list[tuple[str, list[str]]] = [
        (
            f"Voice-to-voice: end of speech → first reply audio, {any_config['latency']['turns']} turns",
            [_p(c["latency"]["voice_to_voice_ms"]) for c in configs.values()],
        ),
        ("Turns without a reply", [failures(c["latency"]) for c in configs.values()]),
        *(
            [
                (
                    "Voice-to-voice by part, p50 ms (turns the agent's log matched)",
                    [parts_cell(c["latency"].get("parts")) for c in configs.values()],
                ),
                (
                    "Beyond the silence the agent waited, turn by turn",
                    [
                        _p(c["latency"]["parts"]["beyond_silence_ms"]) if c["latency"].get("parts") else "—"
                        for c in configs.values()
                    ],
                ),
            ]
            if any(c["latency"].get("parts") for c in configs.values())
            else []
        ),
        *(
            [
                (
                    "The dashboard's heard figure apart from this one, same turn (turns it showed none)",
                    [agreement(c["latency"]["dashboard"]) for c in configs.values()],
                )
            ]
            if all("dashboard" in c["latency"] for c in configs.values())
            else []
        ),
        (
            f"Barge-in: speech onset → agent silent, {any_config['barge_in']['trials']} trials",
            [_p(c["barge_in"]["barge_in_ms"]) for c in configs.values()],
        ),
        ("Barge-ins missed", [failures(c["barge_in"]) for c in configs.values()]),
        *(
            [
                (
                    "Browser playout buffer during the timed turns / barge-ins, p50",
                    [
                        f"{_p50(c['latency']['buffer_ms'])} / {_p50(c['barge_in']['buffer_ms'])}"
                        for c in configs.values()
                    ],
                )
            ]
            if all("buffer_ms" in c["latency"] for c in configs.values())
            else []
        ),
        (
            "Browser playout buffer over a call (jitterBufferDelay, per run)",
            [_p(c["receiver"]["jitter_buffer_ms"]) for c in configs.values()],
        ),
    ]
    if all("target_delay_ms" in c["receiver"] for c in configs.values()):
        rows.append(
            (
                "Its target, averaged over a call (jitterBufferTargetDelay, per run)",
                [_p(c["receiver"]["target_delay_ms"]) for c in configs.values()],
            )
        )
    if all(c.get("agent") for c in configs.values()):
        rows += [
            (
                "Agent: end-of-turn decisions by outcome",
                [_counts(c["agent"]["turn_decisions"]) for c in configs.values()],
            ),
            (
                "Agent: silence waited before taking the turn, mean",
                [_ms(c["agent"]["turn_end_silence_ms"]["mean"]) for c in configs.values()],
            ),
            (
                "Agent: its outbound audio behind its clock, summed",
                [_ms(c["agent"]["output_stalled_ms"]) for c in configs.values()],
            ),
        ]
    if all(c.get("agent") and c["agent"].get("drafts") is not None for c in configs.values()):
        rows.append(
            (
                "Agent: replies drafted in the pause, by outcome",
                [_counts(c["agent"]["drafts"]) for c in configs.values()],
            )
        )
    start = d.get("start")
    if start:
        others = ["—"] * (len(configs) - 1)
        steps = ", ".join(f"{k} {v:g}" for k, v in start["steps_p50_ms"].items())
        rows += [
            (
                f"Click → connected, {start['pages']} fresh pages idle {start['idle_before_click_ms']:g} ms",
                [_p(start["click_to_connected_ms"]), *others],
            ),
            ("Its steps, p50 ms after the click", [steps, *others]),
        ]
    lines = [
        "| In the page, p50 / p95 / p99 | " + " | ".join(head(n, c) for n, c in configs.items()) + " |",
        "|---|" + "---|" * len(configs),
        *(f"| {what} | " + " | ".join(cells) + " |" for what, cells in rows),
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="fresh pages (sessions) per configuration")
    ap.add_argument("--turns", type=int, default=6, help="questions timed per page")
    ap.add_argument("--barge-ins", type=int, default=3, help="interruptions timed per page")
    ap.add_argument("--start-runs", type=int, default=20, help="fresh pages timed from click to connected")
    ap.add_argument("--no-build", action="store_true", help="measure frontend/dist as it is, not rebuilt")
    args = ap.parse_args()
    res = run(args)
    print(report(res))
    print(f"results: {write('browser', res)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
