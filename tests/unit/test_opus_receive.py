"""What the agent hears through loss: libopus decoding with FEC and PLC, on real Opus packets."""

from __future__ import annotations

from collections.abc import Iterator

import av
import numpy as np
import pytest
from aiortc.rtp import RtpPacket

from tests.support.opus_packets import Sink, error_db, loud_index, rtp, speech_opus_packets
from voice_agent.media.audio import OUTPUT_RATE, frame_bytes
from voice_agent.media.opus import OpusDecoder
from voice_agent.media.receive import DecodingAudioBuffer, advertise_inband_fec
from voice_agent.media.track import AIGeneratedAudioTrack
from voice_agent.protocol.signaling import SignalingError, check_offer_sdp, opus_payload_types
from voice_agent.telemetry import metrics

FRAME_48K = frame_bytes(OUTPUT_RATE)
FRAME_16K = frame_bytes(16_000)


@pytest.fixture(scope="module")
def speech_packets() -> list[bytes]:
    return speech_opus_packets()


def test_fec_recovers_a_lost_packet_far_better_than_concealment(speech_packets: list[bytes]) -> None:
    k = loud_index(speech_packets)
    reference = OpusDecoder()
    for p in speech_packets[:k]:
        reference.decode(p)
    want = reference.decode(speech_packets[k])

    recovered, concealed = OpusDecoder(), OpusDecoder()
    for p in speech_packets[:k]:
        recovered.decode(p)
        concealed.decode(p)
    fec = recovered.recover(speech_packets[k + 1])
    plc = concealed.conceal()
    assert len(fec) == len(plc) == len(want) == FRAME_16K
    assert error_db(fec, want) < error_db(plc, want) - 3, (error_db(fec, want), error_db(plc, want))
    assert error_db(fec, want) < -3, "the recovered frame resembles what was said"


def feed(buffer: DecodingAudioBuffer, packets: Iterator[RtpPacket]) -> None:
    for p in packets:
        assert buffer.add(p) == (False, None), "aiortc's own decoder must get nothing"


def test_decoding_buffer_repairs_gaps_drops_late_and_rejects_junk(speech_packets: list[bytes]) -> None:
    sink = Sink()
    buffer = DecodingAudioBuffer({111}, sink, max_repair=5)
    before = metrics.INBOUND_CONCEALED._value.get()
    p = speech_packets
    feed(
        buffer,
        iter(
            [
                rtp(65533, p[0]),
                rtp(65534, p[1]),
                rtp(0, p[3]),  # 65535 lost, across the wrap: repaired from p[3]'s FEC
                rtp(65535, p[2]),  # late: its time has passed
                rtp(0, p[3]),  # duplicate
                rtp(1, b"\xff\xff\xff\xff\xff"),  # not Opus: counts as lost
                rtp(2, p[5], payload_type=0),  # another codec: counts as lost
                rtp(6, p[6]),  # 1..5 lost: 1 FEC + 4 PLC
                rtp(20, p[7]),  # 13 lost: a stall, not papered over
                rtp(21, p[8]),
            ]
        ),
    )
    assert buffer.repaired == 1 + 5
    assert buffer.rejected == 2
    assert metrics.INBOUND_CONCEALED._value.get() - before == 6
    decoded = 6  # 65533, 65534, 0, 6, 20, 21
    assert len(sink.frames) == decoded + buffer.repaired
    assert all(len(f) == FRAME_16K for f in sink.frames)
    buffer.close()
    feed(buffer, iter([rtp(22, p[9])]))
    assert len(sink.frames) == decoded + buffer.repaired, "a closed buffer ignores stragglers"


def test_a_restarted_stream_is_decoded_not_dropped_as_late(speech_packets: list[bytes]) -> None:
    sink = Sink()
    buffer = DecodingAudioBuffer({111}, sink)
    p = speech_packets
    feed(buffer, iter([rtp(1000, p[0]), rtp(1001, p[1]), rtp(1000, p[2])]))  # 1 behind: late
    assert len(sink.frames) == 2
    feed(buffer, iter([rtp(700, p[3]), rtp(701, p[4])]))  # 300 behind: the sender restarted
    assert len(sink.frames) == 4 and buffer.repaired == 0
    feed(buffer, iter([rtp(5, p[5], ssrc=2), rtp(6, p[6], ssrc=2)]))  # a new source
    assert len(sink.frames) == 6 and buffer.repaired == 0


def test_decoding_buffer_slices_long_packets_into_20_ms_frames() -> None:
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate = 32_000
    codec.format = "s16"
    codec.layout = "mono"
    codec.sample_rate = OUTPUT_RATE
    codec.options = {"frame_duration": "40"}
    frame = av.AudioFrame(format="s16", layout="mono", samples=1920)
    frame.sample_rate = OUTPUT_RATE
    packets: list[bytes] = []
    for i in range(6):
        frame.planes[0].update((np.sin(np.arange(1920) / 7) * 6000).astype("<i2").tobytes())
        frame.pts = i * 1920
        packets += [bytes(pkt) for pkt in codec.encode(frame)]
    assert OpusDecoder().samples_in(packets[0]) == 640, "40 ms packets"
    sink = Sink()
    feed(DecodingAudioBuffer({111}, sink), (rtp(i, pkt) for i, pkt in enumerate(packets)))
    assert len(sink.frames) == 2 * len(packets)


def test_the_answer_asks_for_inband_fec_on_every_opus_payload_type() -> None:
    sdp = "\r\n".join(
        [
            "v=0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 96 111 0",
            "a=rtpmap:96 opus/48000/2",
            "a=rtpmap:111 OPUS/48000/2",
            "a=fmtp:111 minptime=10",
            "a=rtpmap:0 PCMU/8000",
            "",
        ]
    )
    out = advertise_inband_fec(sdp)
    assert "a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\n" in out
    assert "a=fmtp:111 minptime=10;useinbandfec=1\r\n" in out
    assert "a=fmtp:0" not in out
    assert advertise_inband_fec(out) == out, "idempotent"
    assert opus_payload_types(sdp) == {96, 111}


def test_an_offer_without_opus_is_refused_with_a_clear_error() -> None:
    offer = "\r\n".join(
        [
            "v=0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 0",
            "a=rtpmap:0 PCMU/8000",
            "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
            "a=ice-ufrag:abcd",
            "a=ice-pwd:abcdefghijklmnopqrstuv",
            "",
        ]
    )
    with pytest.raises(SignalingError, match="Opus") as err:
        check_offer_sdp(offer)
    assert err.value.code == "invalid_sdp"


async def test_a_stalled_pipeline_keeps_the_newest_5_s_of_audio_not_everything() -> None:
    from voice_agent.media.peer import INBOUND_BACKLOG_FRAMES, Peer

    async def never_called(pcm: bytes) -> None:
        raise AssertionError("no reader runs before an answer")

    peer = Peer("s", [], AIGeneratedAudioTrack("s", count_metrics=False), never_called, lambda state: None)
    try:
        before = metrics.INBOUND_OVERFLOW._value.get()
        for i in range(INBOUND_BACKLOG_FRAMES + 50):
            peer._push(i.to_bytes(2, "little") * 320)
        assert peer._decoded.qsize() == INBOUND_BACKLOG_FRAMES
        assert metrics.INBOUND_OVERFLOW._value.get() - before == 50
        assert peer._decoded.get_nowait() == (50).to_bytes(2, "little") * 320, "the oldest went first"
    finally:
        await peer.close()
