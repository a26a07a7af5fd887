"""Abuse controls of the HTTP API: per-client creation rate, request body size and time, bearer token.

Each session holds real resources (a pipeline, a peer connection, a pool slot), so creating them
is what a hostile or buggy client would hammer; these checks run before any of that is spent.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voice_agent.sessions.connection import TokenBucket

# Buckets that refilled completely hold no information; past this many clients they are dropped.
MAX_TRACKED_CLIENTS = 10_000


class KeyedRateLimit:
    """A token bucket per client key (the client's IP), bounded in memory."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def retry_after(self, key: str) -> int:
        """0 when `key` may go ahead now (and is charged for it), else whole seconds to wait."""
        if not self.enabled:
            return 0
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED_CLIENTS:
                self._forget_idle()
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
        if bucket.take():
            return 0
        return max(1, math.ceil(bucket.time_to_token()))

    def _forget_idle(self) -> None:
        now = time.monotonic()
        full = [k for k, b in self._buckets.items() if b.full_at() <= now]
        for k in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[k]


def bearer_ok(header: str | None, token: str) -> bool:
    """Constant-time check of an `Authorization: Bearer <token>` header."""
    scheme, _, given = (header or "").partition(" ")
    ok_scheme = scheme.lower() == "bearer"
    return hmac.compare_digest(given.strip().encode(), token.encode()) and ok_scheme


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, declared (Content-Length) or chunked, and
    bodies that take longer than `timeout_s` to arrive with 408 (a slow-loris body).

    The body is read here, before any route runs, so a route that ignores its body (most do)
    cannot be used to stream an unbounded one; what fits is replayed to the app unchanged.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 10.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                await _refuse(send, 413, f"request body larger than {self.max_bytes} bytes")
                return
        body = bytearray()
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client went away before sending its body
                    body += message.get("body", b"")
                    if len(body) > self.max_bytes:
                        await _refuse(send, 413, f"request body larger than {self.max_bytes} bytes")
                        return
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await _refuse(send, 408, f"request body not received within {self.timeout_s:g} s", close=True)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)


async def _refuse(send: Send, status: int, detail: str, close: bool = False) -> None:
    """With `close`, the connection ends with the answer: a client that stalled its body must not
    keep the socket until the keep-alive timeout. (A 413 does not close: the client may still be
    sending, and closing under it turns the answer into a reset it never reads.)"""
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
