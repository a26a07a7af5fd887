"""Kubernetes events as data: reconcilers say what is worth telling, the kopf handlers post it."""

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import kopf


class Event(NamedTuple):
    type: str  # Normal or Warning
    reason: str
    message: str


def post(body: Mapping[str, Any], events: Iterable[Event]) -> None:
    """Queue the events on the object (only inside a handler: kopf posts them in the background)."""
    target = body if isinstance(body, kopf.Body) else kopf.Body(dict(body))  # type: ignore[arg-type]
    for event in events:
        kopf.event(target, type=event.type, reason=event.reason, message=event.message)
