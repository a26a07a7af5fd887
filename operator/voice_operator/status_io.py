"""Writing a status subresource only when it changed (status writes are the chattiest calls)."""

from collections.abc import Mapping
from typing import Any

from voice_operator.kube import Ref
from voice_operator.pools.status import status_changed
from voice_operator.runtime import Runtime


async def write_status(rt: Runtime, ref: Ref, previous: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    if not status_changed(previous, status):
        return False
    await rt.kube.patch(ref, {"status": dict(status)}, "status")
    return True
