"""Soak and load: N concurrent voice sessions for M minutes, each speaking a turn now and then.

Reports what a user of a loaded agent would notice: audio frames delivered (and RTP packets lost),
frames the agent produced late, voice-to-voice latency under load (at a probe client, from the
end of speech to the first loud reply frame, and as the agent reports it for every session),
errors, and the agent's memory and file descriptors over time (no growth after warm-up, back to
baseline after the sessions end).

Without --url it starts a local agent (offline providers). With --url it is a load generator
against any deployment: `python -m bench.soak --url https://voice.example --sessions 20 --minutes 5`
(the agent's /metrics must be reachable for the server-side figures; behind a load balancer they
are those of whichever agent answers the scrape). VOICE_API_TOKEN in the environment is sent as the
bearer token when creating sessions. Needs flite for the test speech.
Results: bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.agent import first_voiced_after, speech_bounds
from bench.common import summary, table, write
from tests.support.procs import running_agent
from tests.support.prom import scrape
from tests.support.speech import synth
from voice_agent.testing.client import VoiceClient

FRAMES_PER_S = 50
PHRASES = ["what time is it", "hello there", "please tell me a joke", "what day is it"]
# A probe's recording is trimmed to this much history so an hour-long soak stays flat in memory.
KEEP_RECORDING_S = 15.0


@dataclass
class Session:
    client: VoiceClient
    probe: bool
    turns: int = 0
    failed_turns: int = 0
    errors: list[str] = field(default_factory=list)
    agent_v2v_ms: list[float] = field(default_factory=list)
    client_v2v_ms: list[float] = field(default_factory=list)


async def open_session(url: str, probe: bool, headers: dict[str, str]) -> Session:
    client = VoiceClient(url, record=probe, headers=headers)
    await client.create_session()
    await client.connect()
    await client.wait_media(timeout=60)
    return Session(client, probe)


async def speak(s: Session, phrase: str) -> None:
    pcm, rate = synth(phrase)
    tail = len(pcm) / (2 * rate) - speech_bounds(pcm, rate)[1]
    mark = len(s.client.events)
    uid = s.client.say(pcm, rate)
    try:
        end = await s.client.speech_ended(uid, timeout=30) - tail
        m = await s.client.wait_for(lambda e: e["type"] == "metrics", timeout=30, after=mark)
        if m["turn"].get("voice_to_voice_ms"):
            s.agent_v2v_ms.append(float(m["turn"]["voice_to_voice_ms"]))
        if s.probe:
            s.client_v2v_ms.append((await first_voiced_after(s.client, end, timeout=10) - end) * 1000)
        await s.client.wait_for(
            lambda e: e["type"] == "status" and e["processing"] == "listening", timeout=30, after=mark
        )
        s.turns += 1
    except TimeoutError:
        s.failed_turns += 1
    s.errors += [str(e.get("code")) for e in s.client.events[mark:] if e["type"] == "error"]


async def talk(s: Session, index: int, of: int, every_s: float, until: float) -> None:
    """Turns at a steady pace, staggered across sessions so they do not all speak at once."""
    await asyncio.sleep(every_s * index / of)
    n = 0
    while time.monotonic() + every_s / 2 < until:
        started = time.monotonic()
        await speak(s, PHRASES[(index + n) % len(PHRASES)])
        n += 1
        await asyncio.sleep(max(0.0, every_s - (time.monotonic() - started)))


async def inbound(s: Session) -> tuple[int, int, int]:
    """(frames decoded, RTP packets received, RTP packets lost) of the agent's audio at the client."""
    assert s.client.pc is not None
    report = await s.client.pc.getStats()
    rtp = [x for x in report.values() if x.type == "inbound-rtp"]
    return s.client.frames_received, sum(x.packetsReceived for x in rtp), sum(x.packetsLost for x in rtp)


def server_sample(m: dict[str, float], t0: float) -> dict[str, float]:
    return {
        "t_s": round(time.monotonic() - t0, 1),
        "rss_mb": round(m.get("process_resident_memory_bytes", float("nan")) / 2**20, 1),
        "open_fds": m.get("process_open_fds", float("nan")),
        "active_sessions": m.get("webrtc_active_sessions_total", float("nan")),
    }


