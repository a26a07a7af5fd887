"""Process-wide state shared by the kopf handlers and the metrics server.

kopf handlers are module-level functions, so the live objects (API client, Redis pools, the pool
registry the external metrics API answers from) hang off one Runtime set at operator startup.
"""

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

from voice_operator.config import OperatorConfig
from voice_operator.kube import KubeClient
from voice_operator.pools.load import RedisClients
from voice_operator.pools.spec import PoolSpec
from voice_operator.pools.status import Problem


@dataclasses.dataclass
class PoolEntry:
    namespace: str
    name: str
    body: Mapping[str, Any]
    spec: PoolSpec | None = None
    redis_url: str | None = None
    problems: list[Problem] = dataclasses.field(default_factory=list)
    deployment: Mapping[str, Any] | None = None
    last_costs: dict[str, int] | None = None
    # None: kept current by the handlers. Else: when the metrics API read it from the API itself
    # (a standby replica, paused by peering, sees no events), so it is re-read after a while.
    fetched_at: float | None = None
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)

    @property
    def status(self) -> Mapping[str, Any]:
        status = self.body.get("status")
        return status if isinstance(status, Mapping) else {}


@dataclasses.dataclass
class Runtime:
    config: OperatorConfig
    kube: KubeClient
    redis: RedisClients
    pools: dict[tuple[str, str], PoolEntry] = dataclasses.field(default_factory=dict)
    deployments: dict[tuple[str, str], Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    def pool(self, namespace: str, name: str, body: Mapping[str, Any] | None = None) -> PoolEntry:
        key = (namespace, name)
        entry = self.pools.get(key)
        if entry is None:
            entry = PoolEntry(namespace=namespace, name=name, body=body or {})
            entry.deployment = self.deployments.get(key)
            self.pools[key] = entry
        elif body is not None:
            entry.body = body
        return entry

    async def close(self) -> None:
        await self.redis.close()
        await self.kube.close()


_current: Runtime | None = None


def set_runtime(runtime: Runtime | None) -> None:
    global _current
    _current = runtime


def get_runtime() -> Runtime:
    if _current is None:
        raise RuntimeError("the operator runtime is not started")
    return _current
