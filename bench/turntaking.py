"""Turn taking, measured from outside: when the agent takes the turn, and what makes it give it up.

Two agents run side by side, each with the offline providers: "fixed" (VOICE_TURN_DETECTOR=fixed,
VOICE_INTERRUPTION=immediate: a fixed end-of-turn silence, and any speech during a reply cuts it)
and "default" (no overrides: the agent's defaults, the adaptive detector and classified
interruptions where the agent has them). Trials alternate between the two, so a slow moment of the
machine falls on both. The speaker is the independent probe (bench/probe.py), saying synthesized
speech in several voices (bench/_turntaking_corpus.py); the agent's side is read from its
signaling events and its /metrics. Definitions (also in docs/performance.md, "Turn taking"):

- End-of-turn delay: from the probe sending the last frame webrtcvad calls voiced (the end of the
  user's speech) to the probe receiving the agent's final transcript of it, the first sign over
  signaling that the agent took the turn (its `status: processing` follows from the same frame).
  It holds the silence the agent waited, the final decode and loopback transport. A question
  without a final transcript within TURN_TIMEOUT_S, or with nothing recognized, is a failed turn:
  counted, never a figure.
- False cut-off: in a phrase with a pause in the middle, a final transcript arrives before the end
  of the whole phrase: the agent took the turn at the pause.
- False interruption: a backchannel or a noise while the agent is replying, and the reply does not
  finish (the turn ends without its `metrics` event, which only a completed turn has).
- Real barge-in: "wait", "stop" or a question over the reply; the speech onset to the agent's last
  loud frame at the probe's ear. A miss (the reply finished or resumed, or the agent talked until
  the new reply) is counted, never a figure.
- Word accuracy: 1 - word error rate of the final transcripts against the questions' text, pooled,
  the first question of each call apart from the later ones.
- CPU: the agent process's CPU over call time with one call at a time, and at LOAD_CALLS calls
  each asking every 10-20 s, with the turn decisions' own time (the sum of
  voice_turn_decision_seconds over the window) as a share of one core.

`python -m bench.turntaking [--quick]`; results in bench/results/turntaking.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import _turntaking_corpus as corpus
from bench.agent import AGENT_ENV, frames_of
from bench.common import cpu_seconds, summary, write
from bench.probe import Probe
from tests.support.procs import AgentProcess, running_agent
from tests.support.prom import scrape
from tests.support.speech import words
from voice_agent.settings import Settings

MODES: dict[str, dict[str, str]] = {
    "fixed": {"voice_turn_detector": "fixed", "voice_interruption": "immediate"},
    "default": {},
}
RATE = corpus.RATE
TURN_TIMEOUT_S = 5.0  # end of speech to the final transcript; the adaptive ceiling is 1.6 s
REPLY_START_S = 3.0  # a final transcript with words to the turn starting (`processing`)
REPLY_END_S = 20.0  # the sound over a reply to that turn's end (a held reply resumes and finishes)
LISTENING_S = 10.0
HEARD_BEFORE_S = 0.6  # reply heard before the probe talks over it: mid-way through its first sentence
GRACE_S = 1.0  # after an interruption's last voiced frame, the agent must be silent by then...
NEW_REPLY_S = 3.0  # ...or by the reply to it, whichever comes first
QUESTIONS_PER_CALL = 4
REPLY_REQUEST = "help"  # typed: the offline LLM's help reply is about five seconds of speech
LOAD_CALLS = 30
LOAD_EVERY_S = (10.0, 20.0)
LOAD_WARM_S = 10.0
LOAD_OPEN_AT_ONCE = 5
# Speech decoders per agent: the default two would leave most of LOAD_CALLS calls' questions
# waiting for one, and few of them would reach the turn detector while they are measured.
STT_DECODERS = 10
AGENT_METRICS = (
    "voice_turn_end_silence_seconds_sum",
    "voice_turn_end_silence_seconds_count",
    "voice_turn_decisions_total",
    "voice_turn_decision_seconds_sum",
    "voice_turn_decision_seconds_count",
    "voice_interruptions_total",
    "voice_turns_total",
    "voice_barge_ins_total",
    "voice_output_stalled_seconds_total",
)


class TrialFailed(Exception):
    """The trial could not be measured (no answer in time); counted with its reason."""


@dataclass
class Side:
    mode: str
    agent: AgentProcess
    call_s: float = 0.0  # seconds with a call open, for CPU per call
    errors: Counter[str] = field(default_factory=Counter)


def supported() -> dict[str, bool]:
    """Which of the overrides this agent has: an unknown VOICE_ variable is ignored, not refused,
    so without them both sides run today's fixed behaviour and the results say so."""
    return {name: name in Settings.model_fields for name in ("turn_detector", "interruption")}


