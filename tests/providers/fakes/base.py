"""What the fakes share: scripted failures, request records, running in-loop or in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from tests.support.procs import free_port


@dataclass
class Fault:
    """How the next request fails: an HTTP status (with headers), or a misbehaving stream.

    mode: "status" (reject with `status`), "drop" (cut the connection after `after` chunks),
    "malformed" (send a payload that breaks the schema after `after` chunks), "stall" (stop
    answering after `after` chunks and hold the connection open).
    """

    mode: str = "status"
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    after: int = 0


@dataclass
class Record:
    """One request/connection as the fake saw it (times are time.monotonic())."""

    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: Any = None
    status: int = 200
    started: float = field(default_factory=time.monotonic)
    first_sent: float | None = None
    sent: list[float] = field(default_factory=list)  # when each chunk was written
    ended: float | None = None
    outcome: str = "open"  # complete | client_closed | fault
    audio_bytes: int = 0
    messages: list[Any] = field(default_factory=list)


class FakeServer(Protocol):
    port: int

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class FakeBase:
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.port = free_port()
        self.faults: list[Fault] = []
        self.records: list[Record] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def take_fault(self) -> Fault | None:
        return self.faults.pop(0) if self.faults else None


@contextlib.contextmanager
def in_thread(*servers: FakeServer, timeout: float = 10.0) -> Iterator[asyncio.AbstractEventLoop]:
    """Serve the fakes from their own loop, for tests whose loop is busy or blocked elsewhere."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="provider-fakes", daemon=True)
    thread.start()
    try:
        for server in servers:
            asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout)
        yield loop
    finally:
        for server in servers:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        loop.close()
