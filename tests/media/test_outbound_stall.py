"""The agent's outbound track through real aiortc peers on loopback, across a stalled event loop:
what a receiver's jitter buffer sees in the RTP timestamps (media/track.py)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Any

import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket

from tests.support.waits import until
from voice_agent.media.ice import LOOPBACK_ONLY, gathering_with
from voice_agent.media.receive import ImmediateAudioBuffer, install_buffer
from voice_agent.media.track import FRAME_BYTES, RESYNC_AFTER_S, RESYNC_SILENCE_AFTER_S, AIGeneratedAudioTrack

pytestmark = pytest.mark.e2e

RATE = 48_000
TONE = (np.sin(np.arange(FRAME_BYTES // 2) / 4) * 12000).astype("<i2").tobytes()


class TimedTrack(AIGeneratedAudioTrack):
    """The agent's track, noting how late each frame leaves it for aiortc's sender by its own stamp."""

    def __init__(self) -> None:
        super().__init__("s", count_metrics=False)
        self.lateness: list[float] = []

    async def recv(self) -> Any:
        packet = await super().recv()
        assert self._start is not None
        self.lateness.append(time.monotonic() - self._start - self._pts / RATE)
        return packet


class Ear(ImmediateAudioBuffer):
    """The receiving peer's buffer: each packet's RTP timestamp as it arrives, and (from the decoded
    track) whether each frame is loud."""

    def __init__(self) -> None:
        super().__init__()
        self.stamps: list[int] = []
        self.loud: list[bool] = []

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        self.stamps.append(packet.timestamp)
        return super().add(packet)

    async def listen(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):  # the peer closed
            while True:
                frame = await track.recv()
                self.loud.append(float(np.abs(frame.to_ndarray()).max()) > 3000)


async def connected(track: AIGeneratedAudioTrack) -> tuple[RTCPeerConnection, RTCPeerConnection, Ear]:
    sender, receiver, ear = RTCPeerConnection(), RTCPeerConnection(), Ear()
    sender.addTrack(track)
    receiver.on("track", lambda t: asyncio.ensure_future(ear.listen(t)))
    with gathering_with(LOOPBACK_ONLY):
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        for transceiver in receiver.getTransceivers():
            assert install_buffer(transceiver.receiver, ear)
        await receiver.setLocalDescription(await receiver.createAnswer())
    await sender.setRemoteDescription(receiver.localDescription)
    await until(lambda: len(ear.stamps) >= 5, timeout=20, what="audio at the receiving peer")
    return sender, receiver, ear


def stall(seconds: float) -> None:
    """Hold the event loop, as a long synchronous call would."""
    time.sleep(seconds)


def steps(ear: Ear, since: int) -> list[int]:
    """RTP timestamp steps between consecutive packets, from the one before index `since`, in samples."""
    return [(b - a) & 0xFFFFFFFF for a, b in itertools.pairwise(ear.stamps[max(since - 1, 0) :])]


async def test_after_a_stall_the_rtp_timestamps_skip_in_silence_and_speech_plays_on_whole() -> None:
    track = TimedTrack()
    sender, receiver, ear = await connected(track)
    try:
        # Silence, then the loop held for 80 ms (while the track sleeps to its next slot, as it mostly
        # is): the frames after it are stamped with when they are sent, not in sequence behind it.
        await until(lambda: len(ear.stamps) >= 25, timeout=10, what="a steady stream")
        mark, sent = len(ear.stamps), len(track.lateness)
        asyncio.get_running_loop().call_soon(stall, 0.08)
        await until(lambda: len(ear.stamps) >= mark + 15, timeout=10, what="packets after the stall")
        assert max(steps(ear, mark)) >= 0.04 * RATE, steps(ear, mark)
        # The frame that slept through the stall too; the slack is this machine's, between two lines.
        assert max(track.lateness[sent:]) < RESYNC_SILENCE_AFTER_S + 0.02, track.lateness[sent:]

        # Speech, then a hiccup shorter than RESYNC_AFTER_S: caught up, every timestamp in sequence,
        # every frame of the words received.
        resyncs, mark, heard = track.late_resyncs, len(ear.stamps), len(ear.loud)
        track.enqueue(1, 0, TONE * 50)
        asyncio.get_running_loop().call_later(0.3, stall, RESYNC_AFTER_S / 2)
        await until(lambda: not track.speaking, timeout=10, what="the speech sent")
        await until(lambda: len(ear.stamps) >= mark + 55, timeout=10, what="the speech received")
        if track.late_resyncs == resyncs:  # a busy test machine may add a stall of its own
            assert set(steps(ear, mark)) == {960}, steps(ear, mark)
        await until(lambda: sum(ear.loud[heard:]) >= 49, timeout=10, what="the words played on, none dropped")
    finally:
        await sender.close()
        await receiver.close()
