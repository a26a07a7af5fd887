"""How late the event loop runs: the one figure behind late audio frames, slow signaling and lapsed leases.

A task asks to sleep `TICK_S` and measures how much later than that it woke: the time every other
task spent waiting for the loop at that moment. Each measurement goes into
`voice_event_loop_lag_seconds`, and a stall long enough to be felt in a call is logged with its
length (docs/reliability.md, "Liveness under load").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from voice_agent.telemetry import metrics

log = logging.getLogger(__name__)

TICK_S = 0.1
# Longer than one 20 ms audio frame by far, shorter than anything a user waits for: worth a line.
STALL_LOG_S = 0.5


class LoopMonitor:
    def __init__(self, tick_s: float = TICK_S, keep: bool = False) -> None:
        self.tick_s = tick_s
        self.longest_s = 0.0
        # Every measurement, for a process that reports its own lag (a load generator) rather than export it.
        self.samples: list[float] | None = [] if keep else None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="loop-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(self.tick_s)
            lag = max(0.0, loop.time() - asked - self.tick_s)
            metrics.EVENT_LOOP_LAG.observe(lag)
            self.longest_s = max(self.longest_s, lag)
            if self.samples is not None:
                self.samples.append(lag)
            if lag >= STALL_LOG_S:
                log.warning("event loop stalled", extra={"lag_ms": round(lag * 1000)})
