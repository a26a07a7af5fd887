"""aiohttp plumbing for the HTTP fakes: one runner, scripted faults, streamed bodies.

Handler cancellation is on, so a client that closes its stream is seen at once (the record's
`ended` is when the fake noticed): that is what the cancellation benchmark measures.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from tests.providers.fakes.base import FakeBase, Fault, Record


class HttpFake(FakeBase):
    content_type = "application/octet-stream"

    def __init__(self, api_key: str) -> None:
        super().__init__(api_key)
        self.chunk_delay_s = 0.0
        self._runner: web.AppRunner | None = None

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def authorized(self, request: web.Request) -> bool:
        raise NotImplementedError

    def error_body(self, status: int) -> dict[str, Any]:
        raise NotImplementedError

    async def record(self, request: web.Request) -> Record:
        started = time.monotonic()  # the request's headers are in: the service's own time starts
        body = await request.json() if request.can_read_body else None
        rec = Record(request.path, dict(request.headers), dict(request.query), body, started=started)
        self.records.append(rec)
        return rec

    def reject(self, rec: Record, status: int, headers: dict[str, str] | None = None) -> web.Response:
        rec.status, rec.outcome, rec.ended = status, "fault", time.monotonic()
        return web.json_response(self.error_body(status), status=status, headers=headers or {})

    async def stream(
        self, request: web.Request, rec: Record, fault: Fault | None, chunks: AsyncIterator[bytes], bad: bytes
    ) -> web.StreamResponse:
        """Send `chunks` as a chunked body, misbehaving as `fault` says."""
        resp = web.StreamResponse(headers={"Content-Type": self.content_type})
        try:
            await resp.prepare(request)
            sent = 0
            async for chunk in chunks:
                if fault is not None and sent == fault.after:
                    return await self._misbehave(request, resp, rec, fault, bad)
                await resp.write(chunk)
                rec.sent.append(time.monotonic())
                if rec.first_sent is None:
                    rec.first_sent = rec.sent[0]
                sent += 1
                if self.chunk_delay_s:
                    await asyncio.sleep(self.chunk_delay_s)
            await resp.write_eof()
            rec.outcome = "complete"
        except (asyncio.CancelledError, ConnectionResetError):
            rec.outcome = "client_closed"
            raise
        finally:
            rec.ended = time.monotonic()
        return resp

    async def _misbehave(
        self, request: web.Request, resp: web.StreamResponse, rec: Record, fault: Fault, bad: bytes
    ) -> web.StreamResponse:
        rec.outcome = "fault"
        if fault.mode == "malformed":
            await resp.write(bad)
            await resp.write_eof()
        elif fault.mode == "stall":
            await asyncio.sleep(3600)
        else:  # drop: cut the TCP connection mid-body
            if request.transport is not None:
                request.transport.abort()
        return resp

    async def guard(self, request: web.Request, rec: Record) -> tuple[web.Response | None, Fault | None]:
        """Auth first (like the real services), then a scripted status fault if one is queued."""
        if not self.authorized(request):
            return self.reject(rec, 401), None
        fault = self.take_fault()
        if fault is not None and fault.mode == "status":
            return self.reject(rec, fault.status, fault.headers), None
        return None, fault


def sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()
