"""Session data shared by the HTTP API, the session store and the call runtime.

The fields are those of a session in docs/api.md: its data, what horizontal scale needs (owner
agent, pool) and the conversation history, so a session can be resumed by any agent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

SessionStatus = Literal["created", "connected", "disconnected", "ended"]
ACTIVE_STATUSES: frozenset[str] = frozenset({"created", "connected"})


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str
    interrupted: bool = False


class SessionRecord(BaseModel):
    id: str
    created_at: datetime
    status: SessionStatus = "created"
    peer_connections: dict[str, Any] = Field(default_factory=dict)
    is_ai_speaking: bool = False
    transcript: str = ""
    ai_response: str = ""
    metrics: dict[str, Any] = Field(default_factory=dict)
    last_activity: datetime
    expires_at: datetime
    owner: str = ""
    pool: str = ""
    history: list[Message] = Field(default_factory=list)
    # Set by a draining agent as it moves the call away; the agent that resumes it measures the
    # silence the move caused from here to its media coming up (docs/api.md, "Metrics").
    moved_at: datetime | None = None

    @classmethod
    def new(cls, session_id: str, ttl_s: int, owner: str, pool: str) -> SessionRecord:
        now = utcnow()
        return cls(
            id=session_id,
            created_at=now,
            last_activity=now,
            expires_at=now + timedelta(seconds=ttl_s),
            owner=owner,
            pool=pool,
        )

    def touch(self, ttl_s: int) -> None:
        """Activity extends the session: TTL counts from the last thing that happened."""
        now = utcnow()
        self.last_activity = now
        self.expires_at = now + timedelta(seconds=ttl_s)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def expired(self, now: datetime | None = None) -> bool:
        return (now or utcnow()) >= self.expires_at


class SessionView(BaseModel):
    """What the API shows of a session (history is summarized, not dumped)."""

    id: str
    status: SessionStatus
    created_at: datetime
    last_activity: datetime
    expires_at: datetime
    owner: str
    pool: str
    is_ai_speaking: bool
    transcript: str
    ai_response: str
    turns: int
    metrics: dict[str, Any]

    @classmethod
    def of(cls, rec: SessionRecord) -> SessionView:
        return cls(
            id=rec.id,
            status=rec.status,
            created_at=rec.created_at,
            last_activity=rec.last_activity,
            expires_at=rec.expires_at,
            owner=rec.owner,
            pool=rec.pool,
            is_ai_speaking=rec.is_ai_speaking,
            transcript=rec.transcript,
            ai_response=rec.ai_response,
            turns=sum(1 for m in rec.history if m.role == "user"),
            metrics=rec.metrics,
        )


class CreatedSession(SessionView):
    ws_url: str
    ws_path: str
    ice_servers: list[dict[str, Any]]
