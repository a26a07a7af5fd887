"""The signaling WebSocket protocol (DESIGN.md): parse, validate, dispatch, answer errors.

Every bad input gets an `error` event and the session carries on; only an unknown session
(4404) or a replaced connection (4409) closes the socket. A socket for a session running on
another agent is relayed there (relay.py); validation and rate limits still happen here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from voice_agent import metrics
from voice_agent.call import Call, ClientLink
from voice_agent.connection import ClientConnection
from voice_agent.logs import session_id_var
from voice_agent.manager import CallManager, CapacityError, RemoteOwner
from voice_agent.peer import SignalingError

log = logging.getLogger(__name__)

CLOSE_UNKNOWN_SESSION = 4404
CLOSE_TRY_AGAIN = 1013
CLOSE_OWNER_GONE = 1012
# A flood is reported once; it is over after this long without a rate-limited message. (Resetting
# on the next accepted message instead reported one flood several times: tokens trickle back in.)
FLOOD_QUIET_S = 1.0
MESSAGE_TYPES = frozenset({"offer", "answer", "ice-candidate", "text", "interrupt", "ping", "end"})


def parse_message(raw: str | bytes | None, max_bytes: int) -> dict[str, Any]:
    if raw is None:
        raise SignalingError("invalid_message", "empty frame")
    if isinstance(raw, bytes):
        raise SignalingError("invalid_message", "binary frames are not supported; send JSON text")
    if len(raw) > max_bytes:
        raise SignalingError("frame_too_large", f"frame larger than {max_bytes} bytes")
    try:
        msg = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise SignalingError("invalid_json", "frame is not valid JSON") from None
    if not isinstance(msg, dict):
        raise SignalingError("invalid_message", "message must be a JSON object")
    kind = msg.get("type")
    if not isinstance(kind, str):
        raise SignalingError("invalid_message", "message needs a string 'type'")
    if kind not in MESSAGE_TYPES:
        raise SignalingError("unknown_type", f"unknown message type {kind[:40]!r}")
    return msg


def require(msg: dict[str, Any], field: str) -> Any:
    if field not in msg:
        raise SignalingError("missing_field", f"'{msg['type']}' needs field '{field}'")
    return msg[field]


async def dispatch(call: Call, conn: ClientLink, msg: dict[str, Any]) -> bool:
    """Handle one message; False means the client asked to end the session."""
    kind = msg["type"]
    if kind == "offer":
        await call.on_offer(require(msg, "sdp"))
    elif kind == "ice-candidate":
        require(msg, "candidate")
        await call.on_candidate(msg)
    elif kind == "answer":
        require(msg, "sdp")
        raise SignalingError("unexpected_answer", "no offer from the agent is pending")
    elif kind == "text":
        await call.on_text(require(msg, "text"))
    elif kind == "interrupt":
        await call.on_interrupt()
    elif kind == "ping":
        conn.send({"type": "pong", "ts": msg.get("ts")})
    elif kind == "end":
        return False
    return True


async def handle(
    call: Call, conn: ClientLink, msg: dict[str, Any], end_session: Callable[[str], Awaitable[bool]]
) -> bool:
    """Run one parsed message, answering failures with an error event; False once the session ended."""
    try:
        if not await dispatch(call, conn, msg):
            await end_session(call.id)
            return False
    except SignalingError as exc:
        metrics.ERRORS.labels(exc.code).inc()
        conn.send({"type": "error", "code": exc.code, "message": exc.message})
    except Exception:
        log.exception("signaling handler failed")
        metrics.ERRORS.labels("internal").inc()
        conn.send({"type": "error", "code": "internal", "message": "internal error handling message"})
    return True


async def _refuse(ws: WebSocket, code: str, message: str, close_code: int) -> None:
    await ws.send_text(json.dumps({"type": "error", "code": code, "message": message}))
    await ws.close(close_code, message[:120])


async def serve(ws: WebSocket, session_id: str, manager: CallManager) -> None:
    settings = manager.settings
    session_id_var.set(session_id)
    await ws.accept()
    metrics.WEBSOCKET_CONNECTIONS.inc()
    if not manager.socket_opened(session_id):
        metrics.ERRORS.labels("too_many_sockets").inc()
        try:
            await _refuse(ws, "too_many_sockets", "too many connections for this session", CLOSE_TRY_AGAIN)
        finally:
            metrics.WEBSOCKET_CONNECTIONS.dec()
        return
    try:
        try:
            opened = await manager.open_call(session_id)
        except CapacityError as exc:
            await _refuse(ws, "capacity", exc.reason, CLOSE_TRY_AGAIN)
            return
        if opened is None:
            await _refuse(ws, "unknown_session", "no such session", CLOSE_UNKNOWN_SESSION)
            return
        conn = ClientConnection(ws, settings.max_messages_per_s, settings.message_burst)
        if isinstance(opened, RemoteOwner):
            await _serve_relayed(ws, conn, session_id, opened, manager)
            return
        call = opened
        await call.attach(conn)
        try:
            await _receive_loop(
                conn, settings.max_frame_bytes, lambda msg: handle(call, conn, msg, manager.end_session)
            )
        finally:
            call.detach(conn)
            # A client that went away leaves our writer waiting for events that never come.
            await conn.aclose()
    finally:
        manager.socket_closed(session_id)
        metrics.WEBSOCKET_CONNECTIONS.dec()


async def _serve_relayed(
    ws: WebSocket, conn: ClientConnection, session_id: str, owner: RemoteOwner, manager: CallManager
) -> None:
    edge = await manager.relay.open_edge(session_id, owner.agent_id, conn) if manager.relay else None
    if edge is None:
        conn.send({"type": "error", "code": "owner_gone", "message": "the session's agent is gone"})
        await conn.aclose(CLOSE_OWNER_GONE, "reconnect to resume")
        return
    log.info("relaying signaling", extra={"owner": owner.agent_id})
    try:
        await _receive_loop(conn, manager.settings.max_frame_bytes, edge.forward)
    finally:
        await edge.close()
        await conn.aclose(CLOSE_OWNER_GONE, "relay closed")


async def _receive_loop(
    conn: ClientConnection,
    max_bytes: int,
    on_message: Callable[[dict[str, Any]], Awaitable[bool]],
) -> None:
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
                conn.send(
                    {"type": "error", "code": "rate_limited", "message": "too many messages; slow down"}
                )
            limited_at = now
            continue
        t0 = time.perf_counter()
        kind = "invalid"
        try:
            raw = event.get("text")
            msg = parse_message(raw if raw is not None else event.get("bytes"), max_bytes)
            kind = msg["type"]
            if not await on_message(msg):
                return
        except SignalingError as exc:
            metrics.ERRORS.labels(exc.code).inc()
            conn.send({"type": "error", "code": exc.code, "message": exc.message})
        finally:
            metrics.SIGNALING_MESSAGES.labels(kind).inc()
            metrics.SIGNALING_LATENCY.observe(time.perf_counter() - t0)
