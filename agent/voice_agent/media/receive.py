"""Receive side where a machine is the listener: no playout buffer, and losses repaired by libopus.

aiortc holds 4 complete Opus frames before releasing one (prefetch=4), i.e. ~100 ms of added delay
on every received stream, sized for human playout, and waits up to 320 ms for a missing packet. The
agent does not play audio out: VAD and STT consume frames as they come, so that buffer only delays
end-of-turn detection and barge-in. The agent's receivers get `DecodingAudioBuffer` instead, which
decodes each packet on arrival and repairs losses with Opus FEC/PLC; the test client, which only
records, gets `ImmediateAudioBuffer`. aiortc has no public knob for its buffer, so the swap is
guarded: if a future aiortc renames the attribute, we log once and keep its default.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

from voice_agent.media.audio import PIPELINE_RATE, frame_bytes
from voice_agent.media.opus import OpusDecoder, OpusError
from voice_agent.media.red import split_red
from voice_agent.protocol.signaling import OPUS_RTPMAP, opus_payload_types
from voice_agent.telemetry import metrics

log = logging.getLogger(__name__)

_ATTR = "_RTCRtpReceiver__jitter_buffer"
_CAPACITY = 16
_RESTART_AFTER = 50  # packets (1 s) behind the newest: not late any more, a restarted sequence
RTP_RATE = 48_000  # Opus' RTP clock, whatever the rate it is decoded at
_warned = False


class ImmediateAudioBuffer:
    """Prefetch 0 done right for a listener that does not play out: every packet is released the
    moment it arrives. A packet older than one already released (late or duplicate) is dropped,
    and a gap is a loss the pipeline conceals (peer.py), never a wait: aiortc's buffer waits for a
    missing packet until 16 later ones have arrived (320 ms), then lags behind for good.
    """

    capacity = _CAPACITY

    def __init__(self) -> None:
        self._next: int | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        seq = packet.sequence_number
        if self._next is not None and (seq - self._next) & 0xFFFF >= 0x8000:
            return False, None
        self._next = (seq + 1) & 0xFFFF
        data: bytes = getattr(packet, "_data", b"")
        return False, JitterFrame(data=data, timestamp=packet.timestamp)


class DecodingAudioBuffer:
    """Stands in for an audio receiver's jitter buffer and decodes every Opus packet the moment it
    arrives, straight to 16 kHz mono 20 ms slices for `on_pcm`; aiortc's decoder thread is not
    started for it (media/peer.py).

    A gap in sequence numbers is repaired before the packet that ends it is decoded: the last
    lost packet from that packet's in-band FEC, any before it by PLC. A gap longer than
    `max_repair` packets is a stall, not a loss, and is not papered over with invented audio. A
    late or duplicate packet is dropped (its time has passed); a packet that is not valid Opus,
    or of another payload type, counts as lost. A new SSRC, or a packet from more than a second
    "in the past", is a restarted stream: it starts a new sequence rather than being dropped
    until the numbers catch up. A RED packet (`red_types`, media/red.py) is decoded by its Opus
    frame, and the earlier frames it carries rebuild lost packets exactly before FEC or PLC is
    tried.
    """

    capacity = _CAPACITY

    def __init__(
        self,
        opus_payload_types: set[int],
        on_pcm: Callable[[bytes], None],
        max_repair: int = 5,
        rate: int = PIPELINE_RATE,
        red_types: dict[int, int] | None = None,
    ) -> None:
        self._types = frozenset(opus_payload_types)
        self._red = frozenset(red_types or ())
        self._rate = rate
        self._on_pcm = on_pcm
        self._decoder = OpusDecoder(rate, 1)
        self._max_repair = max_repair
        self._slice = frame_bytes(rate)
        self._pending = bytearray()
        self._next: int | None = None
        self._ssrc: int | None = None
        self.repaired = 0
        self.rebuilt = 0  # of those repaired: from a RED packet's earlier frame
        self.rejected = 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        if self._decoder.closed:
            return False, None
        seq = packet.sequence_number
        if packet.ssrc != self._ssrc:
            self._ssrc, self._next = packet.ssrc, None
        gap = 0 if self._next is None else (seq - self._next) & 0xFFFF
        if gap >= 0x8000:
            if 0x10000 - gap <= _RESTART_AFTER:
                return False, None
            gap = 0
        data: bytes = getattr(packet, "_data", b"")
        earlier: tuple[tuple[int, int, bytes], ...] = ()
        if packet.payload_type in self._red:
            red = split_red(data)
            if red is None or red.primary_type not in self._types:
                self.rejected += 1
                return False, None
            data, earlier = red.primary, red.earlier
        elif packet.payload_type not in self._types:
            self.rejected += 1
            return False, None
        if not self._valid(data):
            self.rejected += 1
            return False, None
        self._next = (seq + 1) & 0xFFFF
        if 0 < gap <= self._max_repair:
            self._repair(gap, data, earlier)
        self._emit(self._decoder.decode(data))
        return False, None

    def _repair(self, gap: int, data: bytes, earlier: tuple[tuple[int, int, bytes], ...]) -> None:
        """The `gap` packets lost before `data`, oldest first: a frame the packet carries again (RED:
        the lost packet itself), else the last one from `data`'s in-band FEC, else PLC."""
        ticks = self._decoder.samples_in(data) * RTP_RATE // self._rate  # RTP clock per frame
        again = {offset: block for pt, offset, block in earlier if pt in self._types and self._valid(block)}
        for back in range(gap, 0, -1):
            block = again.get(back * ticks)
            if block is not None:
                self._emit(self._decoder.decode(block))
                self.rebuilt += 1
                metrics.INBOUND_REBUILT.inc()
            elif back == 1:
                self._emit(self._decoder.recover(data))
            else:
                self._emit(self._decoder.conceal())
        self.repaired += gap
        metrics.INBOUND_CONCEALED.inc(gap)

    def _valid(self, data: bytes) -> bool:
        try:
            return bool(data) and self._decoder.samples_in(data) > 0
        except OpusError:
            return False

    def _emit(self, pcm: bytes) -> None:
        self._pending += pcm
        while len(self._pending) >= self._slice:
            self._on_pcm(bytes(self._pending[: self._slice]))
            del self._pending[: self._slice]

    def close(self) -> None:
        self._decoder.close()


