"""Writing a status subresource only when it changed (status writes are the chattiest calls)."""

from collections.abc import Mapping
from typing import Any

from voice_operator.kube import KubeClient, Ref


def status_changed(previous: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether a status write is needed (the transition times are carried, so equality is exact)."""
    return any(previous.get(k) != v for k, v in new.items())


async def write_status(
    kube: KubeClient, ref: Ref, previous: Mapping[str, Any], status: Mapping[str, Any]
) -> bool:
    if not status_changed(previous, status):
        return False
    await kube.patch(ref, {"status": dict(status)}, "status")
    return True
