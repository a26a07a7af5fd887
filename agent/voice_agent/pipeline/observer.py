"""Observers of the pipeline's frames, and the bus that hands every pushed or reported frame to them.

Observers keep turn state, metrics, history and client events; stages never call them. Each
observer names the frame types it wants, so the 50-a-second audio frames cost one dict lookup.

An observer runs synchronously when a frame is pushed or reported, before any stage receives it:
so a stage that reports a fact (the LLM taking up a turn) may rely on the observers' view being up
to date when `report` returns. A frame an observer derives (`publish` from `on_frame`) is handed
out at once, like a call: observers subscribed before the deriving one see the cause first and the
derived frame second; those after it see the derived frame first. The subscription order in
pipeline.py is chosen for the client's event order (a reply's last words, then the turn's metrics,
then the status).
"""

from __future__ import annotations

from typing import Protocol

from voice_agent.pipeline.frames import Frame


class FrameObserver(Protocol):
    @property
    def frame_types(self) -> tuple[type[Frame], ...]: ...

    def on_frame(self, frame: Frame) -> None: ...


class FrameBus:
    def __init__(self) -> None:
        self._observers: list[FrameObserver] = []
        self._routes: dict[type[Frame], tuple[FrameObserver, ...]] = {}

    def subscribe(self, observer: FrameObserver) -> None:
        self._observers.append(observer)
        self._routes.clear()

    def publish(self, frame: Frame) -> None:
        kind = type(frame)
        route = self._routes.get(kind)
        if route is None:
            route = tuple(o for o in self._observers if issubclass(kind, o.frame_types))
            self._routes[kind] = route
        for observer in route:
            observer.on_frame(frame)
