"""A live call: one session's pipeline, its current peer connection and its current WebSocket.

The session record in the store is the durable part (history, status); a Call is what exists
only while a client is connected or about to reconnect. A Call outlives a dropped WebSocket for
`reconnect_grace_s` so a reconnecting client resumes mid-conversation; after that it is
suspended (peer closed, tasks cancelled) and the record stays resumable until its TTL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from voice_agent.media.peer import Peer, local_candidates
from voice_agent.pipeline.pipeline import Pipeline, PipelineConfig
from voice_agent.protocol.sessions import Message, SessionRecord, utcnow
from voice_agent.protocol.signaling import (
    MEDIA_STALL_S,
    AnswerEvent,
    ClientMetrics,
    CloseCode,
    ErrorCode,
    Held,
    IceCandidate,
    IceCandidateEvent,
    Offer,
    SessionEvent,
    SessionSnapshot,
    SignalingError,
    StatusEvent,
    Text,
    error_event,
)
from voice_agent.providers.base import Providers
from voice_agent.settings import Settings
from voice_agent.store.base import OwnershipLost, SessionEnded, SessionStore
from voice_agent.telemetry import metrics
from voice_agent.telemetry.logs import session_id_var

log = logging.getLogger(__name__)

SAVE_RETRY_MAX_S = 2.0
# How long a suspension keeps trying to write the call's last state. It must end: a call still closing
# holds its session here, and a client that reconnects meanwhile waits for it (manager.open_call).
SUSPEND_SAVE_S = 3.0
MEDIA_WATCH_S = 0.25
# What a client whose call is suspended with its socket open is told, by why.
_SUSPENDED = {
    ErrorCode.GOING_AWAY: "this agent is shutting down; reconnect to resume",
    ErrorCode.SESSION_MOVED: "this agent is going away and handed your call on; reconnect now to resume it",
}


# Prepared peers of closed calls, closing once their preparation ends (Call._close).
_closing: set[asyncio.Task[None]] = set()


async def _close_spare(preparing: asyncio.Task[Peer | None]) -> None:
    try:
        spare = await asyncio.shield(preparing)
    except asyncio.CancelledError:
        return  # the preparation was cancelled (shutdown): _prepare_peer closed its peer
    if spare is not None:
        await spare.close()


class ClientLink(Protocol):
    """A client's signaling channel: its WebSocket here, or one relayed from another agent."""

    closed: bool

    def send(self, event: dict[str, Any]) -> None: ...

    def close_soon(self, code: int, reason: str = "") -> None: ...

    async def aclose(self, code: int = CloseCode.ENDED, reason: str = "") -> None: ...


# A draining agent moves a call mid-turn only after waiting this long for a turn boundary
# (Call.ready_to_move).
MOVE_PATIENCE_S = 3.0

# Reports for replies older than this many are no longer taken: the client has fallen behind.
MAX_UNREPORTED_REPLIES = 4


