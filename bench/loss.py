"""Uplink packet loss: how often the agent still understands a spoken phrase when the client's
network loses packets, for a browser-like sender and for today's Python client.

Each run is a fresh call to a real agent process (offline providers, loopback): the client speaks
one short phrase from its first packet on (what a user does who talks as the call connects, or a
network that turns lossy as they start), while its uplink loses RTP packets by a seeded pattern,
random (Bernoulli) or bursty (Gilbert-Elliott), at 0 / 5 / 10 / 20 / 30 %. The run counts as
understood when the agent's final transcript holds at least UNDERSTOOD_AT of the phrase's words
(tests/support/speech.py's `sounds_like`: the phrase, or what the recognizer hears in a loss-free
synthesis of it, whichever is kinder). A run that fails in any way, no transcript
included, is a counted miss. The two senders (bench/sender.py) see the same loss sequences and
phrases run for run; the browser-like one is also measured SETTLED_S into a lossy call, when the
agent's reports have turned its FEC on. Besides intelligibility, each point reports the loss
measured, how many of the phrase's voiced packets carried in-band FEC, and what the agent says it
repaired (`voice_inbound_concealed_frames_total`, `voice_inbound_overflow_frames_total`).

`python -m bench.loss [--quick] [--runs N] [--parallel N]`; results in bench/results/loss.json.
Exits 1 when a point with a target (bench/targets.py) falls short of it.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.agent import AGENT_ENV, speech_bounds
from bench.common import write
from bench.sender import (
    BROWSER,
    BROWSER_NO_RED,
    FEC_ALWAYS,
    LossPattern,
    LossyUplink,
    OpusSender,
    SenderSpec,
    SpeakingClient,
)
from bench.targets import TARGETS, values_at
from tests.support import waits
from tests.support.procs import running_agent
from tests.support.prom import scrape
from tests.support.speech import clean_hearing, sounds_like, synth

UNDERSTOOD_AT = 0.75  # share of the phrase's words the final transcript must hold
BURST = 2.5  # mean packets lost in a row, bursty pattern
RATES = [5, 10, 20, 30]
PATTERNS = ["random", "bursty"]
SENDERS = {s.name: s for s in (BROWSER, BROWSER_NO_RED, FEC_ALWAYS)}
# Short things people say to a voice agent (flite's slt voice: tests/support/speech.py), chosen
# among 20 candidates as those the offline STT hears whole from both senders when nothing is lost,
# every time; the 0 % rows check that on each run. The recognizer is on a knife edge even then
# ("hello how are you" comes out as "hello now marion" from the browser-like encoder alone), so a
# phrase it already mishears would measure the recognizer, not the loss.
PHRASES = [
    "remember the word banana",
    "thank you very much",
    "where is the nearest station",
    "can you help me",
    "play some music",
    "set an alarm for seven",
    "i need a taxi",
    "is it going to rain",
    "i am looking for a hotel",
    "i want to speak to someone",
]
# The browser-like sender is also measured this far into a call (lossy silence before the phrase),
# by when the agent's receiver reports have turned its FEC on: the steady state of a lossy call.
SETTLED_S = 2.0
SETTLED_RATES = [10, 20]  # random loss
FINAL_WAIT_S = 15.0  # after the phrase's last voiced frame went out
COUNTERS = (
    "voice_inbound_concealed_frames_total",
    "voice_inbound_rebuilt_frames_total",
    "voice_inbound_overflow_frames_total",
)
FRAME_S = 0.02


@dataclass(frozen=True)
class Point:
    pattern: LossPattern
    sender: SenderSpec
    runs: int
    lead_s: float = 0.0  # lossy silence sent before the phrase

    @property
    def loss_percent(self) -> int:
        return round(self.pattern.rate * 100)

    @property
    def label(self) -> str:
        return self.sender.name + (f", {self.lead_s:g} s in" if self.lead_s else "")

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.label, self.pattern.kind if self.loss_percent else "none", self.loss_percent)


async def one_run(url: str, point: Point, index: int) -> dict[str, Any]:
    phrase = PHRASES[index % len(PHRASES)]
    seed = f"{point.pattern.kind}/{point.loss_percent}/{index}"
    pcm, rate = synth(phrase)
    onset_s, end_s = speech_bounds(pcm, rate)
    sender = OpusSender(point.sender)
    uplink = LossyUplink(point.pattern.losses(seed))
    client = SpeakingClient(url, sender, uplink)
    lead_s = point.lead_s
    if lead_s:
        client.say(bytes(round(lead_s * rate) * 2), rate)
    uid = client.say(pcm, rate)
    error = ""
    try:
        await client.create_session()
        await client.connect()
        await waits.until(lambda: client.speech_started(uid) is not None, timeout=30, what="speech sent")
        voiced_end_at = (client.speech_started(uid) or 0.0) + end_s
        await client.wait_for(
            lambda e: e["type"] == "transcript" and e["final"] and e["_at"] > voiced_end_at,
            timeout=end_s + FINAL_WAIT_S,
        )
    except Exception as exc:  # a run that fails is a miss, recorded with its reason
        error = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        await client.close()
    heard = " ".join(str(e["text"]) for e in client.events if e["type"] == "transcript" and e["final"])
    judged = sounds_like(phrase, heard)
    # The phrase's voiced packets, by index in sending order (one packet per 20 ms frame).
    first = math.floor((lead_s + onset_s) / FRAME_S)
    last = math.ceil((lead_s + end_s) / FRAME_S)
    fec_from = sender.fec_from_frame
    return {
        "phrase": phrase,
        "seed": seed,
        "heard": heard,
        "score": round(judged, 2),
        "understood": judged >= UNDERSTOOD_AT,
        "error": error,
        "sent": uplink.sent,
        "dropped": len(uplink.dropped),
        "voiced": last - first,
        "voiced_dropped": sum(1 for i in uplink.dropped if first <= i < last),
        "voiced_fec": sum(1 for i in sender.lbrr_frames if first <= i < last),
        # When libopus was first told to expect loss, in ms from the speech onset (negative: before).
        "fec_from_onset_ms": None if fec_from is None else round((fec_from - first) * FRAME_S * 1000),
        "fec_from_first_packet": fec_from == 0,
        "sent_red": client.sends_red,
    }


async def run_point(url: str, point: Point, parallel: int) -> dict[str, Any]:
    slots = asyncio.Semaphore(parallel)

    async def guarded(i: int) -> dict[str, Any]:
        async with slots:
            return await one_run(url, point, i)

    before = await scrape(url)
    t0 = time.monotonic()
    runs = await asyncio.gather(*(guarded(i) for i in range(point.runs)))
    elapsed = time.monotonic() - t0
    # Closed calls finish their last frames on the agent's loop; counters settle within a moment.
    after = await scrape(url)
    understood = sum(r["understood"] for r in runs)
    sent, dropped = sum(r["sent"] for r in runs), sum(r["dropped"] for r in runs)
    voiced = sum(r["voiced"] for r in runs)
    fec_from = [r["fec_from_onset_ms"] for r in runs if r["fec_from_onset_ms"] is not None]
    sender, pattern, loss = point.key
    res: dict[str, Any] = {
        "sender": sender,
        "pattern": pattern,
        "loss_percent": loss,
        "lead_s": point.lead_s,
        "runs": len(runs),
        "understood": understood,
        "understood_percent": round(100 * understood / len(runs), 1),
        "understood_95ci_percent": wilson(understood, len(runs)),
        "target_percent": None,  # below, from the point's own fields
        "packets_sent": sent,
        "packets_lost": dropped,
        "measured_loss_percent": round(100 * dropped / max(sent, 1), 1),
        "voiced_packets": voiced,
        "voiced_lost": sum(r["voiced_dropped"] for r in runs),
        "voiced_with_fec_percent": round(100 * sum(r["voiced_fec"] for r in runs) / max(voiced, 1), 1),
        "fec_from_onset_ms_p50": statistics.median(fec_from) if fec_from else None,
        "runs_without_fec": point.runs - len(fec_from),
        "fec_from_first_packet": all(r["fec_from_first_packet"] for r in runs),
        "runs_sending_red": sum(r["sent_red"] for r in runs),
        "agent": {name: after.get(name, 0.0) - before.get(name, 0.0) for name in COUNTERS},
        "seconds": round(elapsed, 1),
        "detail": runs,
    }
    res["target_percent"] = target_percent(res)
    return res


def target_percent(point: dict[str, Any]) -> float | None:
    """The minimum share understood that bench/targets.py sets for this point, if it sets one: the
    target names its point by fields (sender, pattern, rate), which this point either has or not."""
    for t in TARGETS:
        if t.area == "loss" and values_at({"points": [point]}, t.path):
            return t.limit
    return None


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % confidence interval of a proportion k/n in percent (Wilson score): with 20 runs a point,
    one miss more or less moves the figure by 5 points, and the table should say how far to trust it."""
    if n == 0:
        return (0.0, 100.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(100 * max(centre - half, 0.0)), round(100 * min(centre + half, 1.0)))


