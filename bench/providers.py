"""Cloud provider adapters: what our adapters add on top of the providers' own time, and
what a barge-in costs until the upstream stream is really closed.

Adapter overhead: each stage runs through the official SDK against the local fakes, and the time
the caller sees is compared with the time the fake itself spent (from the request's arrival to
the matching chunk written). The remainder is ours: SDK, HTTP/WebSocket client, parsing, the
retry/timeout wrappers, loopback transport. Per turn = STT finalize + LLM first token + TTS first
audio, the three waits a caller sits through. CPU per turn is the client process's CPU time for
the three stages (audio upload included), which a loaded machine does not inflate the way it
inflates wall time.

Cancellation: a consumer task streams from the provider, as the pipeline's stage worker does, and
is cancelled mid-stream (barge-in); measured to the moment the fake sees its connection closed.

The fakes run in a process of their own (tests/providers/fakes/serve.py), like a remote service.
`python -m bench.providers [--turns N]`; results in bench/results/providers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.common import summary, table, write
from tests.providers.conftest import cloud_settings
from tests.support.procs import ROOT
from tests.support.speech import synth
from voice_agent.protocol.sessions import Message
from voice_agent.providers.base import Providers
from voice_agent.providers.factory import build_providers

FRAME = 640
WARMUP = 3
TARGET_OVERHEAD_MS = 20.0
TARGET_CANCEL_MS = 50.0
REPLY = "Sure. Here is a longer answer, so that the stream is still running when the caller interrupts it."
SENTENCE = "Here is a sentence of a reply, long enough to stream for a while."
HISTORY = [Message(role="user", content="what time is it")]


@dataclass
class Fakes:
    urls: dict[str, str]
    proc: subprocess.Popen[str]

    def records(self) -> dict[str, Any]:
        return dict(httpx.get(self.urls["control"] + "/records", timeout=30).json())

    def configure(self, chunk_delay_s: float) -> None:
        httpx.post(self.urls["control"] + "/config", json={"chunk_delay_s": chunk_delay_s}, timeout=10)


@contextlib.contextmanager
def fakes_process() -> Iterator[Fakes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.providers.fakes.serve", REPLY],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield Fakes(json.loads(proc.stdout.readline()), proc)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class Call:
    """Client-side times of one request (time.monotonic, shared with the fake's process)."""

    started: float = 0.0
    first: float = 0.0
    ended: float = 0.0
    cpu: float = 0.0
    cpu_first: float = 0.0  # client CPU until the first result (STT: of finish())


@dataclass
class Runs:
    stt: list[Call] = field(default_factory=list)
    llm: list[Call] = field(default_factory=list)
    tts: list[Call] = field(default_factory=list)
    cancels: dict[str, list[float]] = field(default_factory=lambda: {"llm": [], "tts": [], "stt": []})


def ms(seconds: float) -> float:
    return seconds * 1000


async def stt_call(providers: Providers, state: dict[str, Any], pcm: bytes) -> Call:
    cpu = time.process_time()
    stream = await providers.stt.open_stream(lambda _: None, state)
    for i in range(0, len(pcm), FRAME):
        await stream.send(pcm[i : i + FRAME])
    cpu = time.process_time() - cpu
    await asyncio.sleep(0.05)  # the audio is on the wire before the user stops, as in a live call
    call = Call(started=time.monotonic())
    cpu_finish = time.process_time()
    await stream.finish()
    call.ended = time.monotonic()
    call.cpu_first = time.process_time() - cpu_finish
    await stream.aclose()
    call.cpu = cpu + time.process_time() - cpu_finish
    return call


async def stream_call(gen: AsyncGenerator[Any, None]) -> Call:
    cpu = time.process_time()
    call = Call(started=time.monotonic())
    async with contextlib.aclosing(gen):
        async for _ in gen:
            if not call.first:
                call.first = time.monotonic()
                call.cpu_first = time.process_time() - cpu
    call.ended = time.monotonic()
    call.cpu = time.process_time() - cpu
    return call


async def cancel_at(start: Callable[[], AsyncGenerator[Any, None]]) -> float:
    """Barge-in while streaming: cancel the consuming task; returns when the cancel was issued."""
    got_first = asyncio.Event()

    async def consume() -> None:
        async with contextlib.aclosing(start()) as gen:
            async for _ in gen:
                got_first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_first.wait(), 10)
    await asyncio.sleep(0.02)
    at = time.monotonic()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return at


