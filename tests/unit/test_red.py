"""Audio redundancy (RED) on the uplink: parsing, the answer that asks for it, and the exact repair."""

from __future__ import annotations

import pytest

from bench.sender import RedWrapper, offer_red, red_first
from tests.support.opus_packets import Sink, error_db, loud_index, rtp, speech_opus_packets
from voice_agent.media.opus import OpusDecoder
from voice_agent.media.receive import DecodingAudioBuffer
from voice_agent.media.red import accept_red, join_red, red_payload_types, split_red

# What Chromium 156 offers for audio (its m-line and codec lines), less the candidates.
CHROME_AUDIO = "\r\n".join(
    [
        "v=0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:63 red/48000/2",
        "a=fmtp:63 111/111",
        "a=rtpmap:9 G722/8000",
        "",
    ]
)
AIORTC_ANSWER = "\r\n".join(
    [
        "v=0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8",
        "a=mid:0",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 useinbandfec=1",
        "a=rtpmap:0 PCMU/8000",
        "",
    ]
)


@pytest.fixture(scope="module")
def speech_packets() -> list[bytes]:
    return speech_opus_packets()


def test_a_red_payload_splits_into_its_blocks_and_back() -> None:
    payload = join_red(111, b"primary", [(1920, b"older"), (960, b"previous")])
    red = split_red(payload)
    assert red is not None
    assert (red.primary_type, red.primary) == (111, b"primary")
    assert red.earlier == ((111, 1920, b"older"), (111, 960, b"previous"))
    assert split_red(join_red(111, b"alone", [])) == split_red(bytes([111]) + b"alone")


@pytest.mark.parametrize(
    "payload",
    [b"", bytes([0x80 | 111, 0, 0]), bytes([0x80 | 111, 0x00, 0x0C, 0x05, 111]) + b"abc"],
    ids=["empty", "header cut short", "block longer than the payload"],
)
def test_a_red_payload_that_does_not_add_up_is_refused(payload: bytes) -> None:
    assert split_red(payload) is None


def test_only_red_that_carries_opus_is_taken_from_an_offer() -> None:
    assert red_payload_types(CHROME_AUDIO) == {63: 111}
    assert red_payload_types(CHROME_AUDIO.replace("a=fmtp:63 111/111", "a=fmtp:63 9/9")) == {}
    assert red_payload_types(CHROME_AUDIO.replace("a=fmtp:63 111/111", "a=fmtp:63 111/9")) == {}
    assert red_payload_types(AIORTC_ANSWER) == {}


def test_the_answer_lists_red_first_with_its_opus() -> None:
    answer = accept_red(AIORTC_ANSWER, {63: 111})
    lines = answer.split("\r\n")
    assert lines[1] == "m=audio 9 UDP/TLS/RTP/SAVPF 63 111 0 8"
    at = lines.index("a=rtpmap:111 opus/48000/2")
    assert lines[at + 1 : at + 3] == ["a=rtpmap:63 red/48000/2", "a=fmtp:63 111/111"]
    assert red_payload_types(answer) == {63: 111}
    assert accept_red(AIORTC_ANSWER, {63: 96}) == AIORTC_ANSWER  # not the Opus the answer has


def test_a_lost_packet_is_rebuilt_exactly_from_the_next_red_packet(speech_packets: list[bytes]) -> None:
    k = loud_index(speech_packets)
    plain, red = Sink(), Sink()
    reference = DecodingAudioBuffer({111}, plain)
    buffer = DecodingAudioBuffer({111}, red, red_types={63: 111})
    for seq, packet in enumerate(speech_packets[: k + 2]):
        reference.add(rtp(seq, packet))
        if seq == k:
            continue  # lost on the way
        earlier = [(960, speech_packets[seq - 1])] if seq else []
        buffer.add(rtp(seq, join_red(111, packet, earlier), payload_type=63))
    assert (buffer.rebuilt, buffer.repaired, buffer.rejected) == (1, 1, 0)
    assert red.frames == plain.frames  # the very audio, not an estimate of it

    fec = Sink()
    fec_only = DecodingAudioBuffer({111}, fec)
    for seq, packet in enumerate(speech_packets[: k + 2]):
        if seq != k:
            fec_only.add(rtp(seq, packet))
    assert error_db(fec.frames[k], plain.frames[k]) > -60, "without RED the frame is only estimated"


def test_two_lost_in_a_row_the_older_is_concealed_and_plain_opus_still_decodes(
    speech_packets: list[bytes],
) -> None:
    sink = Sink()
    buffer = DecodingAudioBuffer({111}, sink, red_types={63: 111})
    for seq in (0, 1, 4):  # 2 and 3 lost; 4 carries 3 again
        buffer.add(
            rtp(seq, join_red(111, speech_packets[seq], [(960, speech_packets[seq - 1])]), payload_type=63)
        )
    buffer.add(rtp(5, speech_packets[5]))  # a plain Opus packet from the same sender
    buffer.add(rtp(6, join_red(120, speech_packets[6], []), payload_type=63))  # RED of another codec
    assert (buffer.rebuilt, buffer.repaired, buffer.rejected) == (1, 2, 1)
    assert len(sink.frames) == 6
    assert OpusDecoder().decode(speech_packets[0]) == sink.frames[0]


def test_the_bench_browser_offers_red_after_opus_and_sends_it_only_when_answered_first() -> None:
    offer = offer_red(AIORTC_ANSWER)
    assert offer.split("\r\n")[1] == "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 0 8"
    assert red_payload_types(offer) == {63: 111}
    assert red_first(accept_red(AIORTC_ANSWER, {63: 111})) == 63
    assert red_first(offer) is None  # RED after Opus: the browser keeps sending plain Opus


def test_the_bench_browser_wraps_each_packet_with_the_one_before() -> None:
    wrap = RedWrapper(63).wrap
    first, second = rtp(7, b""), rtp(8, b"")
    first.payload, second.payload = b"frame seven", b"frame eight"
    header = bytes(first.serialize())[:12]
    assert header[1] & 0x7F == 111
    out = [wrap(bytes(p.serialize())) for p in (first, second)]
    assert [o[1] & 0x7F for o in out] == [63, 63]
    assert split_red(out[0][12:]) == split_red(join_red(111, b"frame seven", []))
    again = split_red(out[1][12:])
    assert again is not None and again.earlier == ((111, 960, b"frame seven"),)
    assert again.primary == b"frame eight"
