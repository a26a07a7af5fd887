"""Embedded in-memory session store: the zero-dependency default for one agent."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from voice_agent.protocol.sessions import SessionRecord, utcnow

log = logging.getLogger(__name__)


class MemorySessionStore:
    """Records live in a dict; a sweeper removes expired ones so memory stays bounded."""

    enabled_backend = "memory"

    def __init__(self, sweep_interval_s: float = 5.0) -> None:
        self._records: dict[str, SessionRecord] = {}
        self._sweep_interval_s = sweep_interval_s
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="session-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def healthy(self) -> bool:
        return True

    async def save(self, record: SessionRecord) -> None:
        self._records[record.id] = record.model_copy(deep=True)

    async def get(self, session_id: str) -> SessionRecord | None:
        rec = self._records.get(session_id)
        if rec is None:
            return None
        if rec.expired():
            self._records.pop(session_id, None)
            return None
        return rec.model_copy(deep=True)

    async def delete(self, session_id: str) -> bool:
        return self._records.pop(session_id, None) is not None

    async def list(self) -> list[SessionRecord]:
        now = utcnow()
        return [r.model_copy(deep=True) for r in self._records.values() if not r.expired(now)]

    def sweep(self) -> int:
        now = utcnow()
        dead = [sid for sid, rec in self._records.items() if rec.expired(now)]
        for sid in dead:
            del self._records[sid]
        return len(dead)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval_s)
            if removed := self.sweep():
                log.info("expired sessions removed", extra={"count": removed})
