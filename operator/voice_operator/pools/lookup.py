"""The pools as the external metrics API sees them: it only reads, and never starts a write.

On the replica that reconciles, the handlers keep each pool's entry current. A standby replica,
paused by kopf peering, sees no events: it reads the pool (and its Redis URL) from the API itself
and keeps that for LOOKUP_TTL_S.
"""

import time

from voice_operator import constants as c
from voice_operator.fields import SpecError
from voice_operator.kube import Ref
from voice_operator.pools.references import check_references
from voice_operator.pools.spec import parse_pool_spec
from voice_operator.runtime import PoolEntry, Runtime

LOOKUP_TTL_S = 15.0


async def lookup_pool(rt: Runtime, namespace: str, name: str) -> PoolEntry | None:
    entry = rt.pools.get((namespace, name))
    if entry is not None and (entry.fetched_at is None or time.monotonic() - entry.fetched_at < LOOKUP_TTL_S):
        return entry
    body = await rt.kube.get(Ref(c.API_VERSION, c.POOL_KIND, namespace, name))
    if body is None:
        rt.pools.pop((namespace, name), None)
        return None
    try:
        spec = parse_pool_spec(body.get("spec") or {})
    except SpecError:
        return None
    _, redis_url = await check_references(rt.kube, namespace, spec)
    entry = rt.pool(namespace, name, body)
    if entry.fetched_at is None and entry.spec is not None:
        return entry  # the handlers got there first
    entry.spec, entry.redis_url, entry.fetched_at = spec, redis_url, time.monotonic()
    return entry