# --- the probe's view of the agent ---------------------------------------------------------------
def is_final(e: dict[str, Any]) -> bool:
    return e["type"] == "transcript" and bool(e.get("final"))


def is_status(e: dict[str, Any], status: str) -> bool:
    return e["type"] == "status" and e.get("processing") == status


async def next_event(
    probe: Probe, pred: Callable[[dict[str, Any]], bool], timeout: float, after: int
) -> tuple[int, dict[str, Any]]:
    """The first event from index `after` on that matches, and its index."""
    try:
        event = await probe.wait_for(pred, timeout=timeout, after=after)
    except TimeoutError as exc:
        raise TrialFailed(str(exc)) from None
    return probe.events.index(event, after), event


async def send(probe: Probe, message: dict[str, Any]) -> None:
    await probe.ws.send(json.dumps(message))


async def ready(probe: Probe) -> None:
    """Before a trial: the agent listening, nothing of an earlier trial still in flight."""
    statuses = [e for e in probe.events if e["type"] == "status"]
    if statuses and is_status(statuses[-1], "listening"):
        return
    mark = len(probe.events)
    await send(probe, {"type": "interrupt"})
    await next_event(probe, lambda e: is_status(e, "listening"), LISTENING_S, mark)


async def stop_reply(probe: Probe, final_at: int) -> None:
    """Stop the reply to the final transcript at index `final_at`: these trials measure the taking of
    turns, not the answers, and a reply would hold up the next trial."""
    if not probe.events[final_at].get("text"):
        return  # nothing recognized: no turn
    with contextlib.suppress(TrialFailed):
        started, _ = await next_event(probe, lambda e: is_status(e, "processing"), REPLY_START_S, final_at)
        await send(probe, {"type": "interrupt"})
        await next_event(probe, lambda e: is_status(e, "listening"), LISTENING_S, started)


async def settle(probe: Probe, mark: int) -> None:
    """Stop the turn a trial's sound started, if it became one."""
    with contextlib.suppress(TrialFailed):
        final_at, _ = await next_event(probe, is_final, REPLY_START_S, mark)
        await stop_reply(probe, final_at)


async def say(probe: Probe, utt: corpus.Utterance) -> list[float]:
    """Send times of the utterance's frames, once all went out."""
    uid = probe.say(utt.pcm, RATE)
    try:
        return await probe.sent(uid, frames_of(utt.pcm, RATE))
    except TimeoutError as exc:
        raise TrialFailed(str(exc)) from None


@contextlib.asynccontextmanager
async def call(side: Side) -> AsyncIterator[Probe]:
    probe = Probe(side.agent.url)
    opened = time.monotonic()
    try:
        await probe.open()
        await next_event(probe, lambda e: is_status(e, "listening"), LISTENING_S, 0)
        yield probe
    finally:
        with contextlib.suppress(Exception):
            await send(probe, {"type": "end"})
        await probe.close()
        side.call_s += time.monotonic() - opened
        side.errors.update(e.get("code", "?") for e in probe.events if e["type"] == "error")


# --- trials --------------------------------------------------------------------------------------
async def ask(probe: Probe, utt: corpus.Utterance, first: bool) -> dict[str, Any]:
    """A complete question: when the agent takes the turn, and what it heard."""
    await ready(probe)
    mark = len(probe.events)
    out: dict[str, Any] = {"text": utt.label, "voice": utt.voice, "first": first, "heard": ""}
    try:
        sent = await say(probe, utt)
        end_at = sent[utt.last_voiced_frame]
        final_at, taken = await next_event(
            probe, lambda e: is_final(e) and e["_at"] >= end_at, TURN_TIMEOUT_S, mark
        )
    except TrialFailed:
        out["failed"] = "no final transcript"
        out["trace"] = trace(probe, mark)
        return out
    finals = [e for e in probe.events[mark : final_at + 1] if is_final(e)]
    out["heard"] = " ".join(e["text"] for e in finals if e["text"])
    out["split"] = len(finals) > 1  # a final before the end: the question was cut inside
    if not taken["text"]:
        out["failed"] = "nothing recognized"
    else:
        out["delay_ms"] = (taken["_at"] - end_at) * 1000
    await stop_reply(probe, final_at)
    return out


