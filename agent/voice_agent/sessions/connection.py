"""A client's signaling WebSocket: ordered, non-blocking sends and an inbound rate limit.

The pipeline reports events from the audio path; it must never wait on a slow client. Events go
into a bounded queue drained by one writer task; a client that stops reading until the queue is
full is disconnected (it can reconnect and resume) instead of growing memory without bound.

A connection we closed (replaced, or too slow) stops being served even if the client neither
reads nor sends: otherwise a client that stopped reading pins its handler (and its send buffer)
for as long as it keeps the TCP connection open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketState

from voice_agent.protocol.signaling import CloseCode

log = logging.getLogger(__name__)

SEND_QUEUE_MAX = 1000
# How long a closing connection may take to flush its last events and close frame.
CLOSE_FLUSH_S = 2.0


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def time_to_token(self) -> float:
        """Seconds until `take` would succeed (as of the last `take`)."""
        return max(0.0, (1 - self._tokens) / self.rate)

    def full_at(self) -> float:
        """When the bucket is full again: from then on it is the same as a new one."""
        return self._at + (self.burst - self._tokens) / self.rate


class ClientConnection:
    def __init__(self, ws: WebSocket, rate: float, burst: int) -> None:
        self.ws = ws
        self.limiter = TokenBucket(rate, burst)
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(SEND_QUEUE_MAX)
        self._writer = asyncio.create_task(self._write(), name="ws-writer")
        self._gone = asyncio.Event()
        self.closed = False

    async def receive(self) -> Message | None:
        """The client's next ASGI message, or None once we closed this connection."""
        if not self.closed:
            incoming = asyncio.ensure_future(self.ws.receive())
            gone = asyncio.ensure_future(self._gone.wait())
            done: set[asyncio.Future[Any]] = set()
            try:
                done, _ = await asyncio.wait({incoming, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                gone.cancel()
                if incoming not in done:
                    incoming.cancel()
            if incoming in done:
                return incoming.result()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(self._writer), CLOSE_FLUSH_S)
        self._writer.cancel()
        return None

    def send(self, event: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            self._queue.put_nowait(("event", event))
        except asyncio.QueueFull:
            log.warning("client not reading; disconnecting it")
            self.close_soon(CloseCode.QUEUE_FULL, "send queue full")

    def close_soon(self, code: int, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self._gone.set()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(("close", (code, reason)))
        if self._queue.full():
            self._writer.cancel()
            self._closer = asyncio.create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        if self.ws.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                # Bounded: closing waits for send room a client that stopped reading never makes.
                await asyncio.wait_for(self.ws.close(code, reason), CLOSE_FLUSH_S)

    async def _write(self) -> None:
        while True:
            kind, payload = await self._queue.get()
            if kind == "close":
                await self._close(*payload)
                return
            try:
                await self.ws.send_text(json.dumps(payload, separators=(",", ":")))
            except Exception:
                self.closed = True
                return

    async def aclose(self, code: int = CloseCode.ENDED, reason: str = "") -> None:
        """Flush what is queued, then close."""
        self.close_soon(code, reason)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(self._writer), timeout=CLOSE_FLUSH_S)
        if not self._writer.done():
            self._writer.cancel()
            await self._close(code, reason)
