"""Relay-only WebRTC through coturn on loopback: call setup time and voice-to-voice over TURN.

`python -m bench.turn [--calls N]`; results in bench/results/turn.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.agent import END_OF_TURN_MS, first_voiced_after, speech_bounds, turn_done
from bench.common import summary, table, write
from tests.deploy.coturn import running_turnserver
from tests.support.procs import running_agent
from tests.support.speech import synth
from voice_agent.testing.client import VoiceClient


async def setup_ms(url: str, relay: bool) -> tuple[float, VoiceClient]:
    client = VoiceClient(url, relay_only=relay)
    t0 = time.monotonic()
    await client.create_session()
    await client.connect()
    await client.wait_media(timeout=30)
    return (time.monotonic() - t0) * 1000, client


async def measure(url: str, calls: int, turns: int, relay: bool) -> dict[str, Any]:
    setups: list[float] = []
    for _ in range(calls):
        ms, client = await setup_ms(url, relay)
        setups.append(ms)
        await client.close()
    ms, client = await setup_ms(url, relay)
    pcm, rate = synth("what time is it")
    tail = len(pcm) / (2 * rate) - speech_bounds(pcm, rate)[1]
    v2v: list[float] = []
    try:
        for _ in range(turns):
            mark = len(client.events)
            uid = client.say(pcm, rate)
            end = await client.speech_ended(uid) - tail
            v2v.append((await first_voiced_after(client, end) - end) * 1000)
            await turn_done(client, mark)
    finally:
        await client.close()
    return {"setup_ms": summary(setups), "voice_to_voice_ms": summary(v2v)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d, running_turnserver(Path(d)) as turn:
        env = {
            "voice_ice_servers": json.dumps(turn.ice_servers()),
            "voice_log_level": "WARNING",
            "voice_sessions_per_ip_per_min": "0",
        }
        with running_agent(Path(d), voice_ice_transport_policy="relay", **env) as agent:
            out["relay"] = await measure(agent.url, args.calls, args.turns, relay=True)
        with running_agent(Path(d), voice_log_level="WARNING", voice_sessions_per_ip_per_min="0") as agent:
            out["direct"] = await measure(agent.url, args.calls, args.turns, relay=False)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--turns", type=int, default=10)
    args = ap.parse_args()
    res = asyncio.run(run(args))
    rows = []
    for mode in ("relay", "direct"):
        s, v = res[mode]["setup_ms"], res[mode]["voice_to_voice_ms"]
        rows.append(
            (f"{mode}: session create -> media connected (ms)", f"{s['p50']} / {s['p95']} / {s['p99']}", "-")
        )
        rows.append(
            (
                f"{mode}: voice-to-voice (ms, {END_OF_TURN_MS} ms silence incl.)",
                f"{v['p50']} / {v['p95']} / {v['p99']}",
                "-",
            )
        )
    print(table(rows))
    print(f"results: {write('turn', res)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