async def hesitate(probe: Probe, utt: corpus.Unfinished) -> dict[str, Any]:
    """A phrase with a pause in the middle: did the agent take the turn before its end?"""
    await ready(probe)
    mark = len(probe.events)
    out: dict[str, Any] = {"text": utt.label, "voice": utt.voice, "pause_ms": utt.pause_ms}
    try:
        sent = await say(probe, utt)
    except TrialFailed:
        out["failed"] = "not sent"
        return out
    end_at = sent[utt.last_voiced_frame]
    early = [e for e in probe.events[mark:] if is_final(e) and e["_at"] < end_at]
    out["cut"] = bool(early)
    try:
        final_at, _ = await next_event(
            probe, lambda e: is_final(e) and e["_at"] >= end_at, TURN_TIMEOUT_S, mark
        )
    except TrialFailed:
        if not early:
            out["failed"] = "no final transcript"
            out["trace"] = trace(probe, mark)
        return out
    await stop_reply(probe, final_at)
    # Two turns of one phrase are a cut too, however late their transcripts came (a busy agent).
    out["cut"] = out["cut"] or sum(1 for e in probe.events[mark:] if is_final(e)) > 1
    return out


async def talk_over(probe: Probe, sound: corpus.Utterance, real: bool) -> dict[str, Any]:
    """A sound over the agent's reply: does the reply finish (it should, for a backchannel or a
    noise), and, for a real interruption, how soon is the agent silent?"""
    await ready(probe)
    mark = len(probe.events)
    out: dict[str, Any] = {"sound": sound.label, "voice": sound.voice, "real": real}
    try:
        await send(probe, {"type": "text", "text": REPLY_REQUEST})
        _, speaking = await next_event(probe, lambda e: is_status(e, "speaking"), REPLY_START_S * 5, mark)
        await heard_for(probe, speaking["_at"], HEARD_BEFORE_S)
        over = len(probe.events)
        sent = await say(probe, sound)
        onset, end = sent[sound.first_voiced_frame], sent[sound.last_voiced_frame]
        ended_at, ended = await next_event(
            probe, lambda e: e["type"] == "metrics" or is_status(e, "listening"), REPLY_END_S, over
        )
    except TrialFailed as exc:
        out["failed"] = str(exc)
        out["trace"] = trace(probe, mark)
        return out
    out["completed"] = ended["type"] == "metrics"
    if out["completed"]:  # how long the reply stopped for the sound, at most (natural pauses too)
        out["silent_ms"] = longest_gap(probe, onset, min(end + 2.0, ended["_at"])) * 1000
    if real:
        out.update(await stopped(probe, onset, end, ended_at, out["completed"]))
    if not out["completed"]:
        await settle(probe, over)  # the sound may have become a turn of its own
    texts = [e["text"] for e in probe.events[over:] if e["type"] == "transcript" and e["text"]]
    out["heard"] = texts[-1] if texts else ""  # the recognizer's last word on the sound
    return out


async def heard_for(probe: Probe, since: float, seconds: float) -> None:
    deadline = time.monotonic() + REPLY_END_S
    while len(probe.ear.loud_between(since, math.inf)) < seconds * 50:
        if time.monotonic() > deadline:
            raise TrialFailed("the reply was not heard")
        await asyncio.sleep(0.02)


def longest_gap(probe: Probe, start: float, end: float) -> float:
    """The longest stretch without a loud frame at the ear between two moments."""
    marks = [start, *probe.ear.loud_between(start, end), end]
    return max(b - a for a, b in itertools.pairwise(marks))


async def stopped(probe: Probe, onset: float, end: float, ended_at: int, completed: bool) -> dict[str, Any]:
    """Speech onset to the agent's last loud frame, within the interruption and GRACE_S after it,
    or until the reply to the interruption starts (whichever is first)."""
    until = end + GRACE_S
    with contextlib.suppress(TrialFailed):
        _, reply = await next_event(probe, lambda e: is_status(e, "speaking"), NEW_REPLY_S, ended_at)
        until = min(until, reply["_at"])
    # The frames sent before `until` are still on their way to the ear.
    await asyncio.sleep(max(0.0, until + 0.1 - time.monotonic()))
    loud = probe.ear.loud_between(onset, until)
    if completed:
        return {"missed": "the reply finished"}
    if not loud:
        return {"silent_at_onset": True}  # between two words when the user spoke: no figure
    if max(loud) >= until - 0.04:
        return {"missed": "the agent talked on"}
    return {"barge_in_ms": (max(loud) - onset) * 1000}


