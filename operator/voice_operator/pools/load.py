"""Reading session load from the agents' Redis registry.

The key layout belongs to the agent: every name comes from voice_agent.store.keys. Per pool P:
  agents_key(P)             ZSET  member agent id, score = sessions the agent holds
  agent_key(P, A)           HASH  capacity, draining ("0"/"1"), url, ...
  agent_alive_key(P, A)     STR   heartbeat with a TTL; gone = the agent is dead, its count stale
  agent_inbox(P, A)         CHAN  the agent process subscribes while it runs
  wake_key(P)               STR   the operator's waker: a session request while no agent was up
An agent is alive, as the agents' own allocation script decides it, when its heartbeat key exists
and its inbox has a subscriber (a killed process loses its subscription at once).
"""

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from voice_agent.store import keys
from voice_operator import constants as c
from voice_operator import metrics
from voice_operator.redis_clients import RedisClients


class RedisUnavailable(Exception):
    """Redis could not be read; the metrics API answers 503 and the pool reports it (the message
    says why, in words fit for the pool's condition)."""


@dataclasses.dataclass(frozen=True)
class AgentLoad:
    id: str
    active: int
    capacity: int
    draining: bool
    alive: bool


@dataclasses.dataclass(frozen=True)
class PoolLoad:
    agents: tuple[AgentLoad, ...]
    # A session request found no agent up within the wake's TTL (pools/scaler.py): one session of
    # demand, so that a pool at zero wakes for it.
    waking: bool = False

    @property
    def live(self) -> tuple[AgentLoad, ...]:
        return tuple(a for a in self.agents if a.alive)

    @property
    def active_sessions(self) -> int:
        """Sessions on live agents (draining ones still carry their calls)."""
        return sum(a.active for a in self.live)

    @property
    def wanted_sessions(self) -> int:
        """What the autoscaler is fed: the live sessions, or one for a request waiting for an agent."""
        return max(self.active_sessions, 1 if self.waking else 0)

    @property
    def free_capacity(self) -> int:
        return sum(max(0, a.capacity - a.active) for a in self.live if not a.draining)

    def sessions_by_agent(self) -> dict[str, int]:
        return {a.id: a.active for a in self.live}


def _int(raw: str | None) -> int:
    try:
        return max(0, int(float(raw))) if raw else 0
    except ValueError:
        return 0


def parse_agent(agent_id: str, sessions: float, fields: Mapping[str, str | None], alive: bool) -> AgentLoad:
    return AgentLoad(
        id=agent_id,
        active=max(0, int(sessions)),
        capacity=_int(fields.get("capacity")),
        draining=fields.get("draining") == "1",
        alive=alive,
    )


async def read_pool_load(client: "aioredis.Redis", pool: str, timeout_s: float = 2.0) -> PoolLoad:
    """One pipelined round trip for the agents and the wake, one more for all agents of the pool."""
    try:
        async with asyncio.timeout(timeout_s):
            async with client.pipeline(transaction=False) as pipe:
                pipe.zrange(keys.agents_key(pool), 0, -1, withscores=True)
                pipe.exists(keys.wake_key(pool))
                reply: Any = await pipe.execute()
            members: Sequence[tuple[str, float]] = reply[0]
            waking = bool(reply[1])
            if not members:
                return PoolLoad((), waking)
            async with client.pipeline(transaction=False) as pipe:
                for agent_id, _ in members:
                    pipe.hmget(keys.agent_key(pool, agent_id), ["capacity", "draining"])
                    pipe.exists(keys.agent_alive_key(pool, agent_id))
                pipe.pubsub_numsub(*(keys.agent_inbox(pool, agent_id) for agent_id, _ in members))
                results = await pipe.execute()
    except (aioredis.RedisError, OSError, TimeoutError) as e:
        raise RedisUnavailable(f"{type(e).__name__}: {e}") from e
    listening = {str(channel) for channel, count in results[-1] if int(count) > 0}
    agents = []
    for i, (agent_id, sessions) in enumerate(members):
        capacity, draining = results[2 * i]
        fields = {"capacity": capacity, "draining": draining}
        alive = bool(results[2 * i + 1]) and keys.agent_inbox(pool, agent_id) in listening
        agents.append(parse_agent(str(agent_id), sessions, fields, alive))
    return PoolLoad(tuple(sorted(agents, key=lambda a: a.id)), waking)


async def read_load(redis: RedisClients, namespace: str, name: str, url: str | None) -> PoolLoad:
    """A pool's load from its Redis (url None: its Secret is not resolved yet)."""
    if url is None:
        raise RedisUnavailable("the Redis URL is not resolved")
    try:
        return await read_pool_load(redis.get(url), c.pool_id(namespace, name), redis.timeout_s)
    except RedisUnavailable as e:
        metrics.REDIS_ERRORS.labels(namespace, name).inc()
        raise RedisUnavailable(f"cannot read session load from Redis: {e}") from e
