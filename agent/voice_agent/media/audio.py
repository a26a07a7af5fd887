"""PCM helpers for the media path: resampling via libswresample, WAV parsing, energy.

Everything works on s16le mono bytes; numpy only where it avoids Python loops over samples.
"""

from __future__ import annotations

import io
import wave

import av
import numpy as np

OUTPUT_RATE = 48_000
PIPELINE_RATE = 16_000
FRAME_MS = 20


def frame_bytes(rate: int, ms: int = FRAME_MS) -> int:
    return rate * ms // 1000 * 2


class PcmResampler:
    """Stateful s16 mono resampler (keeps filter state across chunks, so no clicks at seams)."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=out_rate)
        self._pts = 0

    def resample(self, pcm: bytes) -> bytes:
        if self.in_rate == self.out_rate or not pcm:
            return pcm
        samples = len(pcm) // 2
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        frame.planes[0].update(pcm[: samples * 2])
        frame.sample_rate = self.in_rate
        frame.pts = self._pts
        self._pts += samples
        return b"".join(bytes(f.planes[0])[: f.samples * 2] for f in self._resampler.resample(frame))

    def flush(self) -> bytes:
        if self.in_rate == self.out_rate:
            return b""
        return b"".join(bytes(f.planes[0])[: f.samples * 2] for f in self._resampler.resample(None))


class InboundConverter:
    """Decoded WebRTC audio (any layout/rate) -> 16 kHz mono s16 in exact 20 ms slices."""

    def __init__(self, out_rate: int = PIPELINE_RATE) -> None:
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=out_rate)
        self._buf = bytearray()
        self._slice = frame_bytes(out_rate)

    def push(self, frame: av.AudioFrame) -> list[bytes]:
        for out in self._resampler.resample(frame):
            self._buf += memoryview(out.planes[0])[: out.samples * 2]
        n = len(self._buf) // self._slice
        if n == 0:
            return []
        chunks = [bytes(self._buf[i * self._slice : (i + 1) * self._slice]) for i in range(n)]
        del self._buf[: n * self._slice]
        return chunks


def parse_wav(data: bytes) -> tuple[bytes, int]:
    """Return (s16 mono PCM, sample rate) of a WAV file's bytes."""
    with wave.open(io.BytesIO(data)) as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"expected 16-bit WAV, got {w.getsampwidth() * 8}-bit")
        pcm = w.readframes(w.getnframes())
        rate = w.getframerate()
        if w.getnchannels() != 1:
            arr = np.frombuffer(pcm, dtype="<i2").reshape(-1, w.getnchannels())
            pcm = arr.mean(axis=1).astype("<i2").tobytes()
    return pcm, rate


def rms_dbfs(pcm: bytes | memoryview) -> float:
    """Loudness of s16 PCM in dBFS (-inf for digital silence)."""
    arr = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    if arr.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(arr * arr)))
    return 20 * np.log10(rms / 32768.0) if rms > 0 else float("-inf")


def trim_silence(
    pcm: bytes, rate: int, keep_lead_ms: int = 10, keep_tail_ms: int = 120, floor: int = 200
) -> bytes:
    """Cut synthesizer padding: leading silence is latency the user waits through, trailing
    silence beyond a natural pause stretches the gap between sentences. `floor` is ~-44 dBFS."""
    samples = np.frombuffer(pcm, dtype="<i2")
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > floor)
    if loud.size == 0:
        return b""
    start = max(int(loud[0]) - rate * keep_lead_ms // 1000, 0)
    end = min(int(loud[-1]) + 1 + rate * keep_tail_ms // 1000, samples.size)
    return samples[start:end].tobytes()


class LossConcealer:
    """Packet-loss concealment for what VAD and STT hear: a missing 20 ms is filled with the last
    good 20 ms, halved each time, for up to `max_frames`; longer gaps stay gaps. Crude next to
    Opus's own PLC, but it keeps the timeline (VAD counts frames) and the words' energy intact,
    which is what the recognizer needs through a lost packet or two."""

    def __init__(self, max_frames: int = 3) -> None:
        self._last: np.ndarray | None = None
        self._max = max_frames

    def remember(self, pcm: bytes) -> None:
        self._last = np.frombuffer(pcm, dtype="<i2")

    def conceal(self, missing: int) -> list[bytes]:
        if self._last is None or missing <= 0:
            return []
        out: list[bytes] = []
        frame = self._last.astype(np.int32)
        for _ in range(min(missing, self._max)):
            frame = frame // 2
            out.append(frame.astype("<i2").tobytes())
        return out
