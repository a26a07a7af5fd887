"""The offline recognizer's search settings: word accuracy against CPU and the final's delay.

pocketsphinx trades accuracy for CPU with its beams (how far below the best path a path may score
and still be searched) and its second passes (fwdflat, bestpath: a search over the whole utterance
once it has ended). Each configuration here decodes the same sessions, the way the agent does:
bench.recognition's file path (every phrase a session's first utterance once and a later one once,
20 ms at a time through the local STT provider, its level and cepstral mean handling included), by
five voices (flite's four and Piper's joe), so a setting tuned to one voice shows.

Per configuration: word accuracy (1 - WER: all / first / later utterances, and per voice), the
decoder's CPU per second of audio (this process's CPU time: run it on a quiet machine), how long
decoding held the event loop (how late a 5 ms timer fired: every other call's outbound audio waits
as long), and the time from the end of the audio to the final transcript (`finish`).

`python -m bench.decoder [--voices slt,awb] [--phrases N] [--configs agent,narrow]`; results in
bench/results/decoder.json; docs/providers.md shows them (bench.report).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench import voices
from bench.common import summary, write
from bench.recognition import PHRASES, Utterance, from_file, scores, sessions
from bench.report import table
from voice_agent.providers import local_stt
from voice_agent.providers.local_stt import PocketSphinxSTT

# Changes to the agent's DECODER_CONFIG; pocketsphinx's own defaults are written out, not implied.
DEFAULTS = {"beam": 1e-48, "wbeam": 7e-29, "maxhmmpf": 30000}
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "agent": ("The agent's settings", {}),
    "narrow": ("Narrow beam (1e-40), as before", {"beam": 1e-40}),
    "defaults": ("pocketsphinx's beams", DEFAULTS),
    "bestpath": ("pocketsphinx's beams and bestpath", {**DEFAULTS, "bestpath": True}),
}
VOICES = voices.VOICES
TICK_S = 0.005


async def lateness(late: list[float]) -> None:
    """How late a 5 ms timer fires: how long the decoding held the event loop (every other call's
    outbound audio waits that long)."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + TICK_S
        await asyncio.sleep(TICK_S)
        late.append(max(loop.time() - due, 0.0) * 1000)


async def measure(name: str, plan: list[list[Utterance]], voice_names: tuple[str, ...]) -> dict[str, Any]:
    label, changes = CONFIGS[name]
    config = {**local_stt.DECODER_CONFIG, **changes}
    saved = dict(local_stt.DECODER_CONFIG)
    local_stt.DECODER_CONFIG.update(changes)  # the provider makes its decoders from it at start
    try:
        stt = PocketSphinxSTT(1)
        await stt.start()
        late: list[float] = []
        finals: list[float] = []
        results: list[tuple[Utterance, str]] = []
        audio_s = sum(len(u.pcm()) for s in plan for u in s) / (2 * voices.RATE)
        ticker = asyncio.create_task(lateness(late))
        cpu = time.process_time()
        for session in plan:
            results += list(zip(session, await from_file(stt, session, finals), strict=True))
        cpu = time.process_time() - cpu
        ticker.cancel()
    finally:
        local_stt.DECODER_CONFIG.clear()
        local_stt.DECODER_CONFIG.update(saved)
    out = {
        "label": label,
        "settings": {k: config.get(k) for k in ("beam", "wbeam", "maxhmmpf", "fwdflat", "bestpath")},
        "accuracy": scores(results),
        "voices": {v: scores([(u, h) for u, h in results if u.voice == v])["all"] for v in voice_names},
        "cpu_per_audio_s": round(cpu / audio_s, 3),
        "loop_held_ms": {**summary(late), "max": round(max(late, default=0.0), 1)},
        "final_ms": summary(finals),
    }
    print(f"{name}: {out['accuracy']}, CPU {out['cpu_per_audio_s']} s per s of audio", flush=True)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    phrases = PHRASES[: args.phrases]
    plan = [s for v in args.voices for s in sessions(v, phrases)]
    for session in plan:  # synthesize (and cache) before anything is timed
        for utt in session:
            utt.pcm()
    return {
        "voices": list(args.voices),
        "phrases": len(phrases),
        "utterances": sum(len(s) for s in plan),
        "configs": {name: await measure(name, plan, args.voices) for name in args.configs},
    }


def report(d: dict[str, Any]) -> str:
    voice_names = d["voices"]
    head = [
        f"Setting ({d['utterances']} utterances)",
        "Word accuracy %: all / first / later",
        *voice_names,
        "CPU per s of audio",
        "Event loop held: p99 / max",
        "Final p50 / p95 / p99",
    ]

    def p3(s: dict[str, float]) -> str:
        return f"{s['p50']:g} / {s['p95']:g} / {s['p99']:g} ms"

    rows = []
    for c in d["configs"].values():
        a = c["accuracy"]
        rows.append(
            [
                c["label"],
                f"{a['all']:g} / {a['first']:g} / {a['later']:g}",
                *(f"{c['voices'][v]:g}" for v in voice_names),
                f"{1000 * c['cpu_per_audio_s']:.0f} ms",
                f"{c['loop_held_ms']['p99']:g} / {c['loop_held_ms']['max']:g} ms",
                p3(c["final_ms"]),
            ]
        )
    return table(head, rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voices", type=lambda s: tuple(s.split(",")), default=VOICES)
    ap.add_argument("--phrases", type=int, default=len(PHRASES), help=f"at most {len(PHRASES)}")
    ap.add_argument("--configs", type=lambda s: s.split(","), default=list(CONFIGS))
    args = ap.parse_args()
    unknown = [v for v in args.voices if v not in voices.VOICES] + [
        c for c in args.configs if c not in CONFIGS
    ]
    if unknown or not 2 <= args.phrases <= len(PHRASES):
        ap.error(
            f"voices from {', '.join(voices.VOICES)}; configs from {', '.join(CONFIGS)};"
            f" 2..{len(PHRASES)} phrases"
        )
    res = asyncio.run(run(args))
    print(report(res))
    print(f"results: {write('decoder', res)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
