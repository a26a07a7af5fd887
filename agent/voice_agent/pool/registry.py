"""Agent registry: this agent's entry in Redis (id, pool, address, capacity, load, draining) and its lease.

A heartbeat every HEARTBEAT_S keeps the entry alive and reconciles the agent's session set with
the calls it really runs, so counts the operator reads (per-agent sessions for
pod-deletion-cost, per-pool demand for the HPA) heal after a Redis restart.

The lease (the alive key, LEASE_TTL_S) is what the pool reads to decide that an agent is dead, so
it must not lapse while the agent lives. A saturated machine stalls the event loop for seconds at
a time (docs/reliability.md, "Liveness under load"): the lease is renewed from a thread with a
connection of its own, which a busy loop cannot hold up, and lasts many renewals. The thread
stops renewing once the loop has not answered for LOOP_WEDGED_S: an agent whose loop is stuck
that long serves nobody and is better declared dead. A process that exits loses its inbox
subscription at once, which the pool reads as death without waiting for the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable

from voice_agent.store.base import StoreUnavailable
from voice_agent.store.redis import Lease, RedisSessionStore

log = logging.getLogger(__name__)

HEARTBEAT_S = 1.0
# Far beyond the longest event-loop stall measured under load: only a process that stopped as a
# whole (a frozen VM, a partition) lets it lapse, and the fencing tokens keep that case safe.
LEASE_TTL_S = 10.0
LOOP_WEDGED_S = 30.0


async def stop_task(task: asyncio.Task[None], every_s: float = 0.5) -> None:
    """Cancels until the task is done. One cancel can be lost: a client library's read timeout that
    expires in the same loop iteration (after a stall, say) turns it into its own timeout error."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=every_s)


class LeaseKeeper:
    """Renews the lease every HEARTBEAT_S from its own thread while the event loop still answers."""

    def __init__(self, lease: Lease, loop: asyncio.AbstractEventLoop, every_s: float = HEARTBEAT_S) -> None:
        self.lease = lease
        self.every_s = every_s
        self._loop = loop
        self._answered = time.monotonic()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="registry-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Blocks until the thread is done, so no renewal can follow a deregistration."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(self.lease_timeout())
        self.lease.close()

    def lease_timeout(self) -> float:
        return self.every_s + 2 * self.lease.timeout_s

    def _answer(self) -> None:
        self._answered = time.monotonic()

    def _run(self) -> None:
        wedged = False
        while not self._stopping.wait(self.every_s):
            if time.monotonic() - self._answered > LOOP_WEDGED_S:
                if not wedged:
                    log.error(
                        "event loop unresponsive; lease left to lapse", extra={"after_s": LOOP_WEDGED_S}
                    )
                wedged = True
            else:
                wedged = False
                with contextlib.suppress(StoreUnavailable):
                    self.lease.renew()
            try:
                self._loop.call_soon_threadsafe(self._answer)
            except RuntimeError:  # the loop is closed: the agent is shutting down
                return


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
        self._keeper: LeaseKeeper | None = None
        self.healthy = False

    async def start(self) -> None:
        await self.beat()
        self._keeper = LeaseKeeper(self.store.lease(int(LEASE_TTL_S * 1000)), asyncio.get_running_loop())
        self._keeper.start()
        self._task = asyncio.create_task(self._beat_forever(), name="registry-heartbeat")

    async def beat(self) -> bool:
        try:
            lost = await self.store.heartbeat(self.url, int(LEASE_TTL_S * 1000), list(self._running()))
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
            await stop_task(self._task)
        if self._keeper is not None:
            await asyncio.to_thread(self._keeper.stop)
        with contextlib.suppress(StoreUnavailable):
            await self.store.deregister()