# --- parts ---------------------------------------------------------------------------------------
async def alternate(
    sides: Sequence[Side],
    trials: Sequence[Any],
    run_one: Callable[[Side, Any], Awaitable[list[dict[str, Any]]]],
) -> dict[str, list[dict[str, Any]]]:
    """Each trial on both sides, the side that goes first taking turns."""
    out: dict[str, list[dict[str, Any]]] = {s.mode: [] for s in sides}
    for i, trial in enumerate(trials):
        for side in sides if i % 2 == 0 else list(reversed(sides)):
            out[side.mode].extend(await run_one(side, trial))
    return out


async def questions(sides: Sequence[Side], quick: bool) -> dict[str, list[dict[str, Any]]]:
    texts = corpus.QUESTIONS[:4] if quick else corpus.QUESTIONS
    # Calls of QUESTIONS_PER_CALL questions in one voice; every question in every voice, and each
    # voice starts its calls with other questions than the others do.
    n = len(texts)
    calls = [
        [corpus.question(texts[(start + v + k) % n], voice) for k in range(QUESTIONS_PER_CALL)]
        for start in range(0, n, QUESTIONS_PER_CALL)
        for v, voice in enumerate(corpus.VOICES)
    ]

    async def one_call(side: Side, utts: list[corpus.Utterance]) -> list[dict[str, Any]]:
        results = []
        async with call(side) as probe:
            for k, utt in enumerate(utts):
                results.append(await ask(probe, utt, first=k == 0))
                print(f"  {side.mode}: {_line(results[-1], 'delay_ms')}", flush=True)
        return results

    return await alternate(sides, calls, one_call)


async def hesitations(sides: Sequence[Side], quick: bool) -> dict[str, list[dict[str, Any]]]:
    per_pause = 2 if quick else 5
    n, v = len(corpus.UNFINISHED), len(corpus.VOICES)
    trials = [
        corpus.unfinished(*corpus.UNFINISHED[(j + 2 * li) % n], corpus.VOICES[(j + li) % v], pause)
        for j in range(per_pause)
        for li, pause in enumerate(corpus.PAUSES_MS)
    ]
    return await _in_one_call(sides, trials, lambda p, u: hesitate(p, u), "cut")


async def interruptions(sides: Sequence[Side], quick: bool) -> dict[str, list[dict[str, Any]]]:
    false = [corpus.question(w, v) for w, v in corpus.BACKCHANNELS] + [corpus.noise(k) for k in corpus.NOISES]
    real = [corpus.question(w, v) for w, v in corpus.REAL_INTERRUPTIONS]
    if quick:
        false, real = false[::6], real[::4]
    trials = [(s, False) for s in false] + [(s, True) for s in real]
    random.Random(7).shuffle(trials)
    return await _in_one_call(sides, trials, lambda p, t: talk_over(p, *t), "completed")


async def _in_one_call(
    sides: Sequence[Side],
    trials: Sequence[Any],
    run: Callable[[Probe, Any], Awaitable[dict[str, Any]]],
    show: str,
) -> dict[str, list[dict[str, Any]]]:
    """Every trial in one call per side; a call whose trial failed is replaced by a fresh one."""
    stacks = {s.mode: contextlib.AsyncExitStack() for s in sides}
    probes: dict[str, Probe] = {}

    async def one(side: Side, trial: Any) -> list[dict[str, Any]]:
        if side.mode not in probes:
            probes[side.mode] = await stacks[side.mode].enter_async_context(call(side))
        result = await run(probes[side.mode], trial)
        print(f"  {side.mode}: {_line(result, show)}", flush=True)
        if "failed" in result:
            await stacks[side.mode].aclose()
            del probes[side.mode]
        return [result]

    try:
        return await alternate(sides, trials, one)
    finally:
        for stack in stacks.values():
            await stack.aclose()


def trace(probe: Probe, mark: int) -> list[str]:
    """The agent's events since `mark`, short: what a failed trial saw instead."""
    return [
        e["type"] + (f":{e['processing']}" if "processing" in e else "") + (":final" if is_final(e) else "")
        for e in probe.events[mark:]
        if e["type"] != "ai_response"
    ]


def _line(result: dict[str, Any], key: str) -> str:
    what = result.get("text") or result.get("sound")
    if "failed" in result:
        return f"{what}: FAILED ({result['failed']})"
    shown = {k: result[k] for k in (key, "barge_in_ms", "missed", "heard") if k in result}
    return f"{what} [{result.get('voice')}]: " + ", ".join(
        f"{k}={v:.0f}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()
    )


