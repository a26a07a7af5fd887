"""Session stores: the embedded in-memory default and (with REDIS_URL) Redis."""

from voice_agent.store.base import SessionStore
from voice_agent.store.memory import MemorySessionStore

__all__ = ["MemorySessionStore", "SessionStore"]
