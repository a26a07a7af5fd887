"""A Python voice client for the agent: the same protocol a browser speaks, over aiortc.

Used by the end-to-end tests, the benchmarks and the load generator, and usable against any
deployment: create a session over HTTP, signal over the WebSocket, send speech from PCM, and
record the agent's audio with arrival times (for latency and for transcription).

With `resume=True` it also keeps its conversation going the way the web client does: after a
close it does what the close code says (docs/api.md, "Close codes": reconnect at once, retry
later, start a new session, or stop), renegotiates media when the agent it lands on holds none,
and treats audio that stops arriving while the call is up as a stall to recover from. It counts
how long it ever went without hearing from the agent (`silence`). What the user says while the call
moves is not lost (docs/deploy.md, "Rolling a pool"): from the move's notice its speech is held,
and the agent that takes the call hears it on the new peer connection, with the moment before the
notice said again (the old agent had stopped listening before it told the client).

It follows the agent's `playback` events as the web client does (docs/api.md, "Hold and resume"):
it goes silent at a hold, answers with what it never played, and plays again at the resume. What
it "plays" is a model of a listener's playout buffer (`playout_ms`): each received frame plays after
the one before it, and no sooner than `playout_ms` after it arrived; `Recording.playout` and `heard`
give the samples as played and which of them were heard. What it never played is counted, not
guessed from clocks: the reply's sound that plays from the moment it went silent up to the agent's
held silence (on a loaded machine, frames sent before the hold are still being decoded when the
event arrives: a playout buffer's depth at that moment leaves them out).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections import deque
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
from voice_agent.protocol.signaling import (
    MEDIA_STALL_S,
    CloseAction,
    CloseCode,
    ErrorCode,
    close_action,
    parse_candidate,
)
from voice_agent.settings import load_settings

SILENCE_DBFS = -50.0
WATCH_TICK_S = 0.1
# A watch tick this late means this process's own loop stalled: that time is not the agent's.
OWN_STALL_S = 0.2
# After a stall is seen: how long audio may take to come back by itself (a busy agent catches up)
# before the client acts, renegotiating media if the agent still answers, else reconnecting.
MEDIA_RECOVER_S = 3.0
# A negotiation whose media is not up this long after it is tried again (the web client's ICE restart
# timeout): on a loaded agent ICE or DTLS can time out, and a call without media hears nothing.
MEDIA_CONNECT_S = 10.0
# Reconnect pacing after a failed attempt, as the web client's (frontend/src/hooks/backoff.ts).
BACKOFF_BASE_S, BACKOFF_MAX_S, BACKOFF_JITTER = 0.5, 8.0, 0.2
# The agent's held silence: this many quiet frames running (a word's own gaps are mostly shorter).
QUIET_FRAMES = 2
# A sample this far from zero is the reply's sound (-30 dBFS), not the decoder fading out.
LOUD_SAMPLE = 1000
# A hold is answered this long after it at the latest, with what was counted by then.
UNHEARD_WAIT_S = 0.5
# A cut reply's silence lasts until the next reply speaks, at most this long (as the web client's).
CUT_SILENCE_S = 1.0
# Error events that ask the client to renegotiate media (docs/api.md, "Error codes").
RENEGOTIATE_ON = {ErrorCode.MEDIA_STALLED, ErrorCode.ICE_FAILED}
# A moved call's notice comes after its old agent stopped listening (it saves and releases the call
# first): what the user said this long before the notice is said again to the agent that takes the
# call. The old agent moved the call after as long a quiet turn boundary, so none of it was acted on.
MOVE_REPLAY_S = 0.2
# The one turn the client's speech is queued under: it is a single stream, never cut by a turn.
SPEECH_TURN = 0


def _agent_starting(resp: httpx.Response) -> bool:
    """The operator's waker answered: no agent of the pool is up yet and one is starting."""
    if resp.status_code != 503:
        return False
    try:
        body = resp.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("code") == "agent_starting"


