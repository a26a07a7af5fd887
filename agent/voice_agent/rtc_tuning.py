"""Receive-side latency: shrink aiortc's audio jitter buffer where a machine is the listener.

aiortc holds 4 complete Opus frames before releasing one (prefetch=4), i.e. ~100 ms of added delay
on every received stream, sized for human playout. The agent does not play audio out: VAD and STT
consume frames as they come, so that buffer only delays end-of-turn detection and barge-in. We keep
the buffer (it still reorders) and lower its prefetch. aiortc has no public knob for this, so the
swap is guarded: if a future aiortc renames the attribute, we log once and keep its default.
"""

from __future__ import annotations

import logging
from typing import Any

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

log = logging.getLogger(__name__)

_ATTR = "_RTCRtpReceiver__jitter_buffer"
_CAPACITY = 16
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


def set_audio_prefetch(receiver: Any, frames: int) -> bool:
    """Replace an audio receiver's jitter buffer before media flows; True if it took effect.

    0 frames: `ImmediateAudioBuffer`; more: aiortc's own buffer holding that many frames."""
    global _warned
    if getattr(receiver, "_RTCRtpReceiver__kind", "audio") != "audio":
        return False
    if not hasattr(receiver, _ATTR):
        if not _warned:
            _warned = True
            log.warning("aiortc receiver has no jitter buffer attribute; keeping its default prefetch")
        return False
    buffer = ImmediateAudioBuffer() if frames == 0 else JitterBuffer(capacity=_CAPACITY, prefetch=frames)
    setattr(receiver, _ATTR, buffer)
    return True


def tune_receivers(pc: Any, frames: int) -> int:
    """Apply `set_audio_prefetch` to every audio receiver of a peer connection."""
    return sum(set_audio_prefetch(t.receiver, frames) for t in pc.getTransceivers() if t.kind == "audio")


def current_prefetch(receiver: Any) -> int | None:
    buffer = getattr(receiver, _ATTR, None)
    if buffer is None:
        return None
    return 0 if isinstance(buffer, ImmediateAudioBuffer) else int(buffer._prefetch)
