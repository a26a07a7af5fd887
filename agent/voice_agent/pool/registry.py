"""Agent registry: this agent's entry in Redis (id, pool, address, capacity, load, draining).

A heartbeat every HEARTBEAT_S keeps the entry alive (TTL HEARTBEAT_TTL_S) and reconciles the
agent's session set with the calls it really runs, so counts the operator reads (per-agent
sessions for pod-deletion-cost, per-pool demand for the HPA) heal after a Redis restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from voice_agent.store.base import StoreUnavailable
from voice_agent.store.redis import RedisSessionStore

log = logging.getLogger(__name__)

HEARTBEAT_S = 1.0
HEARTBEAT_TTL_S = 3.0


class Registry:
    def __init__(
        self,
        store: RedisSessionStore,
        url: str,
        running: Callable[[], Iterable[str]],
        on_lost_records: Callable[[list[str]], None],
        after_beat: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.url = url
        self._running = running
        self._on_lost_records = on_lost_records
        self._after_beat = after_beat
        self._task: asyncio.Task[None] | None = None
        self.healthy = False

    async def start(self) -> None:
        await self.beat()
        self._task = asyncio.create_task(self._beat_forever(), name="registry-heartbeat")

    async def beat(self) -> bool:
        try:
            lost = await self.store.heartbeat(self.url, int(HEARTBEAT_TTL_S * 1000), list(self._running()))
            if self._after_beat is not None:
                await self._after_beat()
        except StoreUnavailable as exc:
            if self.healthy:
                log.warning("registry heartbeat failed; live calls continue", extra={"error": str(exc)})
            self.healthy = False
            return False
        if not self.healthy:
            log.info("registered in redis", extra={"pool": self.store.pool, "url": self.url})
        self.healthy = True
        if lost:
            log.warning("redis lost session records; writing them back", extra={"count": len(lost)})
            self._on_lost_records(lost)
        return True

    async def set_draining(self) -> None:
        self.store.draining = True
        await self.beat()

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            await self.beat()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(StoreUnavailable):
            await self.store.deregister()