@dataclass
class ReceivedFrame:
    at: float
    pcm: bytes  # 48 kHz mono s16
    voiced: bool
    plays_at: float = 0.0  # when its first sample plays in the modeled playout buffer


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

    def playout(self) -> tuple[np.ndarray, np.ndarray]:
        """Every received sample in the order it plays, and when it plays (monotonic clock, s)."""
        if not self.frames:
            return np.zeros(0, dtype="<i2"), np.zeros(0)
        pcm = np.frombuffer(b"".join(f.pcm for f in self.frames), dtype="<i2")
        times = np.concatenate([f.plays_at + np.arange(len(f.pcm) // 2) / OUTPUT_RATE for f in self.frames])
        return pcm, times


@dataclass
class Close:
    at: float
    code: int | None
    action: CloseAction
    ended_by_client: bool
    # The client closed it itself as dead (no audio and no answer): not the agent's close.
    dropped: bool = False


@dataclass
class Silence:
    """Spans in which the client heard nothing from the agent (no audio frame, no event) while its
    socket was open and media up; each span ends at the next frame or event, a close, or the
    client's own stall detection, whichever comes first ("how it ended" is kept for the long ones)."""

    report_over_s: float = 1.0
    since: float | None = None
    longest_s: float = 0.0
    long_spans: list[tuple[float, float, str]] = field(default_factory=list)

    def heard(self, now: float, how: str, wake: bool = False) -> None:
        """A sign of life; `wake`: one that also ends a pause (audio flowing, a socket opened)."""
        if self.since is not None:
            span = now - self.since
            self.longest_s = max(self.longest_s, span)
            if span > self.report_over_s:
                self.long_spans.append((round(self.since, 3), round(span, 3), how))
        if self.since is not None or wake:
            self.since = now

    def discount(self, seconds: float) -> None:
        """The client's own process stalled this long: nothing could reach it, whoever was at fault."""
        if self.since is not None:
            self.since += seconds

    def pause(self, now: float, how: str) -> None:
        """The client knows why it hears nothing (closed, reconnecting, renegotiating)."""
        self.heard(now, how)
        self.since = None


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
        resume: bool = False,
        media_stall_s: float = MEDIA_STALL_S,
        playout_ms: float = 0.0,
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
        self.playout_s = playout_ms / 1000
        self._play_end = 0.0  # when the last received sample finishes playing
        # Spans (start, end) in which the client was silent for the agent's playback events.
        self.silenced: list[tuple[float, float]] = []
        self._silent_turn: int | None = None
        self._unheard: tuple[int, float] | None = None  # (turn, silent since) while counting it
        self.speaker = AIGeneratedAudioTrack("client", count_metrics=False)
        # Each utterance said and how much of it is still to go out: what a new peer connection's
        # track carries on with. Kept until it has gone out and is past the replay window.
        self._said: dict[int, bytes] = {}
        self._remaining: dict[int, int] = {}
        self._sent_log: deque[tuple[float, int, int]] = deque()  # (when, utterance, bytes) sent lately
        self._speech_held_at: float | None = None  # the move's notice, while the speech is held
        self.pc: RTCPeerConnection | None = None
        self.ws: Any = None
        self.close_code: int | None = None
        self._new_event = asyncio.Condition()
        self._tasks: list[asyncio.Task[Any]] = []
        self._speech_end: dict[int, float] = {}
        self._speech_start: dict[int, float] = {}
        self._utterances = 0
        self.speaker.on_played = self._played
        self.resume = resume
        self.media_stall_s = media_stall_s
        self.closes: list[Close] = []
        self.reconnects = 0
        self.new_sessions = 0
        self.media_stalls = 0
        self.renegotiations = 0
        self.silence = Silence()
        # Signaling alone: an open socket over which nothing comes (a relay link lost without a word)
        # while the audio may flow on.
        self.quiet_socket = Silence(report_over_s=10.0)
        self.stopped = False
        self._ending = False
        self._attempts = 0
        self._reader: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._last_frame: float | None = None
        self._negotiating = False
        self._negotiated_at: float | None = None
        self._recovering: asyncio.Task[None] | None = None
        self._dropped = False

    # --- HTTP ---------------------------------------------------------------------------------
    async def create_session(self, wait_for_agent_s: float = 0.0) -> dict[str, Any]:
        """`wait_for_agent_s`: how long to keep asking while a pool scaled to zero starts an agent
        (503 with code agent_starting from the operator's waker, docs/operator.md), each time after
        its Retry-After, as the browser client does."""
        deadline = time.monotonic() + wait_for_agent_s
        async with httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=10) as http:
            while True:
                resp = await http.post("/v2/sessions")
                delay = max(1.0, float(resp.headers.get("Retry-After") or 0))
                if not (_agent_starting(resp) and time.monotonic() + delay <= deadline):
                    break
                await asyncio.sleep(delay)
            resp.raise_for_status()
            self.session = resp.json()
        return self.session

    # --- signaling ----------------------------------------------------------------------------
    async def connect(self, session_id: str | None = None, negotiate: bool = True) -> None:
        sid = session_id or self.session["id"]
        ws_url = self.base_url.replace("http://", "ws://").replace("https://", "wss://") + f"/ws/v2/{sid}"
        self.ws = await websockets.connect(ws_url, max_size=2**20)
        self.close_code = None
        self._reader = asyncio.create_task(self._read_ws(self.ws))
        self._tasks.append(self._reader)
        if self.resume and self._watcher is None:
            self._watcher = asyncio.create_task(self._watch_media())
            self._tasks.append(self._watcher)
        # A new socket wakes the signaling watch only: until audio flows again the client knows it
        # is reconnecting and renegotiating.
        self.quiet_socket.heard(time.monotonic(), "open", wake=True)
        if negotiate:
            await self.negotiate()

    async def send(self, msg: dict[str, Any]) -> None:
        if msg.get("type") == "end":
            self._ending = True
        await self.ws.send(json.dumps(msg))

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def _read_ws(self, ws: Any) -> None:
        try:
            async for raw in ws:
                event = json.loads(raw)
                event["_at"] = now = time.monotonic()
                self.silence.heard(now, f"event {event.get('type')}")
                self.quiet_socket.heard(now, f"event {event.get('type')}")
                if event.get("type") == "ice-candidate" and self.pc is not None:
                    with contextlib.suppress(Exception):
                        await self.pc.addIceCandidate(parse_candidate(event))
                async with self._new_event:
                    self.events.append(event)
                    self._new_event.notify_all()
                if event.get("type") in ("playback", "status"):
                    await self._playback(event, now)
                if self.resume:
                    self._follow(event)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code
            async with self._new_event:
                self._new_event.notify_all()
            if ws is self.ws:
                self._closed(ws.close_code)

    # --- playback: silent while the agent holds -------------------------------------------------
    async def _playback(self, event: dict[str, Any], now: float) -> None:
        state = event.get("state")
        if event["type"] == "status":
            if event.get("processing") == "speaking":
                self._unsilence(now, None)  # a new reply speaks: a cut's silence is over
            return
        turn = int(event["turn"])
        if state == "held":
            self._silence_from(now, math.inf)
            self._silent_turn = turn
            if self.record:
                self._unheard = (turn, now)
                await self._count_unheard(now)
            else:  # nothing kept to count in: the playout buffer's depth is the estimate
                await self._answer_held(turn, max(0.0, self._play_end - now))
        elif state == "resumed":
            self._unsilence(now, turn)
        elif state == "cut":
            self._silence_from(now, CUT_SILENCE_S)
            self._silent_turn = None

    async def _count_unheard(self, now: float) -> None:
        """Answer a hold once the agent's held silence plays (or UNHEARD_WAIT_S after the hold):
        the reply's sound from the moment the client went silent up to there was never heard."""
        if self._unheard is None:
            return
        turn, since = self._unheard
        frames = self.recording.frames
        first = len(frames)
        while first > 0 and frames[first - 1].plays_at + len(frames[first - 1].pcm) / 2 / OUTPUT_RATE > since:
            first -= 1
        # Samples, not playout time (a buffer that ran dry leaves gaps in time, none in the reply),
        # up to the reply's last loud sample before the held silence: the decoder's fade into that
        # silence is no word.
        counted = unheard_samples = run = 0
        for f in frames[first:]:
            run = 0 if f.voiced else run + 1
            if run == QUIET_FRAMES:
                break
            pcm = np.frombuffer(f.pcm, dtype="<i2")[max(0, math.ceil((since - f.plays_at) * OUTPUT_RATE)) :]
            loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > LOUD_SAMPLE)
            if loud.size:
                unheard_samples = counted + int(loud[-1]) + 1
            counted += len(pcm)
        else:
            if now - since < UNHEARD_WAIT_S:
                return
        unheard = unheard_samples / OUTPUT_RATE
        self._unheard = None
        await self._answer_held(turn, unheard)

    async def _answer_held(self, turn: int, unheard_s: float) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.send(
                {"type": "held", "turn": turn, "unheard_ms": round(min(unheard_s * 1000, 1000), 1)}
            )

    def _silence_from(self, now: float, for_s: float) -> None:
        """Silent from now, for at most `for_s` (what the web client bounds a cut's silence at)."""
        if self.silenced and self.silenced[-1][1] > now:
            self.silenced[-1] = (self.silenced[-1][0], now + for_s)
        else:
            self.silenced.append((now, now + for_s))

    def _unsilence(self, now: float, turn: int | None) -> None:
        if turn is not None and turn != self._silent_turn:
            return
        self._silent_turn = None
        if self.silenced and self.silenced[-1][1] > now:
            self.silenced[-1] = (self.silenced[-1][0], now)

    def heard(self, times: np.ndarray) -> np.ndarray:
        """Which of the samples playing at `times` the listener heard (not silenced)."""
        out = np.ones(len(times), dtype=bool)
        for start, end in self.silenced:
            out &= (times < start) | (times >= end)
        return out

    # --- following the agent (resume=True) ---------------------------------------------------
    def _closed(self, code: int | None) -> None:
        """What the close code says to do, done: docs/api.md, "Close codes"."""
        now = time.monotonic()
        # A socket this client dropped as dead says nothing about the session: it reconnects.
        dropped, self._dropped = self._dropped, False
        action = CloseAction.RECONNECT if dropped else close_action(code)
        self.closes.append(Close(now, code, action, self._ending, dropped))
        self.silence.pause(now, f"close {code}")
        self.quiet_socket.pause(now, f"close {code}")
        if not self.resume or self._ending or self.stopped:
            return
        if action is CloseAction.STOP:
            self.stopped = True
            return
        if code == CloseCode.RECONNECT and not dropped:
            self._hold_speech(now)  # a move told by its close alone
        self._attempts += 1
        first = action is CloseAction.RECONNECT and self._attempts == 1
        delay = 0.0 if first else _backoff(self._attempts)
        self._tasks.append(asyncio.create_task(self._reconnect(delay, action is CloseAction.NEW_SESSION)))

    async def _reconnect(self, delay: float, new_session: bool) -> None:
        await asyncio.sleep(delay)
        if self._ending:
            return
        opened = False
        try:
            if new_session:
                await self.create_session()
                self.new_sessions += 1
            mark = len(self.events)
            await self.connect(negotiate=False)
            opened = True
            self.reconnects += 1
            session = await self.wait_for(lambda e: e.get("type") == "session", timeout=15, after=mark)
        except (OSError, TimeoutError, websockets.WebSocketException, httpx.HTTPError):
            if not opened:
                self._closed(None)  # never opened: back off and try again
            elif self.ws.close_code is None:
                await self._drop_socket()  # opened and silent: its close reconnects
            return  # opened and closed: that close already scheduled the next attempt
        self._attempts = 0
        if not session["session"].get("peer_connections") or not self._media_up():
            self._renegotiate()  # the new peer connection's track carries the held speech
        else:
            self._release_speech()  # only the socket moved: the agent that heard the user still does

    def _follow(self, event: dict[str, Any]) -> None:
        if event.get("type") != "error":
            return
        if event.get("code") in RENEGOTIATE_ON:
            self._renegotiate()
        elif event.get("code") == ErrorCode.SESSION_MOVED:
            self._hold_speech(event["_at"])

    def _media_up(self) -> bool:
        return self.pc is not None and self.pc.connectionState == "connected"

    def _renegotiate(self) -> None:
        if self._recovering is not None and not self._recovering.done():
            return
        self.renegotiations += 1
        self._recovering = asyncio.create_task(self._negotiate_quietly())
        self._tasks.append(self._recovering)

    async def _negotiate_quietly(self) -> None:
        # A close during the offer is followed by its own reconnect, which renegotiates.
        with contextlib.suppress(RuntimeError, TimeoutError, websockets.WebSocketException):
            await self.negotiate()

    async def _watch_media(self) -> None:
        """Audio that stops while the socket is open and media is up is a stall: counted and known
        at once (a page would say so), then recovered from if it does not end by itself.

        A late tick means this process itself stalled (its own loop, not the agent): the clock
        starts again instead of blaming the agent for it."""
        ticked = time.monotonic()
        stalled_at: float | None = None
        events_then = 0
        while True:
            await asyncio.sleep(WATCH_TICK_S)
            now = time.monotonic()
            own_stall, ticked = now - ticked - WATCH_TICK_S, now
            if own_stall > OWN_STALL_S:
                self.silence.discount(own_stall)
                self.quiet_socket.discount(own_stall)
                if self._last_frame is not None:
                    self._last_frame += own_stall
            if self.ws is None or self.ws.close_code is not None or self._negotiating:
                stalled_at = None
                continue
            if self.pc is not None and self.pc.connectionState in ("failed", "closed"):
                self._renegotiate()  # the agent's end of the media went away (its call suspended)
                continue
            if not self._media_up():
                stalled_at = None
                if self._negotiated_at is not None and now - self._negotiated_at > MEDIA_CONNECT_S:
                    self._negotiated_at = now
                    self._renegotiate()  # media never came up: try again rather than stay mute
                continue
            silent = self._last_frame is not None and now - self._last_frame > self.media_stall_s
            if not silent:
                stalled_at = None
            elif stalled_at is None:
                stalled_at, events_then = now, len(self.events)
                self.media_stalls += 1
                self.silence.pause(now, "stall detected")
                with contextlib.suppress(websockets.WebSocketException):
                    await self.send({"type": "ping", "ts": "stall"})
            elif now - stalled_at > MEDIA_RECOVER_S:
                stalled_at = None
                self._last_frame = now
                if len(self.events) > events_then:
                    self._renegotiate()  # the agent answers: its media path is what broke
                else:
                    await self._drop_socket()  # nothing from the agent at all: a dead socket

    async def _drop_socket(self) -> None:
        self._dropped = True
        with contextlib.suppress(websockets.WebSocketException):
            await self.ws.close()

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
        if self._reader is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.close_code

    # --- media --------------------------------------------------------------------------------
    async def negotiate(self) -> None:
        self._negotiating = True
        self.silence.pause(time.monotonic(), "negotiating")
        try:
            await self._negotiate()
        finally:
            self._negotiating = False
            self._last_frame = self._negotiated_at = time.monotonic()  # the new peer's audio is yet to come

    async def _negotiate(self) -> None:
        if self.pc is not None:
            await self.pc.close()
            self._carry_speech()
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
        sdp = self.offer_sdp(self.pc.localDescription.sdp)
        mark = len(self.events)
        await self.send({"type": "offer", "sdp": sdp})
        answer = await self.wait_for(lambda e: e.get("type") in ("answer", "error"), timeout=15, after=mark)
        if answer["type"] == "error":
            raise RuntimeError(f"offer rejected: {answer}")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    def offer_sdp(self, sdp: str) -> str:
        """The offer as sent; a client that offers more than aiortc does (a browser's RED) adds it here."""
        return sdp

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
                now = self._last_frame = time.monotonic()
                self.silence.heard(now, "audio", wake=True)
                plays_at = max(now + self.playout_s, self._play_end)
                seconds = frame.samples / frame.sample_rate if isinstance(frame, av.AudioFrame) else 0.02
                self._play_end = plays_at + seconds
                if not self.record:
                    continue
                for out in resampler.resample(frame):  # type: ignore[arg-type]
                    pcm = bytes(out.planes[0])[: out.samples * 2]
                    self.recording.frames.append(ReceivedFrame(now, pcm, _loud(pcm), plays_at))
                    plays_at += out.samples / OUTPUT_RATE
                await self._count_unheard(now)
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
        self._forget_said()
        self._utterances += 1
        uid = self._utterances
        self.speaker.enqueue(SPEECH_TURN, uid, out)
        self._said[uid] = out
        self._remaining[uid] = len(out)
        return uid

    def _played(self, turn: int, index: int, nbytes: int) -> None:
        now = time.monotonic()
        self._speech_start.setdefault(index, now)
        left = self._remaining.get(index, 0) - nbytes
        self._remaining[index] = left
        if left <= 0:
            self._speech_end[index] = now
        self._sent_log.append((now, index, nbytes))
        while self._sent_log[0][0] < now - MOVE_REPLAY_S:
            self._sent_log.popleft()

    def _forget_said(self) -> None:
        """Utterances gone out in full and out of the replay window are never sent again."""
        replayable = {uid for _, uid, _ in self._sent_log}
        for uid in [u for u, left in self._remaining.items() if left <= 0 and u not in replayable]:
            del self._said[uid], self._remaining[uid]

    # --- speech across a move ----------------------------------------------------------------
    def _hold_speech(self, notice_at: float) -> None:
        """The call is moving (told at `notice_at`): nothing the user says goes out until the agent
        that takes the call is connected; the old agent no longer listens. Speech said meanwhile
        queues up. Called again before the move ends, it keeps the first notice."""
        if self._speech_held_at is None:
            self._speech_held_at = notice_at
            self.speaker.hold(SPEECH_TURN)

    def _release_speech(self) -> None:
        """The socket moved and the media did not: the same agent listens on, nothing to say again."""
        self._speech_held_at = None
        self.speaker.resume(SPEECH_TURN)

    def _carry_speech(self) -> None:
        """A new peer connection's speech track, carrying on with what the old one had still to send
        (lost with it otherwise) and, after a move, with what went out in the moment before its
        notice. It is not held: aiortc starts sending it once the new media is up."""
        if self._speech_held_at is not None:
            since = self._speech_held_at - MOVE_REPLAY_S
            while self._sent_log and self._sent_log[-1][0] >= since:
                _, uid, nbytes = self._sent_log.pop()
                self._remaining[uid] += nbytes
                self._speech_end.pop(uid, None)  # it ends when the agent that took the call heard it
            self._sent_log.clear()
            self._speech_held_at = None
        new = AIGeneratedAudioTrack("client", count_metrics=False)
        new.on_played = self._played
        for uid, pcm in self._said.items():
            if (left := self._remaining[uid]) > 0:
                new.enqueue(SPEECH_TURN, uid, pcm[len(pcm) - left :])
        self.speaker.stop()
        self.speaker = new

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
        self._ending = True
        # Reconnects and renegotiations first: one still running could open a socket or a peer
        # after this, and nothing would close it.
        for t in self._tasks:
            if t is not self._reader:
                t.cancel()
        await asyncio.gather(*(t for t in self._tasks if t is not self._reader), return_exceptions=True)
        with contextlib.suppress(Exception):
            if self.ws is not None:
                await self.ws.close()
        if self.pc is not None:
            await self.pc.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _backoff(attempt: int) -> float:
    raw = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** max(0, attempt - 1))
    return max(0.0, raw * (1 + BACKOFF_JITTER * (2 * random.random() - 1)))


FRAME_48K = frame_bytes(OUTPUT_RATE)
