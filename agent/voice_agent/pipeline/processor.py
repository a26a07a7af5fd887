"""Frame processors: the one queue discipline of the pipeline.

A FrameProcessor handles data frames inline (cheap per-20 ms work such as VAD). A
QueuedProcessor works its data frames from a FIFO in its own task, so slow work (LLM, TTS)
never stalls the audio path. SystemFrames always bypass queues. An InterruptionFrame makes a
QueuedProcessor cancel its in-flight frame and drop everything queued before passing the
interruption on, so when it reaches the output nothing of the old turn is left anywhere upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from voice_agent.pipeline.frames import DataFrame, Frame, InterruptionFrame, SystemFrame

log = logging.getLogger(__name__)


class FrameProcessor:
    name = "processor"

    def __init__(self) -> None:
        self._next: FrameProcessor | None = None

    def link(self, nxt: FrameProcessor) -> FrameProcessor:
        self._next = nxt
        return nxt

    async def start(self) -> None:
        """Start background work; called once before the first frame."""

    async def stop(self) -> None:
        """Release everything; called once, also on error paths."""

    async def queue_frame(self, frame: Frame) -> None:
        if isinstance(frame, SystemFrame):
            await self.on_system(frame)
        else:
            assert isinstance(frame, DataFrame)
            await self.process(frame)

    async def on_system(self, frame: SystemFrame) -> None:
        await self.push(frame)

    async def process(self, frame: DataFrame) -> None:
        await self.push(frame)

    async def push(self, frame: Frame) -> None:
        if self._next is not None:
            await self._next.queue_frame(frame)


class QueuedProcessor(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self._queue: asyncio.Queue[DataFrame] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-worker")

    async def stop(self) -> None:
        await self._cancel_worker()

    async def queue_frame(self, frame: Frame) -> None:
        if isinstance(frame, SystemFrame):
            await self.on_system(frame)
        else:
            assert isinstance(frame, DataFrame)
            self._queue.put_nowait(frame)

    async def on_system(self, frame: SystemFrame) -> None:
        if isinstance(frame, InterruptionFrame):
            await self._cancel_worker()
            self._drop_queued()
            await self.on_interrupted(frame)
            await self.start()
        await self.push(frame)

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
