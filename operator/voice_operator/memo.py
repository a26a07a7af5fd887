"""What the operator keeps in kopf's memo.

kopf hands every handler a memo: the operator-wide one to the lifecycle handlers, a shallow copy of
it per resource object to the others. What __main__ and the startup handler set is therefore shared
by all; what a handler sets on an object's copy stays with that object (a pool's state: see
pools/state.py for the pools' part of the memo).
"""

from typing import Protocol

import kopf
from aiohttp import web

from voice_operator.config import OperatorConfig
from voice_operator.kube import KubeClient
from voice_operator.redis_clients import RedisClients


class Stoppable(Protocol):
    async def stop(self) -> None: ...


class OperatorMemo(kopf.Memo):
    """kopf.Memo with the attributes the operator sets, typed (kopf.Memo reads them as dict keys)."""

    config: OperatorConfig  # read once, by __main__, before kopf starts
    kube: KubeClient  # set at startup: the API client for everything but kopf's own objects
    redis: RedisClients  # set at startup: one connection pool per pools' Redis URL
    servers: list[web.AppRunner]  # set at startup: the metrics API and /metrics
    scaler: Stoppable  # set at startup: KEDA's external scaler and the waker (pools/scaler.py)
