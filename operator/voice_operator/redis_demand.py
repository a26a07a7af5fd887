"""Reading session load from the agents' Redis registry.

The key layout belongs to the agent (voice_agent/keys.py); these functions mirror it so they can
later import from there:
  voicepool:agent:{id}          hash: id, pool, address, capacity, active, draining ("0"/"1"), heartbeat
  voicepool:agent:{id}:alive    key with a TTL; an agent without it is dead and its numbers are stale
  voicepool:pool:{pool}:agents  set of agent ids registered in the pool
"""

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence

import redis.asyncio as aioredis


def agent_key(agent_id: str) -> str:
    return f"voicepool:agent:{agent_id}"


def agent_alive_key(agent_id: str) -> str:
    return f"voicepool:agent:{agent_id}:alive"


def pool_agents_key(pool: str) -> str:
    return f"voicepool:pool:{pool}:agents"


class RedisUnavailable(Exception):
    """Redis could not be read; the metrics API answers 503 and the pool reports it."""


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

    @property
    def live(self) -> tuple[AgentLoad, ...]:
        return tuple(a for a in self.agents if a.alive)

    @property
    def active_sessions(self) -> int:
        """Sessions on live agents (draining ones still carry their calls)."""
        return sum(a.active for a in self.live)

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


def parse_agent(agent_id: str, fields: Mapping[str, str], alive: bool) -> AgentLoad:
    return AgentLoad(
        id=agent_id,
        active=_int(fields.get("active")),
        capacity=_int(fields.get("capacity")),
        draining=fields.get("draining", "0") == "1",
        alive=alive and bool(fields),
    )


async def read_pool_load(client: "aioredis.Redis", pool: str, timeout_s: float = 2.0) -> PoolLoad:
    """One SMEMBERS plus one pipelined round trip for all agents of the pool."""
    try:
        async with asyncio.timeout(timeout_s):
            members = await client.smembers(pool_agents_key(pool))
            ids: Sequence[str] = sorted(str(m) for m in members)
            if not ids:
                return PoolLoad(())
            async with client.pipeline(transaction=False) as pipe:
                for agent_id in ids:
                    pipe.hgetall(agent_key(agent_id))
                    pipe.exists(agent_alive_key(agent_id))
                results = await pipe.execute()
    except (aioredis.RedisError, OSError, TimeoutError) as e:
        raise RedisUnavailable(f"{type(e).__name__}: {e}") from e
    agents = []
    for i, agent_id in enumerate(ids):
        fields, alive = results[2 * i], results[2 * i + 1]
        agents.append(parse_agent(agent_id, fields or {}, bool(alive)))
    return PoolLoad(tuple(agents))


class RedisClients:
    """One connection pool per Redis URL, shared by all pools that use it."""

    def __init__(self, timeout_s: float = 2.0) -> None:
        self._clients: dict[str, aioredis.Redis] = {}
        self.timeout_s = timeout_s

    def get(self, url: str) -> "aioredis.Redis":
        client = self._clients.get(url)
        if client is None:
            client = aioredis.Redis.from_url(
                url,
                decode_responses=True,
                socket_timeout=self.timeout_s,
                socket_connect_timeout=self.timeout_s,
                retry_on_timeout=False,
            )
            self._clients[url] = client
        return client

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
