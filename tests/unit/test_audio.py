"""Audio helpers on the hot path: synthesizer padding is trimmed, speech itself is untouched."""

from __future__ import annotations

import numpy as np

from voice_agent.media.audio import trim_silence


def test_trim_silence_cuts_padding_but_keeps_speech_and_a_short_tail() -> None:
    rate = 16000
    speech = (np.cos(np.arange(rate // 2) / 5) * 10000).astype("<i2")  # loud from sample 0
    pad = np.zeros(rate // 5, dtype="<i2")
    out = np.frombuffer(trim_silence(np.concatenate([pad, speech, pad]).tobytes(), rate), dtype="<i2")
    lead = rate * 10 // 1000
    tail = rate * 120 // 1000
    assert abs(out.size - (speech.size + lead + tail)) <= 2
    assert np.array_equal(out[lead : lead + 100], speech[:100])


def test_trim_silence_of_pure_silence_is_empty() -> None:
    assert trim_silence(bytes(3200), 16000) == b""


async def test_receiver_prefetch_is_lowered_on_a_real_peer_connection() -> None:
    from aiortc import RTCPeerConnection

    from voice_agent.media.receive import current_prefetch, tune_receivers

    pc = RTCPeerConnection()
    pc.addTransceiver("audio")
    try:
        assert current_prefetch(pc.getTransceivers()[0].receiver) == 4, "aiortc default changed"
        assert tune_receivers(pc, 0) == 1
        assert current_prefetch(pc.getTransceivers()[0].receiver) == 0
    finally:
        await pc.close()


def test_immediate_buffer_releases_every_packet_and_drops_late_ones() -> None:
    from aiortc.rtp import RtpPacket

    from voice_agent.media.receive import ImmediateAudioBuffer

    def pkt(seq: int) -> RtpPacket:
        p = RtpPacket(sequence_number=seq & 0xFFFF, timestamp=seq * 960)
        p._data = bytes([seq & 0xFF])  # type: ignore[attr-defined]
        return p

    buf = ImmediateAudioBuffer()
    released = [buf.add(pkt(s))[1] for s in (65534, 65535, 1, 0, 2, 2, 3)]  # 0 is late, 2 repeats
    assert [f.timestamp // 960 if f else None for f in released] == [65534, 65535, 1, None, 2, None, 3]


def test_concealment_repeats_the_last_frame_fading_and_only_briefly() -> None:
    from voice_agent.media.audio import LossConcealer

    c = LossConcealer(max_frames=3)
    assert c.conceal(2) == [], "nothing to repeat before the first frame"
    c.remember((np.ones(320) * 8000).astype("<i2").tobytes())
    out = [np.frombuffer(x, dtype="<i2") for x in c.conceal(10)]
    assert [int(x[0]) for x in out] == [4000, 2000, 1000]
