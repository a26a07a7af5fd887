"""The agent's outbound track through real aiortc peers on loopback, across a stalled event loop:
what a receiver's jitter buffer sees in the RTP timestamps (media/track.py)."""

from __future__ import annotations

import asyncio
import itertools
import time

import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from tests.support.waits import until
from voice_agent.media.ice import LOOPBACK_ONLY, gathering_with
from voice_agent.media.receive import set_audio_prefetch
from voice_agent.media.track import FRAME_BYTES, RESYNC_AFTER_S, AIGeneratedAudioTrack

pytestmark = pytest.mark.e2e

RATE = 48_000
TONE = (np.sin(np.arange(FRAME_BYTES // 2) / 4) * 12000).astype("<i2").tobytes()


class Ear:
    """Every decoded frame the receiving peer got: its RTP timestamp (as pts) and whether it is loud."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bool]] = []

    async def listen(self, track: MediaStreamTrack) -> None:
        while True:
            frame = await track.recv()
            pcm = frame.to_ndarray().astype(np.float32)
            self.frames.append((int(frame.pts or 0), float(np.abs(pcm).max()) > 3000))


async def connected(track: AIGeneratedAudioTrack) -> tuple[RTCPeerConnection, RTCPeerConnection, Ear]:
    sender, receiver, ear = RTCPeerConnection(), RTCPeerConnection(), Ear()
    sender.addTrack(track)
    receiver.on("track", lambda t: asyncio.ensure_future(ear.listen(t)))
    with gathering_with(LOOPBACK_ONLY):
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        for transceiver in receiver.getTransceivers():
            set_audio_prefetch(transceiver.receiver, 0)  # each packet as it comes: nothing reordered here
        await receiver.setLocalDescription(await receiver.createAnswer())
    await sender.setRemoteDescription(receiver.localDescription)
    await until(lambda: len(ear.frames) >= 5, timeout=20, what="audio at the receiving peer")
    return sender, receiver, ear


def stall(seconds: float) -> None:
    """Hold the event loop, as a long synchronous call would."""
    time.sleep(seconds)


def steps(ear: Ear, since: int) -> list[int]:
    """RTP timestamp steps between consecutive frames received since index `since`, in samples."""
    ts = [pts for pts, _ in ear.frames[since:]]
    return [b - a for a, b in itertools.pairwise(ts)]


async def test_after_a_stall_the_rtp_timestamps_skip_in_silence_and_speech_plays_on_whole() -> None:
    track = AIGeneratedAudioTrack("s", count_metrics=False)
    sender, receiver, ear = await connected(track)
    try:
        # Silence, then the loop held for 60 ms (less than a speech frame may fall behind): the frames
        # after it are stamped with when they are sent (a step of about the stall), not in sequence.
        mark = len(ear.frames)
        asyncio.get_running_loop().call_soon(stall, 0.06)
        await until(lambda: len(ear.frames) >= mark + 15, timeout=10, what="frames after the stall")
        assert max(steps(ear, mark)) >= 0.04 * RATE, steps(ear, mark)
        assert track.late_resyncs >= 1

        # Speech, then a hiccup shorter than RESYNC_AFTER_S: caught up, every timestamp in sequence,
        # every frame of the words received.
        resyncs, mark = track.late_resyncs, len(ear.frames)
        track.enqueue(1, 0, TONE * 50)
        await until(lambda: any(loud for _, loud in ear.frames[mark:]), timeout=10, what="speech")
        asyncio.get_running_loop().call_soon(stall, RESYNC_AFTER_S / 2)
        await until(lambda: not track.speaking, timeout=10, what="the speech sent")
        await until(
            lambda: len(ear.frames) >= mark + 55, timeout=10, what="the speech received, and silence after"
        )
        first_loud = next(i for i, (_, loud) in enumerate(ear.frames) if i >= mark and loud)
        if track.late_resyncs == resyncs:  # a busy test machine may add a stall of its own
            assert set(steps(ear, first_loud)[:49]) == {960}, steps(ear, first_loud)
        assert sum(loud for _, loud in ear.frames[mark:]) >= 49, "the words played on, none dropped"
    finally:
        await sender.close()
        await receiver.close()
