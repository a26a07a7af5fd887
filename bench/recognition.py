"""Word accuracy of the offline recognizer over a call, against the same audio from a file.

Every phrase is spoken by several voices (bench/voices.py: two of flite's and Piper's joe). "File"
feeds that PCM straight into the local STT provider, 20 ms at a time as the pipeline does, with the
agent's own decoder settings. "Call" sends the same PCM through the independent probe
(bench/probe.py: aiortc's Opus encoder) to a real agent on loopback and reads the agent's final
transcripts. "Quiet call" is the call at `--quiet-db` below the voice's level: a browser's
microphone level is anyone's guess.

Sessions are pairs of phrases (phrase i, then phrase i+1), so every phrase is the first utterance of
one session and a later utterance of another: a session starts knowing nothing of its speaker, and
the first utterance is where that shows. Files mirror the same pairs, keeping per-session state.
Word accuracy is 1 - WER over normalised words (tests.support.speech.words), as bench.turntaking counts it.

`python -m bench.recognition [--voices slt,awb,joe] [--phrases N] [--parallel 2]`; results in
bench/results/recognition.json; docs/performance.md shows them (bench.report).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import voices
from bench.agent import AGENT_ENV, turn_done
from bench.common import write
from bench.probe import Probe
from bench.report import table
from bench.turntaking import word_errors
from tests.support.procs import running_agent
from tests.support.speech import words
from voice_agent.providers.local_stt import PocketSphinxSTT

# Everyday requests in the recognizer's general English model; none asks for a long reply (a story)
# so that a call's turns stay short. Written as the recognizer spells words: lower case, no digits.
PHRASES = (
    "what time is it",
    "what is the weather like today",
    "hello there",
    "can you hear me",
    "i would like to book a table for two",
    "turn off the lights in the kitchen",
    "how far is the nearest train station",
    "set a timer for ten minutes",
    "what is the capital of france",
    "call my mother tomorrow morning",
    "i need help with my account",
    "play some music please",
    "how much does it cost",
    "thank you very much",
    "where can i find a good restaurant",
    "remind me to buy milk",
    "what day is it today",
    "can you say that again",
    "i want to change my password",
    "how do i get to the airport",
    "send a message to john",
    "is it going to rain tomorrow",
    "stop the music",
    "good morning to you",
)
VOICES = ("slt", "awb", "joe")
LEAD_MS, TAIL_MS = 300, 200  # silence around each phrase, as a microphone would send it
FRAME = 640  # 20 ms at 16 kHz


def accuracy(pairs: list[tuple[str, str]]) -> float:
    """Word accuracy in percent, 1 - WER over all the pairs' words (insertions can make it negative)."""
    counts = [word_errors(ref, heard) for ref, heard in pairs]
    total = sum(n for _, n in counts)
    return round(100 * (1 - sum(e for e, _ in counts) / total), 1) if total else float("nan")


def gain(pcm: bytes, db: float) -> bytes:
    scaled = np.frombuffer(pcm, "<i2").astype(np.float32) * 10 ** (db / 20)
    out: bytes = np.clip(scaled, -32768, 32767).astype("<i2").tobytes()
    return out


@dataclass(frozen=True)
class Utterance:
    voice: str
    text: str
    first: bool

    def pcm(self, db: float = 0.0) -> bytes:
        speech = voices.speak(self.text, self.voice)
        return voices.concat(
            voices.silence(LEAD_MS), gain(speech, db) if db else speech, voices.silence(TAIL_MS)
        )


def sessions(voice: str, phrases: tuple[str, ...]) -> list[list[Utterance]]:
    n = len(phrases)
    return [
        [Utterance(voice, phrases[i], True), Utterance(voice, phrases[(i + 1) % n], False)] for i in range(n)
    ]


async def from_file(
    stt: PocketSphinxSTT, session: list[Utterance], finals: list[float] | None = None
) -> list[str]:
    """The session's utterances fed straight to the provider, one session state across them;
    `finals` gets each final transcript's delay after the audio's end (ms)."""
    state: dict[str, Any] = {}
    heard = []
    for utt in session:
        stream = await stt.open_stream(lambda _text: None, state)
        pcm = utt.pcm()
        for i in range(0, len(pcm), FRAME):
            await stream.send(pcm[i : i + FRAME])
            await asyncio.sleep(0)  # as between frames of a call: the stream's decoder arrives
        began = time.perf_counter()
        heard.append(await stream.finish())
        if finals is not None:
            finals.append((time.perf_counter() - began) * 1000)
    return heard


