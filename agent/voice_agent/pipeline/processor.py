"""Frame processors: the one queue discipline of the pipeline, and the one way facts leave a stage.

A FrameProcessor handles data frames inline (cheap per-20 ms work such as VAD). A
QueuedProcessor works its data frames from a FIFO in its own task, so slow work (LLM, TTS)
never stalls the audio path. SystemFrames always bypass queues. An InterruptionFrame makes a
QueuedProcessor cancel its in-flight frame and drop everything queued before passing the
interruption on, so when it reaches the output nothing of the old turn is left anywhere upstream.

A stage has three verbs. `push` hands a frame it made to its neighbour, and the observers see it
first. `forward` passes on a frame it received (the observers saw it when it was made). `report`
publishes a fact no stage acts on (ReportFrame) to the observers only; it is synchronous, so
provider callbacks and the output track's clock can report without a task hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging

from voice_agent.pipeline.frames import DataFrame, Frame, InterruptionFrame, ReportFrame, SystemFrame
from voice_agent.pipeline.observer import FrameBus

log = logging.getLogger(__name__)


class Direction(enum.Enum):
    DOWNSTREAM = "downstream"  # towards the output track
    UPSTREAM = "upstream"  # towards the VAD; system frames only


DOWNSTREAM = Direction.DOWNSTREAM
UPSTREAM = Direction.UPSTREAM


class FrameProcessor:
    name = "processor"

    def __init__(self) -> None:
        self._next: FrameProcessor | None = None
        self._prev: FrameProcessor | None = None
        self._bus: FrameBus | None = None

    def link(self, nxt: FrameProcessor) -> FrameProcessor:
        self._next = nxt
        nxt._prev = self
        return nxt

    def attach(self, bus: FrameBus) -> None:
        """The observers this stage's frames go to (none until attached: a stage tested alone)."""
        self._bus = bus

    async def start(self) -> None:
        """Start background work; called once before the first frame."""

    async def stop(self) -> None:
        """Release everything; called once, also on error paths."""

    async def queue_frame(self, frame: Frame, direction: Direction = DOWNSTREAM) -> None:
        if isinstance(frame, SystemFrame):
            await self.on_system(frame, direction)
        else:
            assert isinstance(frame, DataFrame) and direction is DOWNSTREAM
            await self._receive(frame)

    async def _receive(self, frame: DataFrame) -> None:
        await self.process(frame)

    async def on_system(self, frame: SystemFrame, direction: Direction) -> None:
        await self.forward(frame, direction)

    async def process(self, frame: DataFrame) -> None:
        await self.forward(frame)

    async def push(self, frame: SystemFrame | DataFrame, direction: Direction = DOWNSTREAM) -> None:
        if self._bus is not None:
            self._bus.publish(frame)
        await self.forward(frame, direction)

    async def forward(self, frame: Frame, direction: Direction = DOWNSTREAM) -> None:
        target = self._next if direction is DOWNSTREAM else self._prev
        if target is not None:
            await target.queue_frame(frame, direction)

    def report(self, frame: ReportFrame) -> None:
        if self._bus is not None:
            self._bus.publish(frame)


class QueuedProcessor(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self._queue: asyncio.Queue[DataFrame] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-worker")

    async def stop(self) -> None:
        await self._cancel_worker()

    async def _receive(self, frame: DataFrame) -> None:
        self._queue.put_nowait(frame)

    async def on_system(self, frame: SystemFrame, direction: Direction) -> None:
        if isinstance(frame, InterruptionFrame):
            await self._cancel_worker()
            self._drop_queued()
            await self.on_interrupted(frame)
            await self.start()
        await self.forward(frame, direction)

    async def on_interrupted(self, frame: InterruptionFrame) -> None:
        """Hook for per-stage cleanup after the in-flight frame was cancelled."""

    def _drop_queued(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    async def _cancel_worker(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            frame = await self._queue.get()
            try:
                await self.process(frame)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed on %s", self.name, type(frame).__name__)
                await self.on_error(frame)

    async def on_error(self, frame: DataFrame) -> None:
        """Hook: a frame failed; the stage keeps running for the next one."""