async def stt_cancel_at(providers: Providers, pcm: bytes) -> float:
    state: dict[str, Any] = {}
    stream = await providers.stt.open_stream(lambda _: None, state)
    for i in range(0, len(pcm) // 2, FRAME):
        await stream.send(pcm[i : i + FRAME])
    await asyncio.sleep(0.1)  # connected and streaming
    at = time.monotonic()
    await stream.aclose()
    return at


async def measure(providers: Providers, fakes: Fakes, turns: int, cancels: int) -> Runs:
    runs = Runs()
    pcm, _ = synth("what time is it")
    state: dict[str, Any] = {}
    for _ in range(turns + WARMUP):
        runs.stt.append(await stt_call(providers, state, pcm))
        runs.llm.append(await stream_call(providers.llm.stream(HISTORY)))
        runs.tts.append(await stream_call(providers.tts.synthesize(SENTENCE)))
    await providers.stt.release(state)
    fakes.configure(chunk_delay_s=0.02)
    for _ in range(cancels):
        runs.cancels["llm"].append(await cancel_at(lambda: providers.llm.stream(HISTORY)))
        runs.cancels["tts"].append(await cancel_at(lambda: providers.tts.synthesize(SENTENCE)))
        runs.cancels["stt"].append(await stt_cancel_at(providers, pcm))
    await asyncio.sleep(0.5)  # let the fakes record the last closes
    for provider in (providers.stt, providers.llm, providers.tts):
        await provider.close()
    return runs


def analyse(runs: Runs, seen: dict[str, Any], turns: int) -> dict[str, Any]:
    stt, first_llm, whole_llm, first_tts, whole_tts, per_turn, cpu, cpu_first = [], [], [], [], [], [], [], []
    for i in range(WARMUP, turns + WARMUP):
        utt, chat, tts = seen["utterances"][i], seen["chat"][i], seen["elevenlabs"][i]
        s = ms((runs.stt[i].ended - runs.stt[i].started) - (utt["result_ready_at"] - utt["finalize_at"]))
        lc, tc = runs.llm[i], runs.tts[i]
        lf = ms((lc.first - lc.started) - (chat["sent"][1] - chat["started"]))  # [0] is the role chunk
        tf = ms((tc.first - tc.started) - (tts["sent"][0] - tts["started"]))
        stt.append(s)
        first_llm.append(lf)
        first_tts.append(tf)
        whole_llm.append(ms((lc.ended - lc.started) - (chat["ended"] - chat["started"])))
        whole_tts.append(ms((tc.ended - tc.started) - (tts["ended"] - tts["started"])))
        per_turn.append(s + lf + tf)
        cpu.append(ms(runs.stt[i].cpu + lc.cpu + tc.cpu))
        cpu_first.append(ms(runs.stt[i].cpu_first + lc.cpu_first + tc.cpu_first))
    n = turns + WARMUP
    closes: dict[str, list[float]] = {}
    for stage, key, offset in (("llm", "chat", n), ("tts", "elevenlabs", n), ("stt", "deepgram", 1)):
        records = seen[key][offset:]
        assert all(r["outcome"] == "client_closed" for r in records), [r["outcome"] for r in records]
        closes[stage] = [ms(r["ended"] - at) for r, at in zip(records, runs.cancels[stage], strict=True)]
    return {
        "overhead_ms": {
            "per_turn": summary(per_turn),
            "stt_finalize": summary(stt),
            "llm_first_token": summary(first_llm),
            "tts_first_audio": summary(first_tts),
            "llm_whole_reply": summary(whole_llm),
            "tts_whole_sentence": summary(whole_tts),
        },
        "client_cpu_per_turn_ms": summary(cpu),
        "client_cpu_on_the_critical_path_ms": summary(cpu_first),
        "cancel_to_upstream_closed_ms": {stage: summary(v) for stage, v in closes.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=100)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with fakes_process() as fakes:
        urls = fakes.urls
        providers = build_providers(cloud_settings(urls["deepgram"], urls["chat"], urls["elevenlabs"]))
        runs = asyncio.run(measure(providers, fakes, args.turns, max(args.turns // 2, 10)))
        seen = fakes.records()
    result = {
        "turns": args.turns,
        "load_average_1m": {"before": load_before, "after": os.getloadavg()[0]},
        **analyse(runs, seen, args.turns),
        "targets": {"overhead_per_turn_p95_ms": TARGET_OVERHEAD_MS, "cancel_p95_ms": TARGET_CANCEL_MS},
    }
    over, cancel = result["overhead_ms"], result["cancel_to_upstream_closed_ms"]

    def row(name: str, s: dict[str, float], target: str = "") -> tuple[str, str, str]:
        return name, f"p50 {s['p50']} / p95 {s['p95']} / p99 {s['p99']} ms", target

    print(
        table(
            [
                row(
                    "adapter overhead per turn (stt + llm first + tts first)",
                    over["per_turn"],
                    "p95 <= 20 ms",
                ),
                row("  stt finalize", over["stt_finalize"]),
                row("  llm first token", over["llm_first_token"]),
                row("  tts first audio", over["tts_first_audio"]),
                row("  llm whole reply", over["llm_whole_reply"]),
                row("  tts whole sentence", over["tts_whole_sentence"]),
                row(
                    "client CPU on the critical path (finish, to 1st token, to 1st audio)",
                    result["client_cpu_on_the_critical_path_ms"],
                ),
                row("client CPU per turn (3 stages, audio upload incl.)", result["client_cpu_per_turn_ms"]),
                row("barge-in -> llm stream closed", cancel["llm"], "p95 <= 50 ms"),
                row("barge-in -> tts stream closed", cancel["tts"], "p95 <= 50 ms"),
                row("barge-in -> stt socket closed", cancel["stt"], "p95 <= 50 ms"),
            ]
        )
    )
    print(f"load average (1 min) before/after: {load_before:.1f} / {os.getloadavg()[0]:.1f}")
    print(f"wrote {write('providers', result)}")
    met = over["per_turn"]["p95"] <= TARGET_OVERHEAD_MS and all(
        c["p95"] <= TARGET_CANCEL_MS for c in cancel.values()
    )
    print("targets met" if met else "TARGETS MISSED (see load average: wall-time figures are load-sensitive)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