async def say(probe: Probe, pcm: bytes) -> str:
    """One utterance over the call: the agent's final transcripts of it, joined (a pause inside a
    phrase can split it into two turns)."""
    mark = len(probe.events)
    uid = probe.say(pcm, voices.RATE)
    await probe.sent(uid, -(-len(pcm) // FRAME), timeout=60)
    spoken = time.monotonic()

    def final(e: dict[str, Any]) -> bool:
        return e["type"] == "transcript" and bool(e.get("final"))

    last = await probe.wait_for(final, timeout=30, after=mark)
    while True:
        if last["text"]:
            await turn_done(probe, probe.events.index(last))
        try:  # a second part of a split phrase ends its own turn within a second of the audio's end
            wait = max(spoken + 1.0 - time.monotonic(), 0.0)
            last = await probe.wait_for(final, timeout=wait, after=probe.events.index(last) + 1)
        except TimeoutError:
            break
    return " ".join(e["text"] for e in probe.events[mark:] if final(e) and e["text"])


async def over_call(url: str, session: list[Utterance], db: float) -> list[str]:
    probe = Probe(url)
    await probe.open()
    try:
        await probe.wait_for(lambda e: e["type"] == "status" and e["processing"] == "listening", timeout=20)
        return [await say(probe, utt.pcm(db)) for utt in session]
    finally:
        await probe.close()


def scores(results: list[tuple[Utterance, str]]) -> dict[str, Any]:
    pick = {
        "all": [(u.text, h) for u, h in results],
        "first": [(u.text, h) for u, h in results if u.first],
        "later": [(u.text, h) for u, h in results if not u.first],
    }
    return {k: accuracy(v) for k, v in pick.items()} | {"words": sum(len(words(u.text)) for u, _ in results)}


def summarise(runs: dict[str, list[tuple[Utterance, str]]], voice_names: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {
        path: {
            "overall": scores(results),
            "voices": {v: scores([(u, h) for u, h in results if u.voice == v]) for v in voice_names},
        }
        for path, results in runs.items()
    }
    file_all = out["file"]["overall"]["all"]
    out["gap_points"] = {
        path: {
            "all": round(file_all - out[path]["overall"]["all"], 1),
            "first": round(file_all - out[path]["overall"]["first"], 1),
        }
        for path in runs
        if path != "file"
    }
    out["misheard"] = {
        path: [
            {"voice": u.voice, "first": u.first, "said": u.text, "heard": h}
            for u, h in results
            if h != u.text
        ]
        for path, results in runs.items()
    }
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    phrases = PHRASES[: args.phrases]
    plan = [s for v in args.voices for s in sessions(v, phrases)]
    for session in plan:  # synthesize (and cache) before any timing-sensitive work starts
        for utt in session:
            utt.pcm()
    stt = PocketSphinxSTT(1)
    await stt.start()
    runs: dict[str, list[tuple[Utterance, str]]] = {"file": []}
    for session in plan:
        runs["file"] += list(zip(session, await from_file(stt, session), strict=True))
    print(f"file: {scores(runs['file'])}", flush=True)
    paths = {"call": 0.0, "quiet_call": -args.quiet_db} if args.quiet_db else {"call": 0.0}
    limit = asyncio.Semaphore(args.parallel)
    with tempfile.TemporaryDirectory() as d, running_agent(Path(d), **AGENT_ENV) as agent:
        for path, db in paths.items():

            async def one(session: list[Utterance], db: float = db) -> list[tuple[Utterance, str]]:
                async with limit:
                    return list(zip(session, await over_call(agent.url, session, db), strict=True))

            done = await asyncio.gather(*(one(s) for s in plan))
            runs[path] = [pair for pairs in done for pair in pairs]
            print(f"{path}: {scores(runs[path])}", flush=True)
    return {
        "voices": list(args.voices),
        "phrases": len(phrases),
        "quiet_db": args.quiet_db,
        **summarise(runs, tuple(args.voices)),
    }


def report(d: dict[str, Any]) -> str:
    """The docs' table: word accuracy per path and voice, first and later utterances."""
    paths = [p for p in ("file", "call", "quiet_call") if p in d]
    names = {"file": "File", "call": "Call", "quiet_call": f"Call, {d.get('quiet_db', 0):g} dB quieter"}
    head = ["Word accuracy (%): all / first / later", *(names[p] for p in paths)]

    def cell(s: dict[str, Any]) -> str:
        return f"{s['all']:g} / {s['first']:g} / {s['later']:g}"

    rows = [
        [f"{v} ({d['file']['voices'][v]['words']} words)", *(cell(d[p]["voices"][v]) for p in paths)]
        for v in d["voices"]
    ]
    rows.append(["**All voices**", *(f"**{cell(d[p]['overall'])}**" for p in paths)])
    gaps = d["gap_points"]
    rows.append(
        [
            "Points below the file: all / first",
            "—",
            *(f"{gaps[p]['all']:g} / {gaps[p]['first']:g}" for p in paths[1:]),
        ]
    )
    return table(head, rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voices", type=lambda s: tuple(s.split(",")), default=VOICES)
    ap.add_argument("--phrases", type=int, default=len(PHRASES), help=f"at most {len(PHRASES)}")
    ap.add_argument("--parallel", type=int, default=2, help="calls at once")
    ap.add_argument("--quiet-db", type=float, default=24.0, help="the quiet call's attenuation (0: none)")
    args = ap.parse_args()
    unknown = [v for v in args.voices if v not in voices.VOICES]
    if unknown or not 2 <= args.phrases <= len(PHRASES):
        ap.error(f"voices from {', '.join(voices.VOICES)}; 2..{len(PHRASES)} phrases")
    res = asyncio.run(run(args))
    print(report(res))
    print(f"results: {write('recognition', res)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
