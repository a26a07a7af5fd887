"""Writing a status subresource only when it changed (status writes are the chattiest calls)."""

from collections.abc import Mapping
from typing import Any

from voice_operator.kube import Ref
from voice_operator.runtime import Runtime


def status_changed(previous: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether a status write is needed (the transition times are carried, so equality is exact)."""
    return any(previous.get(k) != v for k, v in new.items())


async def write_status(rt: Runtime, ref: Ref, previous: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    if not status_changed(previous, status):
        return False
    await rt.kube.patch(ref, {"status": dict(status)}, "status")
    return True