def counter(m: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in m.items() if k.startswith(prefix) and not k.endswith("_created"))


async def soak(
    url: str, sessions: int, seconds: float, every_s: float, sample_s: float, headers: dict[str, str]
) -> dict[str, Any]:
    t0 = time.monotonic()
    before = await scrape(url)
    samples = [server_sample(before, t0)]
    opened = await asyncio.gather(
        *(open_session(url, i == 0, headers) for i in range(sessions)), return_exceptions=True
    )
    live = [s for s in opened if isinstance(s, Session)]
    open_failures = [repr(e)[:200] for e in opened if not isinstance(e, Session)]
    print(f"  {len(live)}/{sessions} sessions connected in {time.monotonic() - t0:.1f}s", flush=True)
    start_m, start_flow = await scrape(url), [await inbound(s) for s in live]
    started = time.monotonic()
    until = started + seconds
    talkers = [asyncio.create_task(talk(s, i, len(live), every_s, until)) for i, s in enumerate(live)]
    try:
        while time.monotonic() < until:
            await asyncio.sleep(min(sample_s, max(0.0, until - time.monotonic())))
            samples.append(server_sample(await scrape(url), t0))
            for s in live:
                if s.probe:
                    cut = time.monotonic() - KEEP_RECORDING_S
                    s.client.recording.frames = [f for f in s.client.recording.frames if f.at >= cut]
            print(f"  t={samples[-1]['t_s']:.0f}s {samples[-1]}", flush=True)
        await asyncio.gather(*talkers)
        elapsed = time.monotonic() - started
        end_m, end_flow = await scrape(url), [await inbound(s) for s in live]
    finally:
        for t in talkers:
            t.cancel()
        await asyncio.gather(*(s.client.close() for s in live), return_exceptions=True)
    after = await settle(url, samples, t0)

    frames = sum(e[0] - b[0] for b, e in zip(start_flow, end_flow, strict=True))
    lost = sum(e[2] - b[2] for b, e in zip(start_flow, end_flow, strict=True))
    packets = sum(e[1] - b[1] for b, e in zip(start_flow, end_flow, strict=True))
    sent = counter(end_m, "voice_output_frames_total") - counter(start_m, "voice_output_frames_total")
    late = counter(end_m, "voice_output_late_frames_total") - counter(
        start_m, "voice_output_late_frames_total"
    )
    warm = samples[max(1, len(samples) // 4)]
    loaded = [x for x in samples if x["active_sessions"] >= len(live)] or samples
    return {
        "url_local": url.startswith("http://127.0.0.1"),
        "sessions": sessions,
        "connected": len(live),
        "open_failures": open_failures,
        "seconds": round(elapsed, 1),
        "turn_every_s": every_s,
        "turns": sum(s.turns for s in live),
        "failed_turns": sum(s.failed_turns for s in live),
        "client_error_events": sorted({e for s in live for e in s.errors}),
        "client_error_event_count": sum(len(s.errors) for s in live),
        "agent_errors": round(counter(end_m, "voice_errors_total") - counter(start_m, "voice_errors_total")),
        "frames_delivered_percent": round(100 * frames / max(1.0, elapsed * FRAMES_PER_S * len(live)), 2),
        "rtp_packets_received": packets,
        "rtp_packets_lost": lost,
        "agent_frames_sent": int(sent),
        "agent_late_frames_percent": round(100 * late / max(sent, 1), 3),
        "voice_to_voice_ms_probe_client": summary([v for s in live for v in s.client_v2v_ms]),
        "voice_to_voice_ms_agent_all_sessions": summary([v for s in live for v in s.agent_v2v_ms]),
        "rss_mb": {
            "before": samples[0]["rss_mb"],
            "after_warmup": warm["rss_mb"],
            "max_loaded": max(x["rss_mb"] for x in loaded),
            "end_of_load": samples[-2]["rss_mb"] if len(samples) > 1 else samples[-1]["rss_mb"],
            "growth_after_warmup": round(
                max(x["rss_mb"] for x in loaded[len(loaded) // 4 :]) - warm["rss_mb"], 1
            ),
            "after_sessions_closed": after["rss_mb"],
        },
        "open_fds": {
            "before": samples[0]["open_fds"],
            "max_loaded": max(x["open_fds"] for x in loaded),
            "after_sessions_closed": after["open_fds"],
        },
        "samples": samples,
    }


async def settle(
    url: str, samples: list[dict[str, float]], t0: float, timeout: float = 30.0
) -> dict[str, float]:
    """Server figures once the sessions are gone (bounded wait for the agent to release them)."""
    deadline = time.monotonic() + timeout
    while True:
        m = await scrape(url)
        if m.get("webrtc_peer_connections_total", 0) == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        with contextlib.suppress(httpx.HTTPError):
            for s in (await http.get("/v2/sessions")).json():
                await http.delete(f"/v2/sessions/{s['id']}")
    sample = server_sample(await scrape(url), t0)
    samples.append(sample)
    return sample


async def run(args: argparse.Namespace) -> dict[str, Any]:
    seconds = args.minutes * 60
    token = os.environ.get("VOICE_API_TOKEN", "")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    if args.url:
        return await soak(
            args.url.rstrip("/"), args.sessions, seconds, args.turn_every, args.sample_every, headers
        )
    with tempfile.TemporaryDirectory() as d:
        env = {"voice_max_sessions": str(args.sessions + 5), "voice_log_level": "WARNING"}
        with running_agent(Path(d), **env) as agent:
            return await soak(agent.url, args.sessions, seconds, args.turn_every, args.sample_every, headers)


def rows_of(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    def p(s: dict[str, float]) -> str:
        return f"{s['p50']} / {s['p95']} / {s['p99']} (n={s['n']})"

    rss, fds = r["rss_mb"], r["open_fds"]
    return [
        (f"sessions connected / asked ({r['seconds']} s)", f"{r['connected']} / {r['sessions']}", "all"),
        ("turns ok / failed", f"{r['turns']} / {r['failed_turns']}", "0 failed"),
        (
            "error events at clients / agent errors",
            f"{r['client_error_event_count']} / {r['agent_errors']}",
            "0",
        ),
        ("audio frames delivered at clients (%)", str(r["frames_delivered_percent"]), ">= 99"),
        (
            "RTP packets lost (agent -> clients)",
            f"{r['rtp_packets_lost']} of {r['rtp_packets_received']}",
            "0",
        ),
        ("frames produced late by the agent (%)", str(r["agent_late_frames_percent"]), "< 1"),
        ("voice-to-voice at probe client p50/p95/p99 (ms)", p(r["voice_to_voice_ms_probe_client"]), "-"),
        (
            "voice-to-voice agent-reported, all sessions (ms)",
            p(r["voice_to_voice_ms_agent_all_sessions"]),
            "-",
        ),
        (
            "agent RSS MB: before / warm / max / closed",
            f"{rss['before']} / {rss['after_warmup']} / {rss['max_loaded']} / {rss['after_sessions_closed']}",
            "-",
        ),
        ("agent RSS growth after warm-up (MB)", str(rss["growth_after_warmup"]), "~0"),
        (
            "agent open fds: before / max / closed",
            f"{fds['before']} / {fds['max_loaded']} / {fds['after_sessions_closed']}",
            "closed = before",
        ),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="agent or deployment to load (default: start a local agent)")
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--turn-every", type=float, default=15.0, help="seconds between a session's turns")
    ap.add_argument("--sample-every", type=float, default=10.0, help="seconds between server samples")
    ap.add_argument("--quick", action="store_true", help="3 sessions for 20 s: a smoke run")
    args = ap.parse_args()
    if args.quick:
        args.sessions, args.minutes, args.turn_every, args.sample_every = 3, 1 / 3, 6.0, 5.0
    res = asyncio.run(run(args))
    print(table(rows_of(res)))
    print(f"results: {write('soak', res)}")
    return 0 if res["connected"] == res["sessions"] and not res["failed_turns"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
