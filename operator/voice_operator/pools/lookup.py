"""The pools as the external metrics API sees them: it only reads, and never starts a write.

On the replica that reconciles, the handlers keep each pool's state current (the pool_states
index). A standby replica, paused by kopf peering, sees no events: it reads the pool (and its
Redis URL) from the API itself and keeps that for LOOKUP_TTL_S.
"""

import dataclasses
import time

from voice_operator import constants as c
from voice_operator.fields import SpecError
from voice_operator.kube import KubeClient, Ref
from voice_operator.pools.references import check_references
from voice_operator.pools.spec import PoolSpec, parse_pool_spec
from voice_operator.pools.state import PoolStates

LOOKUP_TTL_S = 15.0


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
