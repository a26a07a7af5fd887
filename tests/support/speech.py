"""Test speech: flite synthesizes what the client says; pocketsphinx transcribes what it hears."""

from __future__ import annotations

import functools
import re
import subprocess

from voice_agent.media.audio import PcmResampler, parse_wav


@functools.lru_cache(maxsize=64)
def synth(text: str) -> tuple[bytes, int]:
    """16 kHz mono s16 speech of `text` with flite's slt voice, plus 300 ms of leading silence."""
    out = subprocess.run(
        ["flite", "-voice", "slt", "-t", text, "-o", "/dev/stdout"],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    pcm, rate = parse_wav(out)
    return bytes(rate * 2 * 3 // 10) + pcm, rate


def transcribe(pcm: bytes, rate: int) -> str:
    from pocketsphinx import Decoder

    if rate != 16000:
        r = PcmResampler(rate, 16000)
        pcm = r.resample(pcm) + r.flush()
    decoder = Decoder(samprate=16000, loglevel="FATAL")
    decoder.start_utt()
    decoder.process_raw(pcm, False, True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr if hyp is not None else ""


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower().replace("'s ", " is ").replace("'re ", " are "))


def overlap(expected: str, heard: str) -> float:
    """Share of expected words found in what was heard (order-free, tolerant of STT slips)."""
    exp = words(expected)
    got = set(words(heard))
    return sum(1 for w in exp if w in got) / max(len(exp), 1)


@functools.lru_cache(maxsize=64)
def clean_hearing(text: str) -> str:
    """What the recognizer hears in a clean synthesis of `text`. Kept per text: a benchmark scores
    the same phrase over hundreds of runs, and each transcription loads a recognizer."""
    return transcribe(*synth(text))


def sounds_like(text: str, heard: str) -> float:
    """How much of `text` was heard, by the kinder of two references: `text` itself, or what the
    recognizer hears in a clean synthesis of it. The second takes out the recognizer's own slips,
    which would otherwise count as transport damage ("It is 4:06 PM" is "it is for a six pm" to
    pocketsphinx even when nothing was lost)."""
    return max(overlap(text, heard), overlap(clean_hearing(text), heard))
