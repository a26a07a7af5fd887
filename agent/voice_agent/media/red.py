"""Audio redundancy (RED, RFC 2198) on the uplink: each packet also carries the frame before it.

A browser's Opus sends in-band FEC only once the receiver's reports show loss, so the first words of
a call have no protection, and a lost packet there is a lost sound the recognizer then mishears.
Chromium offers `red/48000/2` for Opus and sends it when the answer lists it first: every packet
then carries the previous frame in full as well, from the first packet on, and a packet lost alone
is rebuilt exactly when the next one arrives (at the moment FEC would have repaired it, so no wait
is added). It costs the uplink one more Opus frame per packet (about 32 kb/s). The agent accepts it
for receiving only; what it sends stays plain Opus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from voice_agent.protocol.signaling import opus_payload_types

_RED_RTPMAP = re.compile(r"^a=rtpmap:(\d+) red/48000/2\s*$", re.IGNORECASE | re.MULTILINE)
_FMTP = re.compile(r"^a=fmtp:(\d+) (\S+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class RedPacket:
    """A RED payload split: the primary Opus frame, and earlier frames as (timestamp offset, data)."""

    primary_type: int
    primary: bytes
    earlier: tuple[tuple[int, int, bytes], ...]  # (payload type, timestamp offset, data)


def split_red(payload: bytes) -> RedPacket | None:
    """The blocks of a RED payload; None when its headers do not add up."""
    headers: list[tuple[int, int, int]] = []
    i = 0
    while True:
        if i >= len(payload):
            return None
        first = payload[i]
        if not first & 0x80:  # the last header: the primary's payload type only
            primary_type = first & 0x7F
            i += 1
            break
        if i + 4 > len(payload):
            return None
        word = int.from_bytes(payload[i + 1 : i + 4], "big")
        headers.append((first & 0x7F, word >> 10, word & 0x3FF))
        i += 4
    earlier = []
    for block_type, offset, length in headers:
        if i + length > len(payload):
            return None
        earlier.append((block_type, offset, payload[i : i + length]))
        i += length
    return RedPacket(primary_type, payload[i:], tuple(earlier))


def join_red(primary_type: int, primary: bytes, earlier: list[tuple[int, bytes]]) -> bytes:
    """A RED payload (what a browser sends): `earlier` as (timestamp offset, data), oldest first."""
    head = bytearray()
    for offset, data in earlier:
        if offset >= 1 << 14 or len(data) >= 1 << 10:
            raise ValueError("a RED block's offset or length is out of range")
        head.append(0x80 | primary_type)
        head += ((offset << 10) | len(data)).to_bytes(3, "big")
    head.append(primary_type)
    return bytes(head) + b"".join(data for _, data in earlier) + primary


def red_payload_types(sdp: str) -> dict[int, int]:
    """RED payload types of an SDP that carry only Opus, each with its Opus payload type."""
    opus = opus_payload_types(sdp)
    fmtp = {int(pt): value for pt, value in _FMTP.findall(sdp)}
    found: dict[int, int] = {}
    for pt in map(int, _RED_RTPMAP.findall(sdp)):
        blocks = fmtp.get(pt, "").split("/")
        if blocks[0].isdigit() and int(blocks[0]) in opus and len(set(blocks)) == 1:
            found[pt] = int(blocks[0])
    return found


def add_red(sdp: str, red_pt: int, opus_pt: int, first: bool) -> str:
    """The SDP with RED for `opus_pt` on its audio line: first on the line (an answer asking a
    browser to send it) or just after that Opus (an offer, as Chromium makes one)."""
    lines = sdp.split("\r\n")
    for i, line in enumerate(lines):
        if not line.startswith("m=audio "):
            continue
        fields = line.split(" ")
        at = 3 if first else fields.index(str(opus_pt), 3) + 1
        lines[i] = " ".join([*fields[:at], str(red_pt), *fields[at:]])
        rtpmap = next(
            (j + 1 for j in range(i + 1, len(lines)) if lines[j].startswith(f"a=rtpmap:{opus_pt} ")), i + 1
        )
        lines[rtpmap:rtpmap] = [f"a=rtpmap:{red_pt} red/48000/2", f"a=fmtp:{red_pt} {opus_pt}/{opus_pt}"]
        return "\r\n".join(lines)
    return sdp


def accept_red(answer: str, red: dict[int, int]) -> str:
    """The answer with the offer's RED for Opus, listed first on the audio line (a browser sends RED
    only when it comes before the codec it carries). Unchanged when the answer has not that Opus."""
    audio = next((line for line in answer.split("\r\n") if line.startswith("m=audio ")), None)
    if audio is None:
        return answer
    types = audio.split(" ")[3:]
    usable = [(r, o) for r, o in red.items() if str(o) in types and str(r) not in types]
    return add_red(answer, *usable[0], first=True) if usable else answer
