"""The pools as the external metrics API sees them: it only reads, and never starts a write.

On the replica that reconciles, the handlers keep each pool's state current (the pool_states
index). A standby replica, paused by kopf peering, sees no events: it reads the pool (and its
Redis URL) from the API itself and keeps that for LOOKUP_TTL_S.
"""

import asyncio
import dataclasses
import time

from voice_operator import constants as c
from voice_operator.fields import SpecError
from voice_operator.kube import KubeClient, Ref
from voice_operator.pools.references import check_references
from voice_operator.pools.spec import PoolSpec, parse_pool_spec
from voice_operator.pools.state import PoolStates

LOOKUP_TTL_S = 15.0
# Which pools a namespace has, for the sessions API: a new pool's sessions list within this.
LIST_TTL_S = 5.0


@dataclasses.dataclass(frozen=True)
class MetricTarget:
    """What answering a pool's metric takes: its spec (the buffer) and where its load is."""

    spec: PoolSpec
    redis_url: str | None


class PoolLookup:
    def __init__(self, kube: KubeClient, states: PoolStates) -> None:
        self._kube = kube
        self._states = states
        self._fetched: dict[tuple[str, str], tuple[float, MetricTarget]] = {}
        self._listed: dict[str | None, tuple[float, list[tuple[str, str]]]] = {}

    async def all(self, namespace: str | None) -> list[tuple[str, str, MetricTarget]]:
        """Every pool of a namespace (None: of all) that can be acted on: (namespace, name, target)."""
        listed = self._listed.get(namespace)
        if listed is None or time.monotonic() - listed[0] >= LIST_TTL_S:
            bodies = await self._kube.list(Ref(c.API_VERSION, c.POOL_KIND, namespace))
            names = [(str(b["metadata"]["namespace"]), str(b["metadata"]["name"])) for b in bodies]
            listed = self._listed[namespace] = (time.monotonic(), names)
        targets = await asyncio.gather(*(self.get(ns, name) for ns, name in listed[1]))
        return [(ns, name, t) for (ns, name), t in zip(listed[1], targets, strict=True) if t is not None]

    async def get(self, namespace: str, name: str) -> MetricTarget | None:
        """None for no pool of that name, or one whose spec cannot be acted on."""
        key = (namespace, name)
        state = next(iter(self._states.get(key) or ()), None)
        if state is not None and state.reconciled:
            return MetricTarget(state.spec, state.redis_url) if state.spec is not None else None
        fetched = self._fetched.get(key)
        if fetched is not None and time.monotonic() - fetched[0] < LOOKUP_TTL_S:
            return fetched[1]
        body = await self._kube.get(Ref(c.API_VERSION, c.POOL_KIND, namespace, name))
        if body is None:
            self._fetched.pop(key, None)
            return None
        try:
            spec = parse_pool_spec(body.get("spec") or {})
        except SpecError:
            return None
        _, redis_url = await check_references(self._kube, namespace, spec)
        target = MetricTarget(spec, redis_url)
        self._fetched[key] = (time.monotonic(), target)
        return target
