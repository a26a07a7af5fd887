"""Signaling relay over Redis pub/sub, for a WebSocket that landed on an agent not owning its session.

Two roles per relayed connection ("link"):
- edge: this agent holds the client's WebSocket. It rate-limits and parses frames like any
  agent, then publishes the parsed messages to the owner's inbox; events from the owner go to
  the socket.
- owner: this agent runs the call. A RemoteConnection stands in for the client's socket, so the
  call neither knows nor cares that its client is elsewhere, and the relayed messages go through
  the same receive loop as a local socket's (parsed again: the edge may run another version).
  Media flows straight to the owner.

Each agent listens on one channel, its inbox. Messages of one link are handled in order (one
queue and worker per link), so an offer is answered before the candidates that follow it.
PUBLISH returns the number of receivers; 0 means the other side's process is gone, and the link
is closed at once so the client can reconnect and resume (see docs/redis.md).

No link ends in silence: whichever side loses a link (its peer gone, a message for a link it does
not know, its own inbox dropped, a periodic audit that finds the other side forgot it) tells the
client's socket to close with 1012, so the client reconnects at once instead of waiting on a
socket that no longer carries anything (docs/api.md, "Close codes").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Awaitable
from typing import Any

from redis.exceptions import RedisError

from voice_agent.pool import inbox
from voice_agent.pool.registry import stop_task
from voice_agent.protocol.signaling import AnyClientMessage, CloseCode, ErrorCode, error_event
from voice_agent.sessions.admission import CallHost
from voice_agent.sessions.call import Call
from voice_agent.sessions.connection import CLOSE_FLUSH_S, ClientConnection
from voice_agent.sessions.signaling import Frame, handle, receive_loop
from voice_agent.store.base import StoreUnavailable
from voice_agent.store.redis import RedisSessionStore
from voice_agent.store.redis_metrics import RELAY_LINKS, RELAY_SECONDS, RELAYED_MESSAGES

log = logging.getLogger(__name__)

LINK_QUEUE_MAX = 512
_BYE: dict[str, Any] = {"type": "__bye__"}


class RemoteConnection:
    """The owner's stand-in for a client socket held by another agent (same surface as ClientConnection)."""

    def __init__(self, relay: Relay, link: OwnerLink) -> None:
        self._relay = relay
        self._link = link
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(LINK_QUEUE_MAX)
        self._writer = asyncio.create_task(self._write(), name=f"relay-out-{link.id}")
        self.closed = False

    def send(self, event: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            self._queue.put_nowait(("ev", {"e": event}))
        except asyncio.QueueFull:
            self.close_soon(CloseCode.QUEUE_FULL, "send queue full")

    def close_soon(self, code: int, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(("close", {"code": code, "reason": reason}))
        self._link.stop()  # the edge sends nothing more once it is told to close: end the link here

    def drop(self) -> None:
        """The edge is gone (bye, or dead): nothing more to send; a pending close still flushes."""
        if not self.closed:
            self.closed = True
            self._writer.cancel()

    def lost(self) -> None:
        """This side lost the link: the edge still holds a socket that would stay open and mute."""
        if not self.closed:
            self.send(error_event(ErrorCode.RELAY_LOST, "the relay to this session's agent broke; reconnect"))
            self.close_soon(CloseCode.RECONNECT, "relay lost")

    async def aclose(self, code: int = CloseCode.ENDED, reason: str = "") -> None:
        self.close_soon(code, reason)
        await self.flushed()

    async def flushed(self) -> None:
        """Until what is queued for the edge (a close last) is published, at most CLOSE_FLUSH_S."""
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(self._writer), timeout=CLOSE_FLUSH_S)
        self._writer.cancel()

    async def _write(self) -> None:
        while True:
            kind, body = await self._queue.get()
            link = self._link
            delivered = await self._relay.send(link.edge, kind, link.session_id, link.id, body)
            if kind == "close":
                return
            if not delivered:
                self.closed = True
                self._link.stop()
                return


class OwnerLink:
    """Owner side of one relayed connection: runs its messages in order against the local call."""

    def __init__(self, relay: Relay, link_id: str, session_id: str, edge: str) -> None:
        self.relay = relay
        self.id = link_id
        self.session_id = session_id
        self.edge = edge
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(LINK_QUEUE_MAX)
        self.conn = RemoteConnection(relay, self)
        self.said_bye = False
        self.task = asyncio.create_task(self._run(), name=f"relay-owner-{link_id}")

    def push(self, msg: dict[str, Any]) -> None:
        try:
            self.inbox.put_nowait(msg)
        except asyncio.QueueFull:
            self.conn.close_soon(CloseCode.QUEUE_FULL, "too many queued messages")
            self.stop()

    def stop(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.inbox.put_nowait(_BYE)

    def bye(self) -> None:
        """The edge closed its side: nothing to tell it when the link ends."""
        self.said_bye = True
        self.stop()

    async def _messages(self) -> AsyncGenerator[Frame]:
        """The edge's messages in order, until it says bye or the link is closed."""
        while True:
            msg = await self.inbox.get()
            if msg is _BYE or self.conn.closed:
                return
            yield msg

    async def _run(self) -> None:
        calls = self.relay.calls
        call: Call | None = None
        try:
            try:
                opened = await calls.open_call(self.session_id)
            except Exception as exc:
                reason = getattr(exc, "reason", "session unavailable")
                self.conn.send(error_event(ErrorCode.CAPACITY, reason))
                self.conn.close_soon(CloseCode.TRY_AGAIN, "try again")
                return
            if opened is None:
                self.conn.send(error_event(ErrorCode.UNKNOWN_SESSION, "no such session"))
                self.conn.close_soon(CloseCode.UNKNOWN_SESSION, "no such session")
                return
            if not isinstance(opened, Call):
                self.conn.send(error_event(ErrorCode.SESSION_MOVED, "the session runs on another agent now"))
                self.conn.close_soon(CloseCode.RECONNECT, "reconnect to resume")
                return
            call = opened
            await call.attach(self.conn)
            conn, max_bytes = self.conn, self.relay.max_frame_bytes
            await receive_loop(
                self._messages(),
                conn,
                lambda msg: handle(call, conn, msg, calls.end_session),
                max_bytes,
                False,
            )
        finally:
            if call is not None:
                call.detach(self.conn)
            if self.said_bye:
                self.conn.drop()
            else:
                self.conn.lost()
            # Known here until its close is out: an audit in between would otherwise send the edge
            # a second, contradicting close (1012 before the 1000 of an ended session).
            await self.conn.flushed()
            self.relay.owned.pop(self.id, None)


class EdgeLink:
    """Edge side: the client's socket is here, its session runs on `owner`."""

    def __init__(self, relay: Relay, session_id: str, owner: str, conn: ClientConnection) -> None:
        self.relay = relay
        self.id = secrets.token_hex(8)
        self.session_id = session_id
        self.owner = owner
        self.conn = conn
        self.done = False
        # Set once the owner has been sent `open`: from then on an audit may ask it about the link.
        self.opened = False
        # The owner's call as its events say (a draining edge hands the socket off when it is quiet).
        self.status = ""
        self.heard_at = time.monotonic()

    def relay_event(self, event: dict[str, Any]) -> None:
        self.heard_at = time.monotonic()
        if event.get("type") == "status":
            self.status = str(event.get("processing", ""))
        self.conn.send(event)

    def quiet_for(self, now: float) -> float:
        """How long the call's signaling has been quiet at a turn boundary (0 while a turn goes on)."""
        return now - self.heard_at if self.status in ("idle", "listening") else 0.0

    async def forward(self, msg: AnyClientMessage) -> bool:
        if self.done:
            return False
        try:
            receivers = await self.relay.publish(
                self.owner, "msg", self.session_id, self.id, {"m": msg.wire()}
            )
        except StoreUnavailable:
            self.lost(ErrorCode.RELAY_LOST, "the relay to this session's agent broke; reconnect")
            return False
        if not receivers:
            self.owner_gone()
            return False
        return True

    def owner_gone(self) -> None:
        self.lost(ErrorCode.OWNER_GONE, "the agent running this session is gone; reconnect to resume")

    def lost(self, code: ErrorCode, message: str) -> None:
        """The link cannot carry this socket any more: the client reconnects (and resumes) at once,
        and the owner, if it still listens, detaches its call from the link at once too."""
        if not self.done:
            self.relay._spawn(self.relay.send(self.owner, "bye", self.session_id, self.id, {}))
        self.done = True
        self.relay.edges.pop(self.id, None)
        self.conn.send(error_event(code, message))
        self.conn.close_soon(CloseCode.RECONNECT, "reconnect to resume")

    async def close(self) -> None:
        self.relay.edges.pop(self.id, None)
        if not self.done:
            self.done = True
            await self.relay.send(self.owner, "bye", self.session_id, self.id, {})


class Relay:
    def __init__(self, store: RedisSessionStore, calls: CallHost, max_frame_bytes: int) -> None:
        self.store = store
        self.calls = calls
        self.max_frame_bytes = max_frame_bytes
        self.agent_id = store.agent_id
        self.edges: dict[str, EdgeLink] = {}
        self.owned: dict[str, OwnerLink] = {}
        self.subscribed = asyncio.Event()
        RELAY_LINKS.labels("edge").set_function(lambda: len(self.edges))
        RELAY_LINKS.labels("owner").set_function(lambda: len(self.owned))
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._inbox_unheard = False

    async def start(self, wait_s: float = 3.0) -> None:
        self._reader = asyncio.create_task(self._read_forever(), name="relay-inbox")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.subscribed.wait(), wait_s)

    async def close(self) -> None:
        for edge in list(self.edges.values()):
            edge.lost(ErrorCode.GOING_AWAY, "this agent is shutting down; reconnect to resume")
        for link in list(self.owned.values()):
            link.stop()
        if self._reader is not None:
            await stop_task(self._reader)

    def hand_off_quiet(self, settle_s: float, anyway: bool = False) -> int:
        """Draining: close the relayed sockets whose calls (running elsewhere) are quiet at a turn
        boundary, or all of them once `anyway` (the drain's patience is over: a call whose events never
        show a quiet boundary to this socket must not hold the agent to its drain timeout); each client
        reconnects at once to a ready agent, its call and its media to the owner untouched."""
        now = time.monotonic()
        quiet = [e for e in self.edges.values() if anyway or e.quiet_for(now) >= settle_s]
        for edge in quiet:
            edge.lost(ErrorCode.GOING_AWAY, "this agent is shutting down; reconnect to go on")
        return len(quiet)

    @property
    def active_edges(self) -> int:
        return len(self.edges)

    async def publish(
        self, agent_id: str, kind: str, session_id: str, link: str, body: dict[str, Any]
    ) -> int:
        """Publish to an agent's inbox: how many received it (0: that agent is gone); StoreUnavailable."""
        msg = inbox.message(kind, session_id, link, self.agent_id, body)
        return await self.store.publish(self.store.inbox_of(agent_id), msg)

    async def send(self, agent_id: str, kind: str, session_id: str, link: str, body: dict[str, Any]) -> bool:
        """Publish to an agent's inbox; False when no one received it (agent gone or Redis down)."""
        try:
            return await self.publish(agent_id, kind, session_id, link, body) > 0
        except StoreUnavailable:
            return False

    async def open_edge(self, session_id: str, owner: str, conn: ClientConnection) -> EdgeLink | None:
        edge = EdgeLink(self, session_id, owner, conn)
        self.edges[edge.id] = edge
        if not await self.send(owner, "open", session_id, edge.id, {}):
            self.edges.pop(edge.id, None)
            return None
        edge.opened = True
        return edge

    async def check_links(self) -> None:
        """Closes links whose other agent vanished without a word (no inbox listener or heartbeat),
        and asks every other agent about the links it shares with this one (`_audit` answers)."""
        if self.subscribed.is_set() and not await self.store.heard():
            self._inbox_unheard = True  # the subscription died without an error reaching us
        peers = {e.owner for e in self.edges.values()} | {o.edge for o in self.owned.values()}
        if not peers:
            return
        gone = peers - await self.store.live(peers)
        for edge in [e for e in self.edges.values() if e.owner in gone]:
            edge.owner_gone()
        for link in [o for o in self.owned.values() if o.edge in gone]:
            link.stop()
        for peer in peers - gone:
            as_edge = [e.id for e in self.edges.values() if e.owner == peer and e.opened]
            as_owner = [o.id for o in self.owned.values() if o.edge == peer]
            if as_edge or as_owner:
                await self.send(peer, "links", "", "", {"edge": as_edge, "owner": as_owner})

    def _audit(self, sender: str, as_edge: list[str], as_owner: list[str]) -> None:
        """Another agent's view of our shared links: each one it holds that this agent does not know
        is gone here, so it is told to end it (a link is never left open with nobody behind it)."""
        for link in as_edge:
            if link not in self.owned:
                self._spawn(self._tell_lost(sender, link))
        for link in as_owner:
            if link not in self.edges:
                self._spawn(self.send(sender, "bye", "", link, {}))

    async def _tell_lost(self, edge: str, link: str) -> None:
        lost = error_event(ErrorCode.RELAY_LOST, "the relay to this session's agent broke; reconnect")
        await self.send(edge, "ev", "", link, {"e": lost})
        await self.send(edge, "close", "", link, {"code": CloseCode.RECONNECT, "reason": "relay lost"})

    def _inbox_lost(self) -> None:
        """Messages sent while the inbox was down are gone, so no link can be trusted to be whole."""
        for edge in list(self.edges.values()):
            edge.lost(ErrorCode.RELAY_LOST, "the relay to this session's agent broke; reconnect")
        for link in list(self.owned.values()):
            link.stop()

    # --- inbox --------------------------------------------------------------------------------
    async def _read_forever(self) -> None:
        backoff = 0.05
        while True:
            pubsub = self.store.pubsub()
            try:
                await pubsub.subscribe(self.store.inbox)
                if backoff > 0.05:
                    log.info("relay inbox resubscribed")
                self.subscribed.set()
                backoff = 0.05
                self._inbox_unheard = False
                while not self._inbox_unheard:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        self._dispatch(msg["data"])
                log.warning("relay inbox no longer heard by redis; resubscribing")
                self._inbox_lost()
            except (RedisError, OSError) as exc:
                if backoff == 0.05:  # first failure of a streak; retries stay quiet
                    log.warning("relay inbox lost; resubscribing", extra={"error": type(exc).__name__})
                self._inbox_lost()
            finally:
                self.subscribed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _dispatch(self, raw: str) -> None:
        try:
            msg = json.loads(raw)
            kind, sid, link = msg["k"], msg["s"], msg["l"]
        except (ValueError, KeyError, TypeError):
            log.warning("malformed relay message dropped")
            return
        RELAYED_MESSAGES.labels(kind).inc()
        if isinstance(msg.get("t"), int | float):
            direction = "to_owner" if kind in ("open", "msg", "bye") else "to_edge"
            RELAY_SECONDS.labels(direction).observe(max(0.0, time.time() - msg["t"]))
        if kind == "open":
            self.owned[link] = OwnerLink(self, link, sid, str(msg["f"]))
        elif kind == "msg" and (owner_link := self.owned.get(link)) is not None:
            owner_link.push(msg["m"])
        elif kind == "msg":  # a link this agent does not know (any more): its socket must not wait on it
            self._spawn(self._tell_lost(str(msg["f"]), link))
        elif kind == "bye" and (owner_link := self.owned.get(link)) is not None:
            owner_link.bye()
        elif kind == "links":
            self._audit(str(msg["f"]), list(msg.get("edge", [])), list(msg.get("owner", [])))
        elif kind == "ev" and (edge := self.edges.get(link)) is not None:
            edge.relay_event(msg["e"])
        elif kind == "ev":  # the socket of this link is gone from here: the owner's call must not wait on it
            self._spawn(self.send(str(msg["f"]), "bye", "", link, {}))
        elif kind == "close" and (edge := self.edges.pop(link, None)) is not None:
            edge.done = True
            edge.conn.close_soon(int(msg.get("code", CloseCode.ENDED)), str(msg.get("reason", ""))[:100])
        elif kind == "assign":
            self._spawn(self.calls.adopt(sid))
        elif kind == inbox.END:
            self._spawn(self.calls.end_local(sid))
