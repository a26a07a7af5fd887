"""The turn-taking evaluation's audio (bench/turntaking.py): what the probe says, and where in it the
user's speech starts and ends.

Several voices (bench/voices.py: two of flite's and Piper's joe), so a detector cannot pass by being
tuned to one synthesizer. An unfinished phrase is one synthesized sentence cut at a word boundary,
with a pause put in: the words before the pause keep the prosody of a sentence that goes on, as a
person's hesitation does, where a prefix synthesized on its own would end with a falling, final
tone. The boundary comes from forced alignment (pocketsphinx aligning the sentence's own text),
which works the same for every voice; a sentence the aligner cannot place is synthesized in two
parts instead, and the result says how many were.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench import voices
from bench.agent import speech_bounds

VOICES = ("slt", "rms", "joe")
RATE = voices.RATE
LEAD_MS = 300  # silence before every utterance: the VAD's pre-roll, and a gap after the last turn
FADE_MS = 5  # at a cut, so the cut itself is not a click
ONSET_MARGIN_MS = 40  # of a synthesizer's lead-in kept before the first voiced frame (a soft attack)

QUESTIONS = (
    "what time is it",
    "what is the date today",
    "can you tell me a story",
    "what day of the week is it",
    "how are you doing this morning",
    "what is the weather like in paris",
    "where is the nearest train station",
    "how much does a ticket cost",
    "when does the museum open",
    "is it going to rain tomorrow",
    "what is your name",
    "how far is the airport from here",
    "can you book a table for two",
    "what should i cook for dinner tonight",
    "do you know a good restaurant nearby",
    "how do i reset my password",
    "please set an alarm for seven",
    "which bus goes to the city center",
    "can you play some music",
    "could you repeat what i said",
)

# (words before the hesitation, words after it): each prefix ends where people pause mid-sentence.
UNFINISHED = (
    ("i would like to", "book a table for two"),
    ("can you tell me the", "time in london"),
    ("what is the", "date today"),
    ("i need a ticket to", "the city center"),
    ("my name is", "john smith"),
    ("could you help me with", "my password"),
    ("i want to go to the", "train station"),
    ("tell me about the", "weather tomorrow"),
)
PAUSES_MS = (300, 500, 800, 1200)

# Said while the agent talks. flite spells "mm-hmm" out letter by letter (a second of "m m h m"),
# so only the Piper voice says it.
BACKCHANNELS = (
    *((word, voice) for word in ("yeah", "okay", "right", "uh-huh") for voice in VOICES),
    ("mm-hmm", "joe"),
)
NOISES = ("cough-250", "cough-350", "clicks-3", "clicks-5")
REAL_INTERRUPTIONS = tuple(
    (words, voice) for words in ("wait", "stop", "what time is it") for voice in VOICES
)


@dataclass(frozen=True)
class Utterance:
    """16 kHz mono s16le, LEAD_MS of silence first; onset and end of the voiced part in seconds from
    the first sample, by the webrtcvad the agent uses (bench.agent.speech_bounds)."""

    label: str
    voice: str
    pcm: bytes
    onset_s: float
    end_s: float

    @property
    def first_voiced_frame(self) -> int:
        return int(self.onset_s * 50)

    @property
    def last_voiced_frame(self) -> int:
        return round(self.end_s * 50) - 1


@dataclass(frozen=True)
class Unfinished(Utterance):
    """An unfinished phrase, its pause and where the words before it end."""

    pause_ms: int
    prefix_end_s: float
    cut: bool  # one sentence cut at a word boundary (else two syntheses)


def utterance(label: str, voice: str, pcm: bytes) -> Utterance:
    pcm = voices.concat(voices.silence(LEAD_MS), _from_onset(pcm))
    onset, end = speech_bounds(pcm, RATE)
    return Utterance(label, voice, pcm, onset, end)


@functools.cache
def question(text: str, voice: str) -> Utterance:
    return utterance(text, voice, voices.speak(text, voice))


@functools.cache
def unfinished(prefix: str, rest: str, voice: str, pause_ms: int) -> Unfinished:
    split = _split(prefix, rest, voice)
    cut = split is not None
    before, after = split or (voices.speak(prefix, voice), voices.speak(rest, voice))
    if not cut:
        # Two syntheses: take each part's own lead-in and tail off, so the pause is the one asked for.
        before, after = _trim(before), _trim(after)
    lead, before = voices.silence(LEAD_MS), _from_onset(before)
    prefix_end = speech_bounds(voices.concat(lead, before), RATE)[1]
    pcm = voices.concat(lead, before, voices.silence(pause_ms), after)
    onset, end = speech_bounds(pcm, RATE)
    return Unfinished(f"{prefix} … {rest}", voice, pcm, onset, end, pause_ms, prefix_end, cut)


def _split(prefix: str, rest: str, voice: str) -> tuple[bytes, bytes] | None:
    """The sentence `prefix rest` cut where the aligner puts the start of the rest's first word."""
    text = f"{prefix} {rest}"
    pcm = voices.speak(text, voice)
    decoder = _aligner()
    try:
        decoder.set_align_text(text)
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        words = [s for s in decoder.seg() if not s.word.startswith(("<", "["))]
    except RuntimeError:
        return None
    n = len(prefix.split())
    if len(words) != n + len(rest.split()):
        return None
    at = words[n].start_frame * RATE // 100 * 2  # 10 ms alignment frames, in bytes
    return _fade(pcm[:at], out=True), _fade(pcm[at:], out=False)


@functools.cache
def _aligner() -> Any:
    from pocketsphinx import Decoder

    return Decoder(samprate=RATE, loglevel="FATAL")


def _fade(pcm: bytes, out: bool) -> bytes:
    samples = np.frombuffer(pcm, "<i2").astype(np.float32)
    n = min(len(samples), RATE * FADE_MS // 1000)
    ramp = np.linspace(1.0, 0.0, n) if out else np.linspace(0.0, 1.0, n)
    if out:
        samples[len(samples) - n :] *= ramp
    else:
        samples[:n] *= ramp
    return samples.astype("<i2").tobytes()


def _from_onset(pcm: bytes) -> bytes:
    """The synthesizer's own lead-in taken off, but for ONSET_MARGIN_MS before the voice: voices
    differ by up to half a second there, and every utterance's voice starts LEAD_MS in."""
    onset = speech_bounds(pcm, RATE)[0]
    return pcm[max(0, int((onset - ONSET_MARGIN_MS / 1000) * RATE)) * 2 :]


def _trim(pcm: bytes) -> bytes:
    onset, end = speech_bounds(pcm, RATE)
    return pcm[int(onset * RATE) * 2 : int(end * RATE) * 2]


@functools.cache
def noise(kind: str) -> Utterance:
    """A cough-like burst of the given length, or a train of clicks (a key pressed every 120 ms)."""
    name, _, arg = kind.partition("-")
    if name == "cough":
        pcm = voices.cough(int(arg), seed=int(arg))
    elif name == "clicks":
        gap = voices.silence(120)
        pcm = voices.concat(*(part for _ in range(int(arg)) for part in (voices.click(), gap)))
    else:
        raise ValueError(f"unknown noise {kind!r}")
    lead = voices.silence(LEAD_MS)
    full = voices.concat(lead, pcm)
    # A click train may hold no frame the VAD calls voiced: then its whole length is the sound.
    try:
        onset, end = speech_bounds(full, RATE)
    except ValueError:
        onset, end = LEAD_MS / 1000, len(full) / (2 * RATE)
    return Utterance(kind, "-", full, onset, end)
