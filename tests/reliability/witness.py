"""A real call that runs beside hostile traffic and proves it was not disturbed.

It lives on its own thread and event loop, so it keeps receiving while a test blocks, fuzzes
or floods from the main thread; loss is read from RTP sequence numbers (inbound-rtp stats), not
guessed from timing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from tests.support.speech import overlap, synth
from voice_agent.testing.client import VoiceClient

T = TypeVar("T")
FRAMES_PER_S = 50


@dataclass(frozen=True)
class Flow:
    at: float
    frames: int
    packets: int
    lost: int


class Witness:
    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="witness-call", daemon=True)
        self._thread.start()
        self.client = VoiceClient(url)
        self.run(self._connect(), 60)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _connect(self) -> None:
        await self.client.create_session()
        await self.client.connect()
        await self.client.wait_media(timeout=30)

    async def _flow(self) -> Flow:
        assert self.client.pc is not None
        report = await self.client.pc.getStats()
        inbound = [s for s in report.values() if s.type == "inbound-rtp"]
        return Flow(
            time.monotonic(),
            self.client.frames_received,
            sum(s.packetsReceived for s in inbound),
            sum(s.packetsLost for s in inbound),
        )

    def flow(self) -> Flow:
        return self.run(self._flow())

    def assert_undisturbed(self, since: Flow) -> Flow:
        """No RTP packet of the agent's audio lost since `since`, and audio kept arriving."""
        now = self.flow()
        elapsed = now.at - since.at
        assert now.lost == since.lost, f"{now.lost - since.lost} packets lost during the attack"
        # Audio keeps coming (the agent sends 50 frames/s, silence included); half is a floor that
        # only a stalled call misses, timing quality itself is measured by bench/soak.py.
        assert now.frames - since.frames >= elapsed * FRAMES_PER_S * 0.5, (since, now)
        assert now.packets - since.packets >= elapsed * FRAMES_PER_S * 0.5, (since, now)
        return now

    async def _turn(self) -> str:
        mark = len(self.client.events)
        pcm, rate = synth("hello, what time is it")
        self.client.say(pcm, rate)
        final = await self.client.wait_for(
            lambda e: e["type"] == "transcript" and e["final"], timeout=30, after=mark
        )
        assert overlap("time is it", final["text"]) >= 0.66, final
        reply = await self.client.wait_for(
            lambda e: e["type"] == "ai_response" and e["final"], timeout=30, after=mark
        )
        return str(reply["text"])

    def spoken_turn(self) -> str:
        """A whole spoken turn still works: speech in, transcript, reply."""
        return self.run(self._turn(), 90)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self.run(self.client.close(), 15)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
