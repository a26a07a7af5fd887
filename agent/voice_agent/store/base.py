"""The session store interface the rest of the agent depends on."""

from __future__ import annotations

from typing import Protocol

from voice_agent.protocol.sessions import SessionRecord


class SessionStore(Protocol):
    """Durable home of session records; the call runtime holds only live media state."""

    @property
    def enabled_backend(self) -> str: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def healthy(self) -> bool: ...

    async def save(self, record: SessionRecord) -> None:
        """Create or replace; the record's expires_at sets its TTL."""

    async def get(self, session_id: str) -> SessionRecord | None:
        """None when unknown or expired."""

    async def delete(self, session_id: str) -> bool: ...

    async def list(self) -> list[SessionRecord]: ...


class StoreUnavailable(Exception):
    """The shared store cannot be reached; callers refuse new work with a clear 503."""


class OwnershipLost(Exception):
    """A fenced write was refused: another agent took this session over (or it was ended)."""


class SessionEnded(OwnershipLost):
    """The fenced write found the session ended (by its client through another agent, or by
    `kubectl delete voicesession`): the call is over, not moved, and its client is told so."""
