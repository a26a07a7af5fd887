"""Voice agent benchmarks: voice-to-voice latency, barge-in, capacity, memory.

Voice-to-voice runs from the end of the user's speech (last VAD-voiced frame sent) to the first loud
frame of the reply received. Latency and barge-in are measured by an independent probe
(bench/probe.py: aiortc and PyAV only, none of the product's audio code); a turn without a reply
or a barge-in the agent did not stop for is a counted failure. Capacity load comes from the
product's Python client.

Everything runs over real WebRTC on loopback, against a real agent process with the offline
providers. `python -m bench.agent [--quick]`; results in bench/results/agent.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import webrtcvad

from bench.common import RESULTS, cpu_seconds, rss_mb, summary, table, write
from bench.probe import Probe
from tests.support.procs import AgentProcess, running_agent
from tests.support.prom import scrape
from tests.support.speech import synth
from tests.support.ws import Signaling
from voice_agent.testing.client import VoiceClient

END_OF_TURN_MS = 500
# One client drives every session here: the per-address creation limit would only measure itself.
AGENT_ENV = {"voice_log_level": "WARNING", "voice_sessions_per_ip_per_min": "0"}
PARTS = ["latency", "barge-in", "memory", "capacity"]


def speech_bounds(pcm: bytes, rate: int) -> tuple[float, float]:
    """(onset, end) of the speech inside an utterance, in seconds from its first sample, decided by
    the same webrtcvad the agent uses: a turn ends where the VAD hears the last voice, not where the
    synthesizer's padding ends."""
    vad = webrtcvad.Vad(3)
    step = rate * 2 * 20 // 1000
    voiced = [i for i in range(0, len(pcm) - step + 1, step) if vad.is_speech(pcm[i : i + step], rate)]
    if not voiced:
        raise ValueError("utterance has no speech")
    return voiced[0] / (2 * rate), (voiced[-1] + step) / (2 * rate)


async def heard_after(find: Callable[[float], float | None], t: float, timeout: float) -> float:
    """When `find` (a recording's first loud frame at or after t) first has an answer."""
    deadline = time.monotonic() + timeout
    while (at := find(t)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError("no reply audio")
        await asyncio.sleep(0.005)
    return at


async def first_voiced_after(client: VoiceClient, t: float, timeout: float = 15.0) -> float:
    return await heard_after(client.recording.first_voiced_after, t, timeout)


async def connected_client(url: str, record: bool = True) -> VoiceClient:
    client = VoiceClient(url, record=record)
    await client.create_session()
    await client.connect()
    await client.wait_media(timeout=30)
    return client


class Events(Protocol):
    """What the product's client and the probe both offer: a bounded wait for an agent event."""

    async def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float, after: int = 0
    ) -> dict[str, Any]: ...


async def turn_done(client: Events, mark: int) -> None:
    await client.wait_for(lambda e: e["type"] == "metrics", timeout=30, after=mark)
    await client.wait_for(
        lambda e: e["type"] == "status" and e["processing"] == "listening", timeout=30, after=mark
    )