def grid(args: argparse.Namespace) -> list[Point]:
    points = [Point(LossPattern("random", 0.0), s, args.clean_runs) for s in SENDERS.values()]
    for kind in args.patterns:
        for rate in args.rates:
            pattern = LossPattern(kind, rate / 100, args.burst)
            points += [Point(pattern, s, args.runs) for s in SENDERS.values()]
    points += [
        Point(LossPattern("random", r / 100), BROWSER, args.runs, SETTLED_S) for r in args.settled_rates
    ]
    return points


async def run(args: argparse.Namespace) -> dict[str, Any]:
    points = grid(args)
    for phrase in {PHRASES[i % len(PHRASES)] for i in range(max(p.runs for p in points))}:
        clean_hearing(phrase)  # each phrase's clean reference once, before any call is timed
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as d, running_agent(Path(d), **AGENT_ENV) as agent:
        warm = Point(LossPattern("random", 0.0), FEC_ALWAYS, args.parallel)
        await run_point(agent.url, warm, args.parallel)  # not counted
        for i, point in enumerate(points, 1):
            res = await run_point(agent.url, point, args.parallel)
            out.append(res)
            print(f"  [{i}/{len(points)}] {row(res)}", flush=True)
    return {
        "points": out,
        "phrases": PHRASES,
        "voice": "slt",
        "understood_at": UNDERSTOOD_AT,
        "burst_mean_packets": args.burst,
        "parallel_calls": args.parallel,
        "senders": {s.name: s.description for s in SENDERS.values()},
    }