async def load(side: Side, calls: int, seconds: float, seed: int) -> dict[str, Any]:
    """`calls` calls at once, each saying a question or a hesitant phrase every 10-20 s (seeded,
    staggered); the replies play out. Measured over `seconds` after LOAD_WARM_S."""
    rng = random.Random(seed)
    pool = [corpus.question(t, v) for t in corpus.QUESTIONS for v in corpus.VOICES]
    pool += [
        corpus.unfinished(p, r, v, rng.choice(corpus.PAUSES_MS))
        for p, r in corpus.UNFINISHED
        for v in corpus.VOICES
    ]
    said = Counter[str]()
    async with contextlib.AsyncExitStack() as stack:
        probes: list[Probe] = []
        while len(probes) < calls:  # a few at a time: a burst of offers would only measure the setup
            batch = [call(side) for _ in range(min(LOAD_OPEN_AT_ONCE, calls - len(probes)))]
            probes += await asyncio.gather(*(stack.enter_async_context(c) for c in batch))
        stop_at = time.monotonic() + LOAD_WARM_S + seconds

        async def talker(probe: Probe, delay: float) -> None:
            await asyncio.sleep(delay)  # a user's schedule, not a synchronisation
            while time.monotonic() < stop_at:
                probe.say(rng.choice(pool).pcm, RATE)
                said["turns"] += 1
                await asyncio.sleep(rng.uniform(*LOAD_EVERY_S))

        tasks = [asyncio.create_task(talker(p, rng.uniform(0, LOAD_EVERY_S[0]))) for p in probes]
        try:
            await asyncio.sleep(LOAD_WARM_S)
            said0, before, cpu0, own0, t0 = said["turns"], *(await _sample(side))
            await asyncio.sleep(seconds)
            said1, after, cpu1, own1, t1 = said["turns"], *(await _sample(side))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    window = t1 - t0
    decision_s = _delta(before, after, "voice_turn_decision_seconds_sum")
    decisions = _delta(before, after, "voice_turn_decision_seconds_count")
    stalled = _delta(before, after, "voice_output_stalled_seconds_total") or 0.0
    return {
        "calls": calls,
        "seconds": round(window, 1),
        "turns_per_s": round((said1 - said0) / window, 2),
        # Whether the agent kept up: turns it ended, and its outbound audio behind its clock.
        "turns_ended_per_s": _rate(_delta(before, after, "voice_turns_total"), window),
        "stalled_percent": round(100 * stalled / (calls * window), 1),
        "agent_cpu_percent": round(100 * (cpu1 - cpu0) / window, 1),
        "agent_cpu_per_call_percent": round(100 * (cpu1 - cpu0) / window / calls, 2),
        "loadgen_cpu_percent": round(100 * (own1 - own0) / window, 1),
        "turn_decision_cpu_percent": None if decision_s is None else round(100 * decision_s / window, 2),
        "decisions_per_s": _rate(decisions, window),
        "decision_ms_mean": round(1000 * decision_s / decisions, 3) if decision_s and decisions else None,
        "agent_metrics": deltas(before, after),
    }


async def _sample(side: Side) -> tuple[dict[str, float], float, float, float]:
    return (
        await scrape(side.agent.url),
        cpu_seconds(side.agent.proc.pid),
        cpu_seconds(os.getpid()),
        time.monotonic(),
    )


