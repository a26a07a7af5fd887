"""Owns the live calls of this agent: admission (capacity, draining), lookup, and cleanup."""

from __future__ import annotations

import asyncio
import logging
import secrets

from voice_agent import metrics
from voice_agent.call import Call
from voice_agent.models import SessionRecord
from voice_agent.providers.base import Providers
from voice_agent.settings import Settings
from voice_agent.store.base import SessionStore

log = logging.getLogger(__name__)


class CapacityError(Exception):
    """No room for another session here; the client should retry after `retry_after` seconds."""

    def __init__(self, reason: str, retry_after: int = 5) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class CallManager:
    def __init__(self, settings: Settings, store: SessionStore, providers: Providers) -> None:
        self.settings = settings
        self.store = store
        self.providers = providers
        self.calls: dict[str, Call] = {}
        self.draining = False
        self._admission = asyncio.Lock()

    @property
    def active(self) -> int:
        return len(self.calls)

    @property
    def at_capacity(self) -> bool:
        return self.active >= self.settings.max_sessions

    def _admit(self) -> None:
        if self.draining:
            raise CapacityError("agent is draining", retry_after=1)
        if self.at_capacity:
            raise CapacityError(f"agent at capacity ({self.settings.max_sessions} sessions)")

    async def create_session(self) -> SessionRecord:
        async with self._admission:
            self._admit()
            record = SessionRecord.new(
                secrets.token_urlsafe(16),
                self.settings.session_ttl_s,
                self.settings.agent_id,
                self.settings.pool,
            )
            await self.store.save(record)
            await self._start_call(record)
        log.info("session created", extra={"session_id": record.id})
        return record

    async def open_call(self, session_id: str) -> Call | None:
        """The call for a WebSocket: the live one, or a resumed one from the stored record."""
        call = self.calls.get(session_id)
        if call is not None:
            return call
        record = await self.store.get(session_id)
        if record is None or record.status == "ended":
            return None
        async with self._admission:
            if (call := self.calls.get(session_id)) is not None:
                return call
            self._admit()
            record.owner = self.settings.agent_id
            record.touch(self.settings.session_ttl_s)
            log.info("session resumed", extra={"session_id": session_id, "turns": len(record.history)})
            return await self._start_call(record)

    async def _start_call(self, record: SessionRecord) -> Call:
        call = Call(record, self.settings, self.store, self.providers, self._gone)
        self.calls[record.id] = call
        metrics.ACTIVE_SESSIONS.set(self.active)
        await call.start()
        return call

    async def _gone(self, call: Call) -> None:
        if self.calls.get(call.id) is call:
            del self.calls[call.id]
        metrics.ACTIVE_SESSIONS.set(self.active)

    async def end_session(self, session_id: str) -> bool:
        call = self.calls.get(session_id)
        if call is not None:
            await call.close("ended")
        return await self.store.delete(session_id) or call is not None

    async def close(self) -> None:
        """Shutdown: calls are suspended, not ended, so their records stay resumable elsewhere."""
        await asyncio.gather(*(c.close("disconnected") for c in list(self.calls.values())))
