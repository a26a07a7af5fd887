"""Real Opus packets of speech for receive-path tests, and the RTP and sink they go through."""

from __future__ import annotations

import numpy as np
from aiortc.rtp import RtpPacket

from tests.support.speech import synth
from voice_agent.media.audio import OUTPUT_RATE, PcmResampler, frame_bytes
from voice_agent.media.opus import OpusDecoder
from voice_agent.media.track import OpusFrameEncoder

FRAME_48K = frame_bytes(OUTPUT_RATE)


def speech_opus_packets(text: str = "hello, what time is it") -> list[bytes]:
    """Flite speech, Opus-encoded 20 ms at a time by the encoder every sender of ours uses."""
    pcm, rate = synth(text)
    pcm48 = PcmResampler(rate, OUTPUT_RATE).resample(pcm)
    encoder = OpusFrameEncoder()
    n = len(pcm48) // FRAME_48K
    return [bytes(encoder.encode(pcm48[i * FRAME_48K : (i + 1) * FRAME_48K], i * 960)) for i in range(n)]


def loud_index(packets: list[bytes]) -> int:
    """A packet in the middle of a word: where a loss hurts."""
    ref = OpusDecoder()
    energy = [float(np.abs(np.frombuffer(ref.decode(p), "<i2").astype(np.float64)).mean()) for p in packets]
    return int(np.argmax(energy[:-1]))


def error_db(got: bytes, want: bytes) -> float:
    g = np.frombuffer(got, "<i2").astype(np.float64)
    w = np.frombuffer(want, "<i2").astype(np.float64)
    return float(10 * np.log10(np.mean((g - w) ** 2) / np.mean(w**2)))


def rtp(seq: int, data: bytes, payload_type: int = 111, ssrc: int = 1) -> RtpPacket:
    p = RtpPacket(payload_type=payload_type, sequence_number=seq & 0xFFFF, timestamp=seq * 960, ssrc=ssrc)
    p._data = data  # type: ignore[attr-defined]  # aiortc depayloads into this attribute
    return p


class Sink:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def __call__(self, pcm: bytes) -> None:
        self.frames.append(pcm)