def frames_of(pcm: bytes, rate: int) -> int:
    return -(-len(pcm) // (2 * rate // 50))  # 20 ms frames, the last one padded


async def latency(url: str, turns: int) -> dict[str, Any]:
    """Voice-to-voice as the independent probe hears it; a turn with no reply is a counted failure."""
    probe = Probe(url)
    await probe.open()
    pcm, rate = synth("what time is it")
    last_voiced = round(speech_bounds(pcm, rate)[1] * 50) - 1  # index of the last voiced 20 ms frame
    v2v: list[float] = []
    agent_side: list[float] = []
    failed = 0
    try:
        for i in range(turns):
            mark = len(probe.events)
            uid = probe.say(pcm, rate)
            try:
                end = (await probe.sent(uid, last_voiced + 1))[last_voiced]  # the user stopped speaking
                heard = await heard_after(probe.ear.first_loud_after, end, 15.0)
                m = await probe.wait_for(lambda e: e["type"] == "metrics", timeout=30, after=mark)
                await turn_done(probe, mark)
            except TimeoutError as exc:
                failed += 1
                print(f"  turn {i + 1}/{turns}: FAILED ({exc})", flush=True)
                continue
            v2v.append((heard - end) * 1000)
            agent_side.append(m["turn"]["voice_to_voice_ms"] or float("nan"))
            print(f"  turn {i + 1}/{turns}: {v2v[-1]:.0f} ms", flush=True)
    finally:
        await probe.close()
    return {
        "turns": turns,
        "failed": failed,
        "voice_to_voice_ms": summary(v2v),
        "overhead_ms": summary([v - END_OF_TURN_MS for v in v2v]),
        "agent_reported_voice_to_voice_ms": summary(agent_side),
    }


async def barge_in(url: str, trials: int) -> dict[str, Any]:
    """Speech onset to the agent's audio stopping, as the probe hears it; a miss is counted, never 0 ms."""
    probe = Probe(url)
    await probe.open()
    story, rate = synth("please tell me a story")
    hello, _ = synth("hello there")
    hello_onset = speech_bounds(hello, rate)[0]
    stops: list[float] = []
    failed = 0
    try:
        for i in range(trials):
            mark = len(probe.events)
            probe.say(story, rate)
            try:
                speaking = await probe.wait_for(
                    lambda e: e["type"] == "status" and e["processing"] == "speaking", timeout=30, after=mark
                )
                deadline = time.monotonic() + 20
                while len(probe.ear.loud_between(speaking["_at"], math.inf)) < 50:  # 1 s of the story heard
                    if time.monotonic() > deadline:
                        raise TimeoutError("the story was not heard")
                    await asyncio.sleep(0.02)
                mark = len(probe.events)
                uid = probe.say(hello, rate)
                sent = await probe.sent(uid, frames_of(hello, rate))
                await turn_done(probe, mark)
            except TimeoutError as exc:
                failed += 1
                print(f"  barge-in {i + 1}/{trials}: FAILED ({exc})", flush=True)
                continue
            onset, spoken_until = sent[0] + hello_onset, sent[-1]
            voiced = probe.ear.loud_between(onset, spoken_until)
            if not voiced or max(voiced) >= spoken_until - 0.04:
                # Silent before the user spoke (nothing to interrupt), or talking to the end of the
                # user's words (never stopped): a miss.
                failed += 1
                why = "agent was not speaking" if not voiced else "agent did not stop"
                print(f"  barge-in {i + 1}/{trials}: FAILED ({why})", flush=True)
                continue
            stops.append((max(voiced) - onset) * 1000)
            print(
                f"  barge-in {i + 1}/{trials}: agent silent {stops[-1]:.0f} ms after speech onset", flush=True
            )
    finally:
        await probe.close()
    return {"trials": trials, "failed": failed, "barge_in_ms": summary(stops)}


async def capacity(tmp: Path, sessions: int, seconds: float) -> dict[str, Any]:
    """N connected calls, VAD on every inbound stream, one spoken turn in flight across the pool."""
    with running_agent(tmp, voice_max_sessions=str(sessions + 5), **AGENT_ENV) as agent:
        clients = await asyncio.gather(*(connected_client(agent.url, record=False) for _ in range(sessions)))
        pcm, rate = synth("what time is it")
        try:
            await asyncio.sleep(2.0)  # warm-up: let every stream reach steady state before measuring
            before, cpu0, t0 = await scrape(agent.url), cpu_seconds(agent.proc.pid), time.monotonic()
            own0 = cpu_seconds(os.getpid())
            counts0 = [c.frames_received for c in clients]
            turns = 0
            deadline = t0 + seconds
            while time.monotonic() < deadline:
                c = clients[turns % sessions]
                mark = len(c.events)
                c.say(pcm, rate)
                with contextlib.suppress(TimeoutError):
                    await c.wait_for(lambda e: e["type"] == "metrics", timeout=15, after=mark)
                turns += 1
            elapsed = time.monotonic() - t0
            after, cpu1 = await scrape(agent.url), cpu_seconds(agent.proc.pid)
            received = sum(c.frames_received - n for c, n in zip(clients, counts0, strict=True))
        finally:
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    sent = delta('voice_output_frames_total{kind="silence"}') + delta(
        'voice_output_frames_total{kind="speech"}'
    )
    late = delta("voice_output_late_frames_total")
    stalled = delta("voice_output_stalled_seconds_total")
    expected = sessions * elapsed * 50
    return {
        "sessions": sessions,
        "seconds": round(elapsed, 1),
        "turns": turns,
        "agent_cpu_percent": round(100 * (cpu1 - cpu0) / elapsed, 1),
        "sessions_per_core_projected": round(sessions / max((cpu1 - cpu0) / elapsed, 1e-6), 1),
        "loadgen_cpu_percent": round(100 * (cpu_seconds(os.getpid()) - own0) / elapsed, 1),
        "frames_sent": int(sent),
        "late_percent": round(100 * late / max(sent, 1), 2),
        # Stalled time, not stall events: a 300 ms stall is 300 ms here, one late frame above.
        "stalled_percent": round(100 * stalled / max(sessions * elapsed, 1e-6), 3),
        "received_percent_at_client": round(100 * received / max(expected, 1), 2),
    }


async def memory(tmp: Path, idle: int, churn: int) -> dict[str, Any]:
    with running_agent(tmp, voice_max_sessions=str(idle + 10), **AGENT_ENV) as agent:
        pid = agent.proc.pid
        base = rss_mb(pid)
        clients = await asyncio.gather(*(connected_client(agent.url) for _ in range(idle)))
        await asyncio.sleep(1.0)  # settle: jitter buffers and codec state fill in the first second
        loaded = rss_mb(pid)
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        warm = None
        for i in range(churn):
            await one_session(agent)
            if i == min(100, churn // 5) - 1:
                warm = rss_mb(pid)
            if (i + 1) % 100 == 0:
                print(f"  churn {i + 1}/{churn}: RSS {rss_mb(pid):.1f} MB", flush=True)
        end = rss_mb(pid)
    return {
        "rss_base_mb": round(base, 1),
        "idle_sessions": idle,
        "rss_per_idle_session_mb": round((loaded - base) / idle, 2),
        "churn_sessions": churn,
        "rss_after_warmup_mb": round(warm or end, 1),
        "rss_after_churn_mb": round(end, 1),
        "growth_after_warmup_mb": round(end - (warm or end), 1),
    }


async def one_session(agent: AgentProcess) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=agent.url, timeout=10) as http:
        sid = (await http.post("/v2/sessions")).json()["id"]
        sig = await Signaling.open(agent.url, sid)
        await sig.next_event(lambda e: e["type"] == "session")
        await sig.send({"type": "end"})
        await sig.closed()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if {"latency", "barge-in"} & set(args.parts):
            with running_agent(tmp, **AGENT_ENV) as agent:
                if "latency" in args.parts:
                    print("latency ...", flush=True)
                    out["latency"] = await latency(agent.url, args.turns)
                if "barge-in" in args.parts:
                    print("barge-in ...", flush=True)
                    out["barge_in"] = await barge_in(agent.url, args.barge_ins)
        if "memory" in args.parts:
            print("memory ...", flush=True)
            out["memory"] = await memory(tmp, args.idle, args.churn)
        if "capacity" in args.parts:
            out["capacity"] = []
            for n in args.sessions:
                print(f"capacity: {n} sessions ...", flush=True)
                out["capacity"].append(await capacity(tmp, n, args.seconds))
                print(f"  {out['capacity'][-1]}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    ap.add_argument("--parts", nargs="+", default=PARTS, choices=PARTS)
    ap.add_argument("--turns", type=int, default=30)
    ap.add_argument("--barge-ins", type=int, default=15)
    ap.add_argument("--idle", type=int, default=40)
    ap.add_argument("--churn", type=int, default=500)
    # On 2 vCPUs the load generator (the product's client, one Python process) needs a whole core by
    # 30 calls, and then measures itself: larger ladders need a bigger machine. bench.sizing sizes pools.
    ap.add_argument("--sessions", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    if args.quick:
        args.turns, args.barge_ins, args.idle, args.churn, args.sessions, args.seconds = 3, 2, 5, 50, [5], 5.0
    res = run_sync(args)
    print(table(rows_of(res)))
    # Partial runs merge into the previous results so docs can quote one file.
    previous = RESULTS / "agent.json"
    if previous.exists():
        old = json.loads(previous.read_text())
        old.pop("machine", None)
        res = {**old, **res}
    print(f"results: {write('agent', res)}")
    return 0


def rows_of(res: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    if "latency" in res:
        lat = res["latency"]
        rows.append(("voice-to-voice at client p50/p95/p99 (ms)", _p(lat["voice_to_voice_ms"]), "-"))
        rows.append(
            (f"overhead = v2v - {END_OF_TURN_MS} ms silence (ms)", _p(lat["overhead_ms"]), "p95 <= 150")
        )
    if "barge_in" in res:
        rows.append(
            ("barge-in: speech onset -> agent silent (ms)", _p(res["barge_in"]["barge_in_ms"]), "p95 <= 250")
        )
    if "memory" in res:
        mem = res["memory"]
        rows.append(("RSS per idle connected session (MB)", str(mem["rss_per_idle_session_mb"]), "<= 10"))
        rows.append(
            (
                f"RSS growth, {mem['churn_sessions']} sessions after warm-up (MB)",
                str(mem["growth_after_warmup_mb"]),
                "~0",
            )
        )
    for c in res.get("capacity", []):
        rows.append(
            (
                f"{c['sessions']} sessions: agent CPU % / late % / received % / sessions per core",
                f"{c['agent_cpu_percent']} / {c['late_percent']} / {c['received_percent_at_client']}"
                f" / {c['sessions_per_core_projected']}",
                "late+lost < 1%, >= 20/core",
            )
        )
    return rows


def _p(s: dict[str, float]) -> str:
    return f"{s['p50']} / {s['p95']} / {s['p99']} (n={s['n']})"


def run_sync(args: argparse.Namespace) -> dict[str, Any]:
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
