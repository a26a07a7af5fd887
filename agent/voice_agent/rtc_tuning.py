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

from aiortc.jitterbuffer import JitterBuffer

log = logging.getLogger(__name__)

_ATTR = "_RTCRtpReceiver__jitter_buffer"
_CAPACITY = 16
_warned = False


def set_audio_prefetch(receiver: Any, frames: int) -> bool:
    """Replace an audio receiver's jitter buffer before media flows; True if it took effect."""
    global _warned
    if getattr(receiver, "_RTCRtpReceiver__kind", "audio") != "audio":
        return False
    if not hasattr(receiver, _ATTR):
        if not _warned:
            _warned = True
            log.warning("aiortc receiver has no jitter buffer attribute; keeping its default prefetch")
        return False
    setattr(receiver, _ATTR, JitterBuffer(capacity=_CAPACITY, prefetch=frames))
    return True


def tune_receivers(pc: Any, frames: int) -> int:
    """Apply `set_audio_prefetch` to every audio receiver of a peer connection."""
    return sum(set_audio_prefetch(t.receiver, frames) for t in pc.getTransceivers() if t.kind == "audio")


def current_prefetch(receiver: Any) -> int | None:
    buffer = getattr(receiver, _ATTR, None)
    return None if buffer is None else int(buffer._prefetch)
