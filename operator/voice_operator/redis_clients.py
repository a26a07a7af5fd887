"""Connections to the pools' Redis servers (the operator reads their session registries).

A pool's URL is either one server's or a Sentinel group's (docs/redis.md, "Connection"); the agent's
store/redis_url.py builds both, so the operator follows a failover exactly as the agents do.
"""

import redis.asyncio as aioredis

from voice_agent.store.redis_url import async_client, close_client


class RedisClients:
    """One connection pool per Redis URL, shared by all pools that use it."""

    def __init__(self, timeout_s: float = 2.0) -> None:
        self._clients: dict[str, aioredis.Redis] = {}
        self.timeout_s = timeout_s

    def get(self, url: str) -> "aioredis.Redis":
        client = self._clients.get(url)
        if client is None:
            client = async_client(
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
            await close_client(client)
