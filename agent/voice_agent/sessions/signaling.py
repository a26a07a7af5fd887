"""The signaling WebSocket (docs/api.md): receive, parse once, dispatch, answer errors.

Every bad input gets an `error` event and the session carries on. A socket closes with the code
whose meaning fits (docs/api.md, "Close codes"): 1000 only when the session ended, 1012 whenever the
session is intact and the client should reconnect to it. A socket for a session running on
another agent is relayed there (relay.py); validation and rate limits still happen here, and the
owner runs the relayed messages through the same loop (`receive_loop`) as a socket of its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable

from starlette.websockets import WebSocket, WebSocketDisconnect

from voice_agent.protocol.signaling import (
    Answer,
    AnyClientMessage,
    ClientMetrics,
    CloseCode,
    End,
    ErrorCode,
    Held,
    IceCandidate,
    Interrupt,
    Offer,
    Ping,
    PongEvent,
    SignalingError,
    Text,
    error_event,
    parse_frame,
    parse_message,
)
from voice_agent.sessions.admission import CapacityError, RemoteOwner
from voice_agent.sessions.call import Call, ClientLink
from voice_agent.sessions.connection import ClientConnection
from voice_agent.sessions.manager import CallManager
from voice_agent.telemetry import metrics
from voice_agent.telemetry.logs import session_id_var

log = logging.getLogger(__name__)

# A flood is reported once; it is over after this long without a rate-limited message. (Resetting
# on the next accepted message instead reported one flood several times: tokens trickle back in.)
FLOOD_QUIET_S = 1.0

# A text or binary frame from a client's socket, or a message relayed from the agent holding it.
Frame = str | bytes | dict[str, object] | None
MessageHandler = Callable[[AnyClientMessage], Awaitable[bool]]


async def dispatch(call: Call, conn: ClientLink, msg: AnyClientMessage) -> bool:
    """Handle one message; False means the client asked to end the session."""
    match msg:
        case Offer():
            await call.on_offer(msg)
        case IceCandidate():
            await call.on_candidate(msg)
        case Answer():
            raise SignalingError(ErrorCode.UNEXPECTED_ANSWER, "no offer from the agent is pending")
        case Text():
            await call.on_text(msg)
        case Interrupt():
            await call.on_interrupt()
        case Ping():
            conn.send(PongEvent(ts=msg.ts).wire())
        case ClientMetrics():
            call.on_client_metrics(msg)
        case Held():
            call.on_held(msg)
        case End():
            return False
    return True


async def handle(
    call: Call, conn: ClientLink, msg: AnyClientMessage, end_session: Callable[[str], Awaitable[bool]]
) -> bool:
    """Run one parsed message, answering failures with an error event; False once the session ended."""
    try:
        if not await dispatch(call, conn, msg):
            await end_session(call.id)
            return False
    except SignalingError as exc:
        metrics.ERRORS.labels(exc.code).inc()
        conn.send(exc.event())
    except Exception:
        log.exception("signaling handler failed")
        metrics.ERRORS.labels(ErrorCode.INTERNAL).inc()
        conn.send(error_event(ErrorCode.INTERNAL, "internal error handling message"))
    return True


async def receive_loop(
    frames: AsyncGenerator[Frame],
    conn: ClientLink,
    on_message: MessageHandler,
    max_bytes: int,
    metered: bool = True,
) -> None:
    """Parse each frame into a typed message and hand it on, until the frames end or the session does.

    `metered`: the signaling metrics count what arrives on a socket, so a relayed message is
    counted once, by the agent holding the socket.
    """
    async with contextlib.aclosing(frames):
        async for frame in frames:
            t0 = time.perf_counter()
            kind = "invalid"
            try:
                msg = parse_message(frame) if isinstance(frame, dict) else parse_frame(frame, max_bytes)
                kind = msg.type
                if not await on_message(msg):
                    return
            except SignalingError as exc:
                metrics.ERRORS.labels(exc.code).inc()
                conn.send(exc.event())
            finally:
                if metered:
                    metrics.SIGNALING_MESSAGES.labels(kind).inc()
                    metrics.SIGNALING_LATENCY.observe(time.perf_counter() - t0)


async def socket_frames(conn: ClientConnection) -> AsyncGenerator[Frame]:
    """The frames a client sends, less those over its rate limit (a flood is reported once)."""
    limited_at = -FLOOD_QUIET_S
    while True:
        try:
            event = await conn.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if event is None or event["type"] == "websocket.disconnect":
            return
        if not conn.limiter.take():
            metrics.SIGNALING_MESSAGES.labels("rate_limited").inc()
            now = time.monotonic()
            if now - limited_at > FLOOD_QUIET_S:
                conn.send(error_event(ErrorCode.RATE_LIMITED, "too many messages; slow down"))
            limited_at = now
            continue
        text = event.get("text")
        yield text if text is not None else event.get("bytes")


async def _refuse(ws: WebSocket, code: ErrorCode, message: str, close_code: CloseCode) -> None:
    await ws.send_text(json.dumps(error_event(code, message)))
    await ws.close(close_code, message[:120])


async def serve(ws: WebSocket, session_id: str, manager: CallManager) -> None:
    settings = manager.settings
    session_id_var.set(session_id)
    await ws.accept()
    metrics.WEBSOCKET_CONNECTIONS.inc()
    if not manager.socket_opened(session_id):
        metrics.ERRORS.labels(ErrorCode.TOO_MANY_SOCKETS).inc()
        try:
            await _refuse(
                ws, ErrorCode.TOO_MANY_SOCKETS, "too many connections for this session", CloseCode.TRY_AGAIN
            )
        finally:
            metrics.WEBSOCKET_CONNECTIONS.dec()
        return
    try:
        try:
            opened = await manager.open_call(session_id)
        except CapacityError as exc:
            await _refuse(ws, ErrorCode.CAPACITY, exc.reason, CloseCode.TRY_AGAIN)
            return
        if opened is None:
            await _refuse(ws, ErrorCode.UNKNOWN_SESSION, "no such session", CloseCode.UNKNOWN_SESSION)
            return
        conn = ClientConnection(ws, settings.max_messages_per_s, settings.message_burst)
        if isinstance(opened, RemoteOwner):
            await _serve_relayed(conn, session_id, opened, settings.max_frame_bytes)
            return
        call = opened
        await call.attach(conn)
        try:
            await receive_loop(
                socket_frames(conn),
                conn,
                lambda msg: handle(call, conn, msg, manager.end_session),
                settings.max_frame_bytes,
            )
        finally:
            call.detach(conn)
            # A client that went away leaves our writer waiting for events that never come. One
            # still there did not end its session (that closes with 1000 first): it may resume.
            await conn.aclose(CloseCode.RECONNECT, "closing")
    finally:
        manager.socket_closed(session_id)
        metrics.WEBSOCKET_CONNECTIONS.dec()


async def _serve_relayed(conn: ClientConnection, session_id: str, owner: RemoteOwner, max_bytes: int) -> None:
    edge = await owner.open_edge(session_id, conn)
    if edge is None:
        conn.send(error_event(ErrorCode.OWNER_GONE, "the session's agent is gone; reconnect to resume"))
        await conn.aclose(CloseCode.RECONNECT, "reconnect to resume")
        return
    log.info("relaying signaling", extra={"owner": owner.agent_id})
    try:
        await receive_loop(socket_frames(conn), conn, edge.forward, max_bytes)
    finally:
        await edge.close()
        await conn.aclose(CloseCode.RECONNECT, "relay closed")
