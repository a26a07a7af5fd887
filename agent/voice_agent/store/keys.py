"""Every Redis key and pub/sub channel name voicepool uses, in one place.

All names of a pool share the hash tag ``{pool}`` so that, on a Redis Cluster, the Lua scripts
that touch several of them (allocation, claim, fenced save) stay within one slot.

Layout (``P`` = pool name, ``A`` = agent id, ``S`` = session id)::

    vp:pools                         SET   pool names that have ever registered an agent
    vp:{P}:agents                    ZSET  member A, score = sessions A currently holds (its load)
    vp:{P}:agent:A                   HASH  id, pool, url, capacity, draining ("0"/"1"), started_ms, seen_ms
    vp:{P}:agent:A:alive             STR   heartbeat; PX TTL, gone = agent stale
    vp:{P}:agent:A:sessions          SET   session ids A holds (a live call or one about to start)
    vp:{P}:agent:A:inbox             CHAN  relay and control messages to A (its subscriber count
                                           doubles as an instant "process alive" signal)
    vp:{P}:session:S                 HASH  data (SessionRecord JSON), owner, epoch (fencing token),
                                           assigned_ms, ended ("1" = tombstone); PEXPIREAT = TTL
    vp:{P}:sessions                  ZSET  member S, score = expires_at in ms (index for listing)
    vp:{P}:wake                      STR   a session request found the pool at zero agents; EX TTL,
                                           written by the operator's waker, counted as demand
    vp:{P}:sessions:events           CHAN  S, published by every script that creates, saves, moves
                                           or ends session S (for the operator's sessions API: its
                                           watches, and the copy its lists answer from)

Session demand, for the operator (import these helpers; they return key names only):

- per-agent session counts: ``ZRANGE agents_key(P) 0 -1 WITHSCORES`` -> [(agent id, count)].
  Counts are kept equal to ``SCARD agent_sessions_key(P, A)`` by every script that changes
  ownership, and an agent whose heartbeat lapsed is removed from the ZSET by the next allocation
  or by the operator ignoring members whose ``agent_alive_key`` is missing.
- per-pool active sessions: the sum of those scores (live agents only).
- capacity: ``HGET agent_key(P, A) capacity``; draining: ``HGET agent_key(P, A) draining``.
- pools: ``SMEMBERS POOLS``.
"""

from __future__ import annotations

PREFIX = "vp"
POOLS = f"{PREFIX}:pools"


def _pool(pool: str) -> str:
    return f"{PREFIX}:{{{pool}}}"


def agents_key(pool: str) -> str:
    return f"{_pool(pool)}:agents"


def agent_key(pool: str, agent_id: str) -> str:
    return f"{_pool(pool)}:agent:{agent_id}"


def agent_alive_key(pool: str, agent_id: str) -> str:
    return f"{agent_key(pool, agent_id)}:alive"


def agent_sessions_key(pool: str, agent_id: str) -> str:
    return f"{agent_key(pool, agent_id)}:sessions"


def agent_inbox(pool: str, agent_id: str) -> str:
    return f"{agent_key(pool, agent_id)}:inbox"


def session_key(pool: str, session_id: str) -> str:
    return f"{_pool(pool)}:session:{session_id}"


def sessions_index_key(pool: str) -> str:
    return f"{_pool(pool)}:sessions"


def session_events(pool: str) -> str:
    return f"{_pool(pool)}:sessions:events"


def wake_key(pool: str) -> str:
    return f"{_pool(pool)}:wake"


def agent_prefix(pool: str) -> str:
    """Prefix the Lua scripts append `<agent id>`, `:alive`, `:sessions`, `:inbox` to."""
    return f"{_pool(pool)}:agent:"