class Call:
    def __init__(
        self,
        record: SessionRecord,
        settings: Settings,
        store: SessionStore,
        providers: Providers,
        on_gone: Callable[[Call], Awaitable[None]],
    ) -> None:
        self.id = record.id
        self.record = record
        # A call starts without media whatever the stored record says: a peer never outlives the
        # process that made it, so a resumed session must offer again.
        record.peer_connections = {}
        # A call a draining agent moved here: the gap is timed to this call's media coming up.
        self._moved_at, record.moved_at = record.moved_at, None
        # Moved mid-turn (Call.ready_to_move): the question was recorded and its reply never finished;
        # it is asked again here once the client hears this agent, so the user still gets the answer.
        self._ask_again: str | None = None
        if self._moved_at is not None and record.history and record.history[-1].role == "user":
            self._ask_again = record.history.pop().content
        self.settings = settings
        self.store = store
        self._on_gone = on_gone
        self.conn: ClientLink | None = None
        self.peer: Peer | None = None
        self._pending_candidates: list[IceCandidate] = []
        self._grace: asyncio.Task[None] | None = None
        self._saver: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._media_watch: asyncio.Task[None] | None = None
        self._media_up = False
        self._heard_at = time.monotonic()
        self._stalled = False
        self._dirty = asyncio.Event()
        self._closed = False
        self._gone = asyncio.Event()  # set once closed, saved and released
        self._asking: asyncio.Task[None] | None = None
        # The peer for the call's first offer, made while the client is still on its way to it
        # (prepare_media).
        self._preparing: asyncio.Task[Peer | None] | None = None
        self._peers_made = 0
        self._unreported_replies = 0  # replies the client may still report as heard (ClientMetrics)
        self.started_at = time.monotonic()
        self.pipeline = Pipeline(
            record.id,
            providers,
            self.emit,
            PipelineConfig(
                end_of_turn_silence_ms=settings.end_of_turn_silence_ms,
                vad_aggressiveness=settings.vad_aggressiveness,
                vad_start_ms=settings.vad_start_ms,
                max_utterance_s=settings.max_utterance_s,
                history_max_messages=settings.history_max_messages,
                preemptive_after_ms=settings.preemptive_after_ms,
                interruption=settings.interruption,
                interruption_min_speech_ms=settings.interruption_min_speech_ms,
                turn_detector=settings.turn_detector,
                turn_min_silence_ms=settings.turn_min_silence_ms,
                turn_max_silence_ms=settings.turn_max_silence_ms,
            ),
            history=record.history,
            on_history=self._history_changed,
        )

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        session_id_var.set(self.id)
        await self.pipeline.start()
        self._saver = asyncio.create_task(self._save_loop(), name=f"saver-{self.id}")
        self._media_watch = asyncio.create_task(self._watch_media(), name=f"media-watch-{self.id}")
        self._grace = asyncio.create_task(self._expire_unless_connected(self.settings.connect_timeout_s))

    def prepare_media(self) -> None:
        """Make the first offer's peer now (Peer.prepare), while the client is on its way to that offer:
        once the session's creation has been answered (the client then opens its socket), or once its
        socket is attached (a resuming client then makes its peer and offer). Not sooner: the work would
        hold up the answer to the creation itself. Once per call; later offers make their own peers."""
        if self._closed or self._preparing is not None or self._peers_made > 0:
            return
        self._preparing = asyncio.create_task(self._prepare_peer(), name=f"prepare-peer-{self.id}")

    async def attach(self, conn: ClientLink) -> None:
        """A WebSocket (re)connects. A second socket for the session replaces the first."""
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        old, self.conn = self.conn, conn
        log.info("client attached", extra={"replaced": old is not None})
        if old is not None:
            old.send(error_event(ErrorCode.REPLACED, "another connection took over this session"))
            old.close_soon(CloseCode.REPLACED, "replaced")
        self.record.status = "connected"
        self._touch()
        conn.send(SessionEvent(session=self.public_record()).wire())
        conn.send(StatusEvent.model_validate({"processing": self.pipeline.status}).wire())
        self.prepare_media()  # a resuming client makes its peer and offer now (relayed or not)

    def detach(self, conn: ClientLink) -> None:
        if self.conn is not conn or self._closed:
            return
        self.conn = None
        self._grace = asyncio.create_task(self._expire_unless_connected(self.settings.reconnect_grace_s))

    async def _expire_unless_connected(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if self.conn is None and not self._closed:
            log.info("client gone; suspending call", extra={"after_s": delay})
            await self.close(status="disconnected")

    @property
    def closing(self) -> bool:
        """Closed or on its way: never handed a socket again, never moved again."""
        return self._closed

    async def wait_gone(self) -> None:
        """Until a closing call has saved and released its session (bounded by the close's own bounds)."""
        await self._gone.wait()

    def ready_to_move(self, waited_s: float) -> bool:
        """Whether a draining agent may move the call now, `waited_s` into its drain.

        A turn boundary loses nothing. A call that has none within MOVE_PATIENCE_S (replies late, the
        next question already coming) moves at the next moment a turn is being answered and nobody is
        heard: the question is in the history and no reply was recorded, so the agent that takes the
        call over asks it again (Call.__init__). A reply being played is not cut (it ends by itself),
        nor is a user who is speaking (their words would be lost). A call whose media is down past the
        patience moves whatever its turn says: nothing is heard either way (a reply with no media to
        play it never ends), and its client renegotiates where it lands."""
        pipeline = self.pipeline
        if pipeline.at_turn_boundary:
            return True
        if waited_s < MOVE_PATIENCE_S:
            return False
        if not self._media_up:
            return True
        if pipeline.vad.speaking or pipeline.stt.finalizing:
            return False
        history = self.record.history
        if pipeline.turns.active_turn is None or not history or history[-1].role != "user":
            return False
        return pipeline.status != "speaking"

    async def move(self) -> bool:
        """Hand the call on (a draining agent, when ready_to_move): suspended here, its client told to
        reconnect at once, and resumed, history included, by whichever agent its reconnect reaches.
        False when the call was already closing: nothing was moved."""
        if self._closed:
            return False
        self.record.moved_at = utcnow()
        await self.close("disconnected", told=ErrorCode.SESSION_MOVED)
        return True

    async def close(
        self, status: str = "ended", save: bool = True, told: ErrorCode = ErrorCode.GOING_AWAY
    ) -> None:
        """`save=False` when ownership was lost: the record belongs to another agent now. `told` is the
        cause a client still connected to a suspended call hears before its socket closes 1012."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._close(status, save, told)
        finally:
            self._gone.set()

    async def _close(self, status: str, save: bool, told: ErrorCode) -> None:
        for task in (self._grace, self._saver, self._media_watch, self._asking):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        await self.pipeline.stop()  # the client's audio is dropped from here on (_audio_in)
        conn, self.conn = self.conn, None
        if conn is not None and status == "ended":
            await conn.aclose(CloseCode.ENDED, "ended")
            conn = None
        self.record.status = status  # type: ignore[assignment]
        self.record.is_ai_speaking = False
        duration = time.monotonic() - self.started_at
        metrics.SESSION_DURATION.observe(duration)
        log.info("call closed", extra={"status": status, "duration_s": round(duration, 1)})
        if save:
            await self._save_last()
        await self._on_gone(self)
        if conn is not None:
            # Suspended with its client still here (moved, drain timeout, shutdown): the session goes
            # on wherever the client reconnects, so the socket must not say "ended". Told only once
            # the record is saved and released: a reconnect that came sooner would find this agent
            # still holding the session and be relayed back to it.
            conn.send(error_event(told, _SUSPENDED[told]))
            await conn.aclose(
                CloseCode.RECONNECT, "moved" if told == ErrorCode.SESSION_MOVED else "suspended"
            )
        # The media goes last: a moved call's client waits for its new peer, not for this one's
        # teardown (ICE, DTLS and RTP transports, tens of milliseconds on a busy agent).
        if self._preparing is not None:
            preparing, self._preparing = self._preparing, None
            if preparing.done():
                await _close_spare(preparing)
            else:
                # Not cancelled: aioice leaves the STUN lookups of a gathering cancelled under it to
                # fail unobserved. A gathering ends by itself (its own timeout); the peer closes then.
                closing = asyncio.create_task(_close_spare(preparing), name=f"close-prepared-{self.id}")
                _closing.add(closing)
                closing.add_done_callback(_closing.discard)
        if self.peer is not None:
            peer, self.peer = self.peer, None
            await peer.close()

    # --- events to the client -----------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "status":
            speaking = event["processing"] == "speaking"
            if speaking and not self.record.is_ai_speaking:
                self._unreported_replies = min(self._unreported_replies + 1, MAX_UNREPORTED_REPLIES)
            self.record.is_ai_speaking = speaking
            self._dirty.set()
        elif kind == "transcript" and event.get("final"):
            self.record.transcript = event["text"]
        elif kind == "ai_response" and event.get("final"):
            self.record.ai_response = event["text"]
        elif kind == "metrics":
            self.record.metrics = {"last_turn": event["turn"]}
        if self.conn is not None:
            self.conn.send(event)

    def error(self, code: ErrorCode, message: str) -> None:
        metrics.ERRORS.labels(code).inc()
        self.emit(error_event(code, message))

    def public_record(self) -> SessionSnapshot:
        return SessionSnapshot(
            id=self.record.id,
            status=self.record.status,
            pool=self.record.pool,
            owner=self.record.owner,
            expires_at=self.record.expires_at.isoformat(),
            history=self.record.history,
            ice_servers=self.settings.public_ice_servers(),
            # Whether this agent holds media for the session right now ({} = send an offer).
            peer_connections=self.record.peer_connections,
        )

    # --- signaling ----------------------------------------------------------------------------
    def _new_peer(self) -> Peer:
        # A track belongs to one peer connection; any later peer gets a fresh one.
        track = self.pipeline.track if self._peers_made == 0 else self.pipeline.new_track()
        self._peers_made += 1
        return Peer(
            self.id,
            self.settings.ice_servers,
            track,
            self._audio_in,
            self._peer_state,
            transport_policy=self.settings.ice_transport_policy,
            jitter_frames=self.settings.jitter_prefetch_frames,
            host_candidates=self.settings.ice_policy,
            accept_red=self.settings.audio_red,
        )

    async def _prepare_peer(self) -> Peer | None:
        """The first offer's peer, prepared; None when that failed (the offer then makes its own)."""
        peer = self._new_peer()
        try:
            await peer.prepare()
        except asyncio.CancelledError:
            await peer.close()
            raise
        except Exception as exc:
            log.warning("preparing media failed", extra={"error": f"{type(exc).__name__}: {exc}"[:200]})
            await peer.close()
            return None
        return peer

    async def _take_prepared(self) -> Peer | None:
        preparing, self._preparing = self._preparing, None
        return None if preparing is None else await preparing

    async def on_offer(self, msg: Offer) -> None:
        """Every offer gets a fresh peer: first connect, ICE restart and resume are one path. The first
        is the one made ahead of it (prepare_media), when it was and that worked."""
        if self.peer is not None:
            await self.peer.close()
            self.peer = None
        peer = await self._take_prepared() or self._new_peer()
        try:
            answer = await peer.answer(msg.sdp)
        except SignalingError:
            await peer.close()
            raise
        if self._closed:
            await peer.close()  # closed while answering: its teardown is past the peer
            return
        self.peer = peer
        self.record.peer_connections = {"current": {"state": "new"}}
        self.emit(AnswerEvent(sdp=answer).wire())
        for cand in local_candidates(answer):
            self.emit(IceCandidateEvent(**cand).wire())
        self.emit(IceCandidateEvent(candidate=None, sdpMid=None, sdpMLineIndex=None).wire())
        pending, self._pending_candidates = self._pending_candidates, []
        for candidate in pending:
            await self.on_candidate(candidate)

    async def on_candidate(self, msg: IceCandidate) -> None:
        """Candidates may come before the offer; parsing refused garbage already, so they wait here."""
        if self.peer is None or not self.peer.has_remote:
            if len(self._pending_candidates) >= self.settings.max_pending_candidates:
                raise SignalingError(ErrorCode.TOO_MANY_CANDIDATES, "too many ICE candidates before an offer")
            self._pending_candidates.append(msg)
            return
        await self.peer.add_candidate(msg.wire())

    async def on_text(self, msg: Text) -> None:
        self._touch()
        await self.pipeline.push_text(msg.text)

    async def on_interrupt(self) -> None:
        await self.pipeline.interrupt()

    def on_client_metrics(self, msg: ClientMetrics) -> None:
        """A reply as the user heard it. Each reply the agent started may be reported once, so a
        client cannot weigh the histogram beyond the replies it really heard."""
        if self._unreported_replies <= 0:
            raise SignalingError(ErrorCode.INVALID_METRIC, "no reply left to report: one report per reply")
        self._unreported_replies -= 1
        metrics.CLIENT_VOICE_TO_VOICE.labels(self.record.pool).observe(msg.voice_to_voice_ms / 1000)

    def on_held(self, msg: Held) -> None:
        """The client went silent at a hold: what it had not played yet is played again at the resume.
        A late answer (the turn resumed or ended already) changes nothing."""
        rewound = self.pipeline.track.rewind_ms(msg.turn, msg.unheard_ms)
        log.info("hold answered", extra={"turn": msg.turn, "unheard_ms": msg.unheard_ms, "rewound": rewound})

    async def _audio_in(self, pcm: bytes) -> None:
        if self._closed:
            return  # its pipeline is stopped; the peer goes last (_close)
        self._heard_at = time.monotonic()
        self._stalled = False
        await self.pipeline.push_audio(pcm)

    async def _watch_media(self) -> None:
        """The client's audio stopping while media is up and its socket here is a stall it cannot see
        from its side (its uplink broke, its sender died): it is told, and renegotiates.

        A late tick means this agent's own loop stalled: the audio it could not take is queued, not
        lost, so the clock starts again instead of blaming the client."""
        ticked = time.monotonic()
        while True:
            await asyncio.sleep(MEDIA_WATCH_S)
            now = time.monotonic()
            if now - ticked > MEDIA_STALL_S / 2:
                self._heard_at = now
            ticked = now
            if self.conn is None or not self._media_up or self._stalled:
                continue
            if now - self._heard_at > MEDIA_STALL_S:
                self._stalled = True
                metrics.MEDIA_STALLS.inc()
                log.warning("client audio stalled", extra={"after_s": MEDIA_STALL_S})
                self.error(ErrorCode.MEDIA_STALLED, "no audio from you; send a new offer (ICE restart)")

    def _peer_state(self, state: str) -> None:
        log.info("media %s", state, extra={"media_state": state})
        self.record.peer_connections = {"current": {"state": state}}
        self._dirty.set()
        self._media_up = state == "connected"
        if state == "connected":
            self._heard_at = time.monotonic()
            self.pipeline.media_started()
            if self._moved_at is not None:
                gap = (utcnow() - self._moved_at).total_seconds()
                self._moved_at = None
                metrics.MIGRATION_GAP.observe(max(0.0, gap))
                log.info("moved call's media up", extra={"gap_ms": round(gap * 1000)})
            if self._ask_again is not None:
                text, self._ask_again = self._ask_again, None
                log.info("asking again the question a move cut", extra={"chars": len(text)})
                self._asking = asyncio.create_task(self.pipeline.push_text(text), name=f"ask-again-{self.id}")
        elif state in ("failed", "closed"):
            self.pipeline.media_stopped()
        if state == "failed":
            self.error(
                ErrorCode.ICE_FAILED, "media connection failed; send a new offer (ICE restart) to recover"
            )

    # --- persistence --------------------------------------------------------------------------
    def _history_changed(self, history: list[Message]) -> None:
        self.record.history = history
        self._touch()

    def _touch(self) -> None:
        self.record.touch(self.settings.session_ttl_s)
        self._dirty.set()

    def mark_dirty(self) -> None:
        self._dirty.set()

    async def _save_last(self) -> None:
        """The call's last state, for whichever agent resumes it: retried while the store fails, for
        SUSPEND_SAVE_S at most (a record a turn behind beats a suspension that never ends)."""
        deadline = time.monotonic() + SUSPEND_SAVE_S
        backoff = 0.05
        while True:
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self.store.save(self.record)
                return
            except OwnershipLost:
                return  # another agent holds the session: its state is that agent's now
            except Exception as exc:
                metrics.ERRORS.labels("store").inc()
                if time.monotonic() + backoff >= deadline:
                    log.warning(
                        "the suspended call's last state was not saved",
                        extra={"error": f"{type(exc).__name__}: {exc}", "after_s": SUSPEND_SAVE_S},
                    )
                    return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, SAVE_RETRY_MAX_S)

    async def _save_loop(self) -> None:
        """Coalesces bursts of changes into one write; never blocks the media path.

        A failed write is retried (with backoff) until the store is back, so what the client
        saw during a store outage is written back once it returns. A fenced write means another
        agent took the session over: this call stops without writing.
        """
        backoff = 0.05
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self.store.save(self.record)
                backoff = 0.05
            except SessionEnded:
                log.info("session ended elsewhere; closing here")
                self._closer = asyncio.create_task(self.close("ended", save=False))
                return
            except OwnershipLost:
                log.warning("session taken over by another agent; closing here")
                if self.conn is not None:
                    self.conn.send(error_event(ErrorCode.SESSION_MOVED, "session moved"))
                    self.conn.close_soon(CloseCode.REPLACED, "session moved")
                    self.conn = None
                self._closer = asyncio.create_task(self.close("disconnected", save=False))
                return
            except Exception:
                if backoff == 0.05:
                    log.exception("saving session failed; retrying until the store is back")
                metrics.ERRORS.labels("store").inc()
                self._dirty.set()
                backoff = min(backoff * 2, SAVE_RETRY_MAX_S)
            await asyncio.sleep(backoff)
