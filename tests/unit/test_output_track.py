"""The outbound track's own Opus encoding: speech encoded for real, steady silence reused."""

from __future__ import annotations

import av
import numpy as np

from voice_agent.pipeline.output import _SILENCE, FRAME_BYTES, SILENCE_WARMUP_FRAMES, OpusFrameEncoder


def decode_all(packets: list[bytes]) -> np.ndarray:
    dec = av.CodecContext.create("libopus", "r")
    dec.format = "s16"
    dec.layout = "stereo"  # what browsers negotiate (opus/48000/2): mono packets must play
    dec.sample_rate = 48000
    out = []
    for data in packets:
        for frame in dec.decode(av.Packet(data)):  # type: ignore[attr-defined]
            out.append(frame.to_ndarray().reshape(-1))
    return np.concatenate(out)


def test_speech_round_trips_and_idle_silence_skips_the_encoder() -> None:
    enc = OpusFrameEncoder()
    tone = (np.sin(np.arange(FRAME_BYTES // 2) / 4) * 12000).astype("<i2").tobytes()
    packets = [bytes(enc.encode(tone, i * 960)) for i in range(10)]
    silent = [bytes(enc.encode(_SILENCE, (10 + i) * 960)) for i in range(10)]
    assert len(set(silent[SILENCE_WARMUP_FRAMES:])) == 1, "steady silence reuses one packet"
    assert len(set(silent[:SILENCE_WARMUP_FRAMES])) >= 1
    pcm = decode_all(packets + silent)
    speech, tail = pcm[: 10 * 1920], pcm[-5 * 1920 :]
    assert np.abs(speech[1920 * 3 :]).max() > 5000, "speech survives encoding"
    assert np.abs(tail).max() < 50, "silence decodes to silence"
    again = bytes(enc.encode(tone, 20 * 960))
    assert again not in silent, "speech after silence is encoded for real"
