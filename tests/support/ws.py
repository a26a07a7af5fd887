"""A bare signaling WebSocket for tests that speak the protocol by hand (bad input, takeovers)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


class Signaling:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, base_url: str, session_id: str) -> Signaling:
        url = base_url.replace("http://", "ws://") + f"/ws/v2/{session_id}"
        return cls(await connect(url, max_size=2**22, open_timeout=10))

    async def send(self, msg: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(json.dumps(msg) if isinstance(msg, dict) else msg)

    async def next_event(
        self, pred: Callable[[dict[str, Any]], bool] = lambda e: True, timeout: float = 10.0
    ) -> dict[str, Any]:
        """The first not-yet-consumed event matching `pred`, reading more from the socket as needed."""
        for i, event in enumerate(self.events):
            if pred(event):
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching event within {timeout}s; unconsumed: {self.events[-5:]}")
            raw = await asyncio.wait_for(self.ws.recv(), remaining)
            event = json.loads(raw)
            if pred(event):
                return event
            self.events.append(event)

    async def error(self, code: str, timeout: float = 10.0) -> dict[str, Any]:
        return await self.next_event(lambda e: e.get("type") == "error" and e.get("code") == code, timeout)

    async def ping(self, tag: Any, timeout: float = 10.0) -> None:
        """Round trip proving the socket and the session still work after whatever came before."""
        await self.send({"type": "ping", "ts": tag})
        await self.next_event(lambda e: e.get("type") == "pong" and e.get("ts") == tag, timeout)

    async def closed(self, timeout: float = 10.0) -> int | None:
        """Wait for the server to close; returns the close code."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                raw = await asyncio.wait_for(self.ws.recv(), deadline - time.monotonic())
                self.events.append(json.loads(raw))
        except ConnectionClosed:
            return self.ws.close_code
        raise TimeoutError(f"socket still open after {timeout}s")

    async def close(self) -> None:
        await self.ws.close()
