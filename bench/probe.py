"""A measuring peer that shares no audio code with the product.

The benchmarks time the agent from outside. If they used the product's own client (its outbound
track, its Opus encoder, its pacing), a bug on both sides could cancel out. This peer is built
from aiortc and PyAV alone: its microphone is a plain track that hands aiortc 20 ms PCM frames on
an absolute clock (aiortc encodes them), and its ear timestamps every decoded frame it receives.
It speaks the documented protocol (docs/api.md) with httpx and websockets; the only product code
it uses is the documented ICE setting (`gathering_with`), to keep its media on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import av
import httpx
import numpy as np
import websockets
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from voice_agent.media.ice import gathering_with
from voice_agent.settings import load_settings

RATE = 48_000
SAMPLES = RATE // 50  # 20 ms
FRAME_BYTES = SAMPLES * 2
LOUD_DBFS = -50.0


def resample(pcm: bytes, rate: int) -> bytes:
    """s16 mono at `rate` -> 48 kHz, by PyAV's resampler (not the product's wrapper)."""
    if rate == RATE:
        return pcm
    frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, "<i2").reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    out = b"".join(bytes(f.planes[0])[: f.samples * 2] for f in resampler.resample(frame))
    return out + b"".join(bytes(f.planes[0])[: f.samples * 2] for f in resampler.resample(None))


def loud(pcm: bytes) -> bool:
    arr = np.frombuffer(pcm, "<i2").astype(np.float32)
    rms = float(np.sqrt(np.mean(arr * arr))) if arr.size else 0.0
    return rms > 0 and 20 * math.log10(rms / 32768.0) > LOUD_DBFS


class Mouth(MediaStreamTrack):
    """The probe's microphone: queued utterances, silence between them, one frame per 20 ms slot."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[tuple[int, bytes]] = deque()
        self._start: float | None = None
        self._pts = 0
        self.sent: dict[int, list[float]] = {}  # utterance -> send time of each of its frames

    def say(self, uid: int, pcm48: bytes) -> None:
        for i in range(0, len(pcm48), FRAME_BYTES):
            self._queue.append((uid, pcm48[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\0")))

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._pts += SAMPLES
            wait = self._start + self._pts / RATE - now
            if wait > 0:
                await asyncio.sleep(wait)
        uid, pcm = self._queue.popleft() if self._queue else (0, bytes(FRAME_BYTES))
        if uid:
            self.sent.setdefault(uid, []).append(time.monotonic())
        frame = av.AudioFrame(format="s16", layout="mono", samples=SAMPLES)
        frame.planes[0].update(pcm)
        frame.pts, frame.sample_rate, frame.time_base = self._pts, RATE, fractions.Fraction(1, RATE)
        return frame


@dataclass
class Ear:
    """Every decoded frame the probe received: arrival time and whether it was loud."""

    frames: list[tuple[float, bool]] = field(default_factory=list)

    def first_loud_after(self, t: float) -> float | None:
        return next((at for at, is_loud in self.frames if at >= t and is_loud), None)

    def loud_between(self, start: float, end: float) -> list[float]:
        return [at for at, is_loud in self.frames if start <= at <= end and is_loud]


class Probe:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.mouth = Mouth()
        self.ear = Ear()
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._uid = 0
        self.pc = RTCPeerConnection()
        self.ws: Any = None

    async def open(self) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            resp = await http.post("/v2/sessions")
            resp.raise_for_status()
            sid = resp.json()["id"]
        self.ws = await websockets.connect(self.base_url.replace("http", "ws", 1) + f"/ws/v2/{sid}")
        self._tasks.append(asyncio.create_task(self._read()))
        self.pc.addTrack(self.mouth)
        # One frame of receive buffer, what a browser's adaptive buffer settles at on a LAN; aiortc's
        # default holds four (80 ms) before it releases any audio, which a person would not hear.
        for transceiver in self.pc.getTransceivers():
            transceiver.receiver._RTCRtpReceiver__jitter_buffer = JitterBuffer(capacity=16, prefetch=1)
        self.pc.on("track", lambda track: self._tasks.append(asyncio.create_task(self._listen(track))))
        with gathering_with(load_settings().ice_policy):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.ws.send(json.dumps({"type": "offer", "sdp": self.pc.localDescription.sdp}))
        answer = await self.wait_for(lambda e: e["type"] in ("answer", "error"), timeout=15)
        if answer["type"] == "error":
            raise RuntimeError(f"offer refused: {answer}")
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        deadline = time.monotonic() + 20
        while self.pc.connectionState != "connected":
            if time.monotonic() > deadline:
                raise TimeoutError(f"media not connected: {self.pc.connectionState}")
            await asyncio.sleep(0.02)

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                event = json.loads(raw)
                event["_at"] = time.monotonic()
                self.events.append(event)
                self._changed.set()

    async def _listen(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                at = time.monotonic()
                for out in resampler.resample(frame):  # type: ignore[arg-type]
                    self.ear.frames.append((at, loud(bytes(out.planes[0])[: out.samples * 2])))

    async def wait_for(self, pred: Any, timeout: float, after: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events[after:]:
                if pred(event):
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching event within {timeout}s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def say(self, pcm: bytes, rate: int) -> int:
        self._uid += 1
        self.mouth.say(self._uid, resample(pcm, rate))
        return self._uid

    async def sent(self, uid: int, frames: int, timeout: float = 30.0) -> list[float]:
        """Send times of the utterance's frames, once all `frames` of them went out."""
        deadline = time.monotonic() + timeout
        while len(self.mouth.sent.get(uid, [])) < frames:
            if time.monotonic() > deadline:
                raise TimeoutError("utterance not sent in time")
            await asyncio.sleep(0.01)
        return self.mouth.sent[uid]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
