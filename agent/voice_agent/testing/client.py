"""A Python voice client for the agent: the same protocol a browser speaks, over aiortc.

Used by the end-to-end tests, the benchmarks and the load generator, and usable against any
deployment: create a session over HTTP, signal over the WebSocket, send speech from PCM, and
record the agent's audio with arrival times (for latency and for transcription).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import websockets
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from voice_agent.media.audio import OUTPUT_RATE, PcmResampler, frame_bytes
from voice_agent.media.ice import HostCandidatePolicy, gathering_with, scope_of, selected_pair
from voice_agent.media.receive import tune_receivers
from voice_agent.media.track import AIGeneratedAudioTrack
from voice_agent.protocol.signaling import parse_candidate
from voice_agent.settings import load_settings

SILENCE_DBFS = -50.0


@dataclass
class ReceivedFrame:
    at: float
    pcm: bytes  # 48 kHz mono s16
    voiced: bool


@dataclass
class Recording:
    frames: list[ReceivedFrame] = field(default_factory=list)

    def first_voiced_after(self, t: float) -> float | None:
        for f in self.frames:
            if f.at >= t and f.voiced:
                return f.at
        return None

    def last_voiced(self) -> float | None:
        for f in reversed(self.frames):
            if f.voiced:
                return f.at
        return None

    def pcm_between(self, start: float, end: float | None = None) -> bytes:
        return b"".join(f.pcm for f in self.frames if f.at >= start and (end is None or f.at <= end))

    def voiced_frames_after(self, t: float) -> int:
        return sum(1 for f in self.frames if f.at >= t and f.voiced)


def _loud(pcm: bytes) -> bool:
    arr = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    if arr.size == 0:
        return False
    rms = float(np.sqrt(np.mean(arr * arr)))
    return rms > 0 and 20 * np.log10(rms / 32768.0) > SILENCE_DBFS


class VoiceClient:
    def __init__(
        self,
        base_url: str,
        ice_servers: list[dict[str, Any]] | None = None,
        relay_only: bool = False,
        headers: dict[str, str] | None = None,
        jitter_frames: int = 1,
        record: bool = True,
        host_candidates: HostCandidatePolicy | None = None,
    ) -> None:
        # Load generators turn recording off: decoding is still done, analysis is not.
        self.record = record
        self.frames_received = 0
        # One frame of receive buffer: about what a browser's adaptive buffer settles at on a LAN.
        self.jitter_frames = jitter_frames
        self.base_url = base_url.rstrip("/")
        self.ice_servers = ice_servers
        self.relay_only = relay_only
        # By default the client gathers where the VOICE_ICE_* settings say, as the agent does: a test
        # run or a load generator with VOICE_ICE_ADDRESSES=127.0.0.1 keeps both ends on loopback.
        self.host_candidates = host_candidates if host_candidates is not None else load_settings().ice_policy
        self.headers = headers or {}
        self.session: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.recording = Recording()
        self.speaker = AIGeneratedAudioTrack("client", count_metrics=False)
        self.pc: RTCPeerConnection | None = None
        self.ws: Any = None
        self.close_code: int | None = None
        self._new_event = asyncio.Condition()
        self._tasks: list[asyncio.Task[Any]] = []
        self._speech_end: dict[int, float] = {}
        self._speech_start: dict[int, float] = {}
        self._utterances = 0
        self.speaker.on_played = self._played

    # --- HTTP ---------------------------------------------------------------------------------
    async def create_session(self) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=10) as http:
            resp = await http.post("/v2/sessions")
            resp.raise_for_status()
            self.session = resp.json()
        return self.session

    # --- signaling ----------------------------------------------------------------------------
    async def connect(self, session_id: str | None = None, negotiate: bool = True) -> None:
        sid = session_id or self.session["id"]
        ws_url = self.base_url.replace("http://", "ws://").replace("https://", "wss://") + f"/ws/v2/{sid}"
        self.ws = await websockets.connect(ws_url, max_size=2**20)
        self._tasks.append(asyncio.create_task(self._read_ws()))
        if negotiate:
            await self.negotiate()

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(msg))

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def _read_ws(self) -> None:
        try:
            async for raw in self.ws:
                event = json.loads(raw)
                event["_at"] = time.monotonic()
                if event.get("type") == "ice-candidate" and self.pc is not None:
                    with contextlib.suppress(Exception):
                        await self.pc.addIceCandidate(parse_candidate(event))
                async with self._new_event:
                    self.events.append(event)
                    self._new_event.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            async with self._new_event:
                self._new_event.notify_all()

    async def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0, after: int = 0
    ) -> dict[str, Any]:
        """First event (from index `after`) matching pred; bounded wait, no polling sleeps."""
        deadline = time.monotonic() + timeout
        async with self._new_event:
            while True:
                for ev in self.events[after:]:
                    if pred(ev):
                        return ev
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.close_code is not None:
                    types = [e.get("type") for e in self.events[after:]][-20:]
                    raise TimeoutError(
                        f"no matching event within {timeout}s (closed={self.close_code}); saw {types}"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._new_event.wait(), remaining)

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._tasks[0]), timeout)
        return self.close_code

    # --- media --------------------------------------------------------------------------------
    async def negotiate(self) -> None:
        if self.pc is not None:
            await self.pc.close()
            self.speaker = _fresh_speaker(self.speaker, self._played)
        servers = self.ice_servers if self.ice_servers is not None else self.session.get("ice_servers", [])
        # Relay-only gathers TURN candidates alone, as a browser with iceTransportPolicy "relay" does:
        # a host candidate, even left out of the offer, could still pair with the agent's relay.
        config = RTCConfiguration(
            iceServers=[
                RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
                for s in servers
            ]
            or None,
            iceTransportPolicy=RTCIceTransportPolicy.RELAY if self.relay_only else RTCIceTransportPolicy.ALL,
        )
        self.pc = RTCPeerConnection(config)
        self.pc.addTrack(self.speaker)
        self.pc.on("track", self._on_track)
        tune_receivers(self.pc, self.jitter_frames)
        with gathering_with(self.host_candidates):
            offer = await self.pc.createOffer()
            await self.pc.setLocalDescription(offer)
        sdp = self.pc.localDescription.sdp
        mark = len(self.events)
        await self.send({"type": "offer", "sdp": sdp})
        answer = await self.wait_for(lambda e: e.get("type") in ("answer", "error"), timeout=15, after=mark)
        if answer["type"] == "error":
            raise RuntimeError(f"offer rejected: {answer}")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    async def wait_media(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.pc is None or self.pc.connectionState != "connected":
            if time.monotonic() > deadline:
                raise TimeoutError(f"media not connected: {self.pc and self.pc.connectionState}")
            await asyncio.sleep(0.02)

    def media_path(self) -> tuple[str, str] | None:
        """Where the selected pair's (local, remote) addresses live: loopback, private or public."""
        pair = selected_pair(self.pc) if self.pc is not None else None
        return None if pair is None else (scope_of(pair[0].host), scope_of(pair[1].host))

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._tasks.append(asyncio.create_task(self._record(track)))

    async def _record(self, track: MediaStreamTrack) -> None:
        import av

        resampler = av.AudioResampler(format="s16", layout="mono", rate=OUTPUT_RATE)
        try:
            while True:
                frame = await track.recv()
                self.frames_received += 1
                if not self.record:
                    continue
                now = time.monotonic()
                for out in resampler.resample(frame):  # type: ignore[arg-type]
                    pcm = bytes(out.planes[0])[: out.samples * 2]
                    self.recording.frames.append(ReceivedFrame(now, pcm, _loud(pcm)))
        except MediaStreamError:
            return

    async def wait_voiced(self, frames: int, after: float, timeout: float = 10.0) -> float:
        """Until `frames` voiced frames arrived after `after`; returns when the last one came."""
        deadline = time.monotonic() + timeout
        while self.recording.voiced_frames_after(after) < frames:
            if time.monotonic() > deadline:
                got = self.recording.voiced_frames_after(after)
                raise TimeoutError(f"{got}/{frames} voiced frames within {timeout}s")
            await asyncio.sleep(0.02)
        return self.recording.frames[-1].at

    def say(self, pcm: bytes, rate: int) -> int:
        """Queue speech (s16 mono at `rate`); returns an utterance id for `speech_ended`."""
        resampler = PcmResampler(rate, OUTPUT_RATE)
        out = resampler.resample(pcm) + resampler.flush()
        self._utterances += 1
        uid = self._utterances
        self.speaker.enqueue(0, uid, out)
        self._remaining = getattr(self, "_remaining", {})
        self._remaining[uid] = len(out)
        return uid

    def _played(self, turn: int, index: int, nbytes: int) -> None:
        self._speech_start.setdefault(index, time.monotonic())
        left = self._remaining.get(index, 0) - nbytes
        self._remaining[index] = left
        if left <= 0:
            self._speech_end[index] = time.monotonic()

    def speech_started(self, uid: int) -> float | None:
        """When the first frame of utterance `uid` went out (None if it has not yet)."""
        return self._speech_start.get(uid)

    async def speech_ended(self, uid: int, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        while uid not in self._speech_end:
            if time.monotonic() > deadline:
                raise TimeoutError("speech not sent in time")
            await asyncio.sleep(0.01)
        return self._speech_end[uid]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.ws is not None:
                await self.ws.close()
        if self.pc is not None:
            await self.pc.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _fresh_speaker(
    old: AIGeneratedAudioTrack, on_played: Callable[[int, int, int], None]
) -> AIGeneratedAudioTrack:
    new = AIGeneratedAudioTrack("client", count_metrics=False)
    new.on_played = on_played
    old.stop()
    return new


FRAME_48K = frame_bytes(OUTPUT_RATE)