# --- the agent's own counts ----------------------------------------------------------------------
def deltas(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What the agent counted between two scrapes, for the metrics of turn taking it has."""
    return {
        k: round(v - before.get(k, 0.0), 4)
        for k, v in sorted(after.items())
        if k.startswith(AGENT_METRICS) and v != before.get(k, 0.0)
    }


def _delta(before: dict[str, float], after: dict[str, float], name: str) -> float | None:
    keys = [k for k in after if k == name or k.startswith(name + "{")]
    return sum(after[k] - before.get(k, 0.0) for k in keys) if keys else None


def _rate(count: float | None, seconds: float) -> float | None:
    return None if count is None else round(count / seconds, 2)


# --- a run ---------------------------------------------------------------------------------------
PARTS: dict[str, Callable[[Sequence[Side], bool], Awaitable[dict[str, list[dict[str, Any]]]]]] = {
    "questions": questions,
    "hesitations": hesitations,
    "interruptions": interruptions,
}


async def warm(sides: Sequence[Side], decoders: int) -> None:
    """As many calls as the agent has speech decoders ask at once, before anything is measured:
    creating a decoder is a cost of an agent's start, not of a call."""
    utt = corpus.question(corpus.QUESTIONS[0], corpus.VOICES[0])

    async def one(side: Side) -> None:
        async with call(side) as probe:
            await ask(probe, utt, first=True)

    for side in sides:
        await asyncio.gather(*(one(side) for _ in range(decoders)))
        side.call_s, side.errors = 0.0, Counter()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    agent: dict[str, dict[str, Any]] = {mode: {} for mode in MODES}
    loads: dict[str, dict[str, Any]] = {}
    agent_env = {"voice_stt_decoders": str(args.decoders)}
    with tempfile.TemporaryDirectory() as d, contextlib.ExitStack() as stack:
        sides = [
            Side(mode, stack.enter_context(running_agent(Path(d), **AGENT_ENV, **agent_env, **env)))
            for mode, env in MODES.items()
        ]
        started = time.monotonic()
        await warm(sides, args.decoders)
        print(f"agents warm in {time.monotonic() - started:.0f}s", flush=True)
        for part, measure in PARTS.items():
            if part not in args.parts:
                continue
            print(f"{part} ... ({time.monotonic() - started:.0f}s in)", flush=True)
            before = {
                s.mode: (await scrape(s.agent.url), cpu_seconds(s.agent.proc.pid), s.call_s) for s in sides
            }
            raw[part] = await measure(sides, args.quick)
            for s in sides:
                scraped, cpu, call_s = before[s.mode]
                agent[s.mode][part] = {
                    "cpu_s": round(cpu_seconds(s.agent.proc.pid) - cpu, 2),
                    "call_s": round(s.call_s - call_s, 1),
                    "metrics": deltas(scraped, await scrape(s.agent.url)),
                }
        if "load" in args.parts:
            for i, s in enumerate(sides):
                print(f"load: {args.calls} calls on {s.mode} ...", flush=True)
                loads[s.mode] = await load(s, args.calls, args.seconds, seed=i)
                print(f"  {loads[s.mode]}", flush=True)
        errors = {s.mode: dict(s.errors) for s in sides}
    return {
        "available": supported(),
        "modes": {mode: {k.upper(): v for k, v in env.items()} for mode, env in MODES.items()},
        "voices": list(corpus.VOICES),
        "cut_sentences": _cut_share(raw.get("hesitations", {})),
        **{
            mode: summarize(
                {part: trials[mode] for part, trials in raw.items()},
                agent[mode],
                loads.get(mode),
                errors[mode],
            )
            for mode in MODES
        },
        "trials": raw,
    }


def _cut_share(trials: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    phrases = {(p, r, v) for p, r in corpus.UNFINISHED for v in corpus.VOICES}
    cut = sum(corpus.unfinished(p, r, v, corpus.PAUSES_MS[0]).cut for p, r, v in phrases)
    return {"phrases": len(phrases), "cut_from_one_sentence": cut}


# --- figures -------------------------------------------------------------------------------------
def word_errors(reference: str, heard: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, words in the reference): edit distance over words."""
    ref, hyp = words(reference), words(heard)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diagonal, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (r != h))
    return row[-1], len(ref)


def accuracy(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Word accuracy pooled over utterances: 1 - all errors / all reference words."""
    errors = [word_errors(t["text"], t["heard"]) for t in trials]
    n = sum(w for _, w in errors)
    wrong = sum(e for e, _ in errors)
    return {"utterances": len(trials), "words": n, "percent": round(100 * (1 - wrong / n), 1) if n else None}


def rate(trials: list[dict[str, Any]], hit: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """How many measured trials were hits; failed trials are counted apart, never as either."""
    measured = [t for t in trials if "failed" not in t]
    hits = sum(1 for t in measured if hit(t))
    return {
        "trials": len(trials),
        "failed": len(trials) - len(measured),
        "hits": hits,
        "percent": round(100 * hits / len(measured), 1) if measured else None,
    }


def summarize(
    parts: dict[str, list[dict[str, Any]]],
    agent: dict[str, Any],
    loaded: dict[str, Any] | None,
    errors: dict[str, int],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if (asked := parts.get("questions")) is not None:
        out["questions"] = {
            "end_of_turn_ms": summary([t["delay_ms"] for t in asked if "delay_ms" in t]),
            "turns": len(asked),
            "failed": sum(1 for t in asked if "failed" in t),
            "failures": dict(Counter(t["failed"] for t in asked if "failed" in t)),
            "cut_inside": sum(1 for t in asked if t.get("split")),
            "word_accuracy": {
                "first": accuracy([t for t in asked if t["first"]]),
                "later": accuracy([t for t in asked if not t["first"]]),
            },
        }
    if (paused := parts.get("hesitations")) is not None:
        out["cut_offs"] = [
            {"pause_ms": ms, **rate([t for t in paused if t["pause_ms"] == ms], lambda t: bool(t["cut"]))}
            for ms in corpus.PAUSES_MS
        ]
    if (over := parts.get("interruptions")) is not None:
        false = [t for t in over if not t["real"]]
        noises = set(corpus.NOISES)
        out["false_interruptions"] = {
            **rate(false, lambda t: not t["completed"]),
            "backchannels": rate(
                [t for t in false if t["sound"] not in noises], lambda t: not t["completed"]
            ),
            "noises": rate([t for t in false if t["sound"] in noises], lambda t: not t["completed"]),
            "silent_ms": summary([t["silent_ms"] for t in false if "silent_ms" in t]),
        }
        real = [t for t in over if t["real"]]
        out["barge_in"] = {
            "trials": len(real),
            "failed": sum(1 for t in real if "failed" in t),
            "barge_in_ms": summary([t["barge_in_ms"] for t in real if "barge_in_ms" in t]),
            "missed": sum(1 for t in real if "missed" in t),
            "silent_at_onset": sum(1 for t in real if t.get("silent_at_onset")),
        }
    # The questions' calls: each open only while its own questions are asked, back to back.
    asking = agent.get("questions")
    out["one_call_cpu_percent"] = round(100 * asking["cpu_s"] / asking["call_s"], 2) if asking else None
    out["agent"] = agent
    if loaded is not None:
        out["load"] = {**loaded, "turn_decision_cpu_projected_percent": _projected(parts, agent, loaded)}
    out["errors"] = errors
    return out


def report(res: dict[str, Any]) -> str:
    """Both modes side by side, every figure of the run (the docs' block is this table)."""

    def both(pick: Callable[[dict[str, Any]], str]) -> list[str]:
        cells = []
        for mode in MODES:
            try:
                cells.append(pick(res[mode]))
            except (KeyError, TypeError, StopIteration):
                cells.append("not measured")
        return cells

    def pause(ms: int) -> Callable[[dict[str, Any]], str]:
        return lambda d: _hits(next(c for c in d["cut_offs"] if c["pause_ms"] == ms))

    def words_right(d: dict[str, Any]) -> str:
        acc = d["questions"]["word_accuracy"]
        return " / ".join(f"{acc[k]['percent']:g} % ({acc[k]['words']} words)" for k in ("first", "later"))

    def kept_up(d: dict[str, Any]) -> str:
        load = d["load"]
        ended = load["turns_ended_per_s"]
        return (
            f"{load['turns_per_s']:g} / {'none' if ended is None else f'{ended:g}'} / "
            f"{load['stalled_percent']:g} %"
        )

    def loaded(d: dict[str, Any]) -> str:
        load = d["load"]
        return f"{load['agent_cpu_percent']:g} % / {load['agent_cpu_per_call_percent']:g} %"

    def deciding(d: dict[str, Any]) -> str:
        load = d["load"]
        measured, projected = load["turn_decision_cpu_percent"], load["turn_decision_cpu_projected_percent"]
        if measured is None:
            return "not counted by the agent"
        mean = load["decision_ms_mean"]
        per = "" if mean is None else f", {mean:g} ms each"
        shown = "—" if projected is None else f"{projected:g} %"
        return f"{measured:g} % / {shown} ({load['decisions_per_s']:g} decisions/s{per})"

    calls = next((res[m]["load"]["calls"] for m in MODES if "load" in res.get(m, {})), LOAD_CALLS)
    rows = [
        [
            "End of turn: end of speech → final transcript at the probe, p50 / p95 / p99",
            *both(lambda d: _p3(d["questions"]["end_of_turn_ms"])),
            "p50 ≤ 250 ms",
        ],
        [
            "Agent: silence waited before taking the turn, mean",
            *both(lambda d: _mean_ms(d["agent"]["questions"]["metrics"], "voice_turn_end_silence_seconds")),
            "—",
        ],
        [
            "Questions without a turn (no final transcript, or nothing recognized) / cut inside",
            *both(lambda d: _of(d["questions"], "failed", "cut_inside", total="turns")),
            "—",
        ],
        *[
            [f"False cut-offs, {ms} ms pause mid-sentence", *both(pause(ms)), "≤ 10 %" if ms == 800 else "—"]
            for ms in corpus.PAUSES_MS
        ],
        [
            "False interruptions: the reply cut by a backchannel or a noise",
            *both(lambda d: _hits(d["false_interruptions"])),
            "≤ 10 %",
        ],
        [
            "— by a backchannel / by a noise",
            *both(
                lambda d: (
                    f"{_hits(d['false_interruptions']['backchannels'])} / "
                    f"{_hits(d['false_interruptions']['noises'])}"
                )
            ),
            "—",
        ],
        [
            "Longest silence in a reply that went on (a hold), p50 / p95",
            *both(lambda d: _p2(d["false_interruptions"]["silent_ms"])),
            "—",
        ],
        [
            "Real barge-in: speech onset → agent silent at the probe, p50 / p95 / p99",
            *both(lambda d: _p3(d["barge_in"]["barge_in_ms"])),
            "p95 ≤ 200 ms",
        ],
        [
            "Real interruptions missed / failed (of trials)",
            *both(lambda d: _of(d["barge_in"], "missed", "failed", total="trials")),
            "0",
        ],
        ["Word accuracy: first question of a call / later ones", *both(words_right), "—"],
        [
            "Agent CPU per call, one call asking back to back (of one core)",
            *both(lambda d: f"{d['one_call_cpu_percent']:g} %"),
            "—",
        ],
        [
            f"{calls} calls: questions asked/s / turns ended/s / outbound audio stalled (share of call time)",
            *both(kept_up),
            "—",
        ],
        [f"{calls} calls: agent CPU (of one core) / per call", *both(loaded), "—"],
        [
            f"{calls} calls: turn-decision CPU (of one core), measured / if every question were decided",
            *both(deciding),
            "≤ 5 %",
        ],
    ]
    head = ["Measure", "fixed silence, immediate interruption", "default (no overrides)", "Target"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    available = res.get("available", {})
    have = ", ".join(f"`{k}` {'yes' if v else 'no'}" for k, v in available.items())
    return "\n".join(lines) + f"\n\nSettings the agent had: {have}."


def _p3(s: dict[str, Any]) -> str:
    return f"{s['p50']:g} / {s['p95']:g} / {s['p99']:g} ms (n={s['n']})" if s["n"] else "none"


def _p2(s: dict[str, Any]) -> str:
    return f"{s['p50']:g} / {s['p95']:g} ms (n={s['n']})" if s["n"] else "none"


def _hits(r: dict[str, Any]) -> str:
    measured = r["trials"] - r["failed"]
    shown = f"{r['hits']}/{measured} ({r['percent']:g} %)" if measured else "none measured"
    return shown + (f", {r['failed']} failed" if r["failed"] else "")


def _of(d: dict[str, Any], *keys: str, total: str) -> str:
    return " / ".join(str(d[k]) for k in keys) + f" of {d[total]}"


def _percent(value: float | None) -> str:
    return "not counted by the agent" if value is None else f"{value:g} %"


def _mean_ms(metrics: dict[str, float], histogram: str) -> str:
    total = sum(v for k, v in metrics.items() if k.startswith(histogram + "_sum"))
    count = sum(v for k, v in metrics.items() if k.startswith(histogram + "_count"))
    return f"{1000 * total / count:.0f} ms (n={count:g})" if count else "not counted by the agent"


def _projected(
    parts: dict[str, list[dict[str, Any]]], agent: dict[str, Any], loaded: dict[str, Any]
) -> float | None:
    """Turn decisions' CPU if every question the calls asked were decided: the mean time of one
    decision under load, times the decisions per utterance of the one-call parts, times the rate
    the calls spoke at. An agent that falls behind decides less than it was asked to, and the
    measured share alone would then flatter it."""
    said = sum(len(parts.get(p, [])) for p in ("questions", "hesitations"))
    made = sum(
        float(v)
        for p in ("questions", "hesitations")
        for k, v in agent.get(p, {}).get("metrics", {}).items()
        if k.startswith("voice_turn_decisions_total")
    )
    if not said or not made or loaded.get("decision_ms_mean") is None:
        return None
    per_decision_s = float(loaded["decision_ms_mean"]) / 1000
    return round(per_decision_s * made / said * float(loaded["turns_per_s"]) * 100, 2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few trials of each kind, for a smoke run")
    ap.add_argument("--parts", nargs="+", default=[*PARTS, "load"], choices=[*PARTS, "load"])
    ap.add_argument("--calls", type=int, default=LOAD_CALLS)
    ap.add_argument("--seconds", type=float, default=45.0)
    ap.add_argument(
        "--decoders",
        type=int,
        default=STT_DECODERS,
        help="speech decoders per agent (one call at a time needs 2; the load part needs the default)",
    )
    args = ap.parse_args()
    if args.quick:
        args.calls, args.seconds = 5, 10.0
    started = time.monotonic()
    res = asyncio.run(run(args))
    res["run_s"] = round(time.monotonic() - started)
    print(report(res))
    print(f"results: {write('turntaking', res)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