HEADER = (
    "| pattern | loss | sender | understood (%; 95 % CI) | words heard (mean) | target | lost (measured)"
    " | voiced packets with FEC | FEC from onset (p50) | repaired / lost (rebuilt from RED) |"
    "\n|---|---|---|---|---|---|---|---|---|---|"
)


def mean_score(p: dict[str, Any]) -> float:
    """The share of the phrase's words heard, averaged over the runs: finer than understood or not."""
    scores = [float(r["score"]) for r in p["detail"]]
    return round(sum(scores) / len(scores), 2) if scores else 0.0


def row(p: dict[str, Any]) -> str:
    target = f">= {p['target_percent']:g} %" if p["target_percent"] is not None else "-"
    fec_from = p["fec_from_onset_ms_p50"]
    fec = "-" if fec_from is None else f"{fec_from:+.0f} ms"
    if p["fec_from_first_packet"]:
        fec = "first packet"
    if p["runs_without_fec"]:
        n = p["runs_without_fec"]
        fec += f" ({n} run{'' if n == 1 else 's'} never)"
    repaired = int(p["agent"]["voice_inbound_concealed_frames_total"])
    rebuilt = int(p["agent"].get("voice_inbound_rebuilt_frames_total", 0))
    low, high = p["understood_95ci_percent"]
    return (
        f"| {p['pattern']} | {p['loss_percent']} % | {p['sender']} | {p['understood']}/{p['runs']}"
        f" ({p['understood_percent']:g} %; {low:g}-{high:g}) | {mean_score(p):.2f} | {target} |"
        f" {p['measured_loss_percent']} % |"
        f" {p['voiced_with_fec_percent']} % | {fec} | {repaired} / {p['packets_lost']} ({rebuilt}) |"
    )


def report(res: dict[str, Any]) -> str:
    """The results as a markdown table, as printed and as docs/reliability.md shows it."""
    return "\n".join([HEADER, *(row(p) for p in res["points"])])


def shortfalls(points: list[dict[str, Any]]) -> list[str]:
    return [
        f"{p['sender']} at {p['loss_percent']} % {p['pattern']} loss:"
        f" {p['understood_percent']:g} % understood, target {p['target_percent']:g} %"
        for p in points
        if p["target_percent"] is not None and p["understood_percent"] < p["target_percent"]
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--quick", action="store_true", help="a smoke run: 10 %% random loss only, 4 runs a point"
    )
    ap.add_argument("--runs", type=int, default=20, help="runs per lossy point")
    ap.add_argument("--clean-runs", type=int, default=len(PHRASES), help="runs per loss-free point")
    ap.add_argument("--rates", type=int, nargs="+", default=RATES, help="loss percentages")
    ap.add_argument("--patterns", nargs="+", default=PATTERNS, choices=PATTERNS)
    ap.add_argument("--burst", type=float, default=BURST, help="mean burst length (packets), bursty")
    ap.add_argument("--parallel", type=int, default=2, help="calls at once")
    ap.add_argument(
        "--settled-rates",
        type=int,
        nargs="*",
        default=SETTLED_RATES,
        help=f"random loss percentages at which the browser-like sender also speaks {SETTLED_S:g} s in",
    )
    args = ap.parse_args()
    if args.quick:
        args.runs, args.clean_runs, args.rates, args.patterns, args.settled_rates = (
            4,
            2,
            [10],
            ["random"],
            [10],
        )
    started = time.monotonic()
    res = asyncio.run(run(args))
    res["mode"] = "quick" if args.quick else "full"
    res["seconds"] = round(time.monotonic() - started)
    print(report(res))
    print(f"{res['seconds']} s; results: {write('loss', res)}")
    missed = shortfalls(res["points"])
    for line in missed:
        print(f"BELOW TARGET: {line}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