_FMTP = re.compile(r"^a=fmtp:(\d+) ")


def advertise_inband_fec(sdp: str) -> str:
    """Say `useinbandfec=1` for every Opus payload type of our SDP, which aiortc leaves out.

    RFC 7587: without it a sender may assume the receiver ignores FEC, and browsers then send none,
    so the agent, which uses FEC to repair what it hears, has to ask for it."""
    types = opus_payload_types(sdp)
    lines = sdp.split("\r\n")
    has_fmtp = {int(m.group(1)) for m in map(_FMTP.match, lines) if m}
    out: list[str] = []
    for line in lines:
        fmtp = _FMTP.match(line)
        if fmtp and int(fmtp.group(1)) in types and "useinbandfec" not in line:
            line += ";useinbandfec=1"
        out.append(line)
        match = OPUS_RTPMAP.match(line)
        if match and int(match.group(1)) not in has_fmtp:
            out.append(f"a=fmtp:{match.group(1)} useinbandfec=1")
    return "\r\n".join(out)


def install_buffer(receiver: Any, buffer: object) -> bool:
    """Put `buffer` in place of an audio receiver's jitter buffer before media flows; True if it
    took effect."""
    global _warned
    if getattr(receiver, "_RTCRtpReceiver__kind", "audio") != "audio":
        return False
    if not hasattr(receiver, _ATTR):
        if not _warned:
            _warned = True
            log.warning("aiortc receiver has no jitter buffer attribute; keeping its default")
        return False
    setattr(receiver, _ATTR, buffer)
    return True


def set_audio_prefetch(receiver: Any, frames: int) -> bool:
    """Replace an audio receiver's jitter buffer before media flows; True if it took effect.

    0 frames: `ImmediateAudioBuffer`; more: aiortc's own buffer holding that many frames."""
    buffer = ImmediateAudioBuffer() if frames == 0 else JitterBuffer(capacity=_CAPACITY, prefetch=frames)
    return install_buffer(receiver, buffer)


def tune_receivers(pc: Any, frames: int) -> int:
    """Apply `set_audio_prefetch` to every audio receiver of a peer connection."""
    return sum(set_audio_prefetch(t.receiver, frames) for t in pc.getTransceivers() if t.kind == "audio")


def current_prefetch(receiver: Any) -> int | None:
    buffer = getattr(receiver, _ATTR, None)
    if buffer is None:
        return None
    return 0 if isinstance(buffer, ImmediateAudioBuffer | DecodingAudioBuffer) else int(buffer._prefetch)
