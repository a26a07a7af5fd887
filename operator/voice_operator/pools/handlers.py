"""VoiceAgentPool handlers: reconcile on create/resume/spec change, keep status and costs fresh."""

import logging
from typing import Any

import kopf

from voice_operator import constants as c
from voice_operator.config import OperatorConfig
from voice_operator.events import post
from voice_operator.kube import ApiError, Ref
from voice_operator.metrics import forget_pool_metrics
from voice_operator.pools.reconcile import reconcile_pool, refresh_pool
from voice_operator.runtime import PoolEntry, Runtime, get_runtime

log = logging.getLogger(__name__)
POOLS = (c.GROUP, c.VERSION, c.POOL_PLURAL)
REFERENCE_PROBLEMS = frozenset(
    {"SecretNotFound", "SecretKeyNotFound", "TuningProfileNotFound", "ResourceConflict"}
)
DEPLOYMENTS = ("apps", "v1", "deployments")
OWNED_DEPLOYMENTS = {c.LABEL_MANAGED_BY: c.MANAGER, c.LABEL_NAME: "voice-agent"}


async def _reconcile(body: kopf.Body, cold: bool, logger: kopf.Logger) -> None:
    rt = get_runtime()
    key = (body.metadata.namespace or "", body.metadata.name or "")
    known = rt.pools.get(key)
    before = list(known.problems) if known is not None else []
    try:
        post(body, await reconcile_pool(rt, body, cold=cold))
    except ApiError as e:
        raise kopf.TemporaryError(f"Kubernetes API error: {e}", delay=5) from e
    entry = rt.pool(*key)
    if entry.problems != before:  # logged once per change (the Degraded event comes with the status)
        for problem in entry.problems:
            logger.info("pool degraded: %s", problem.message)
    await _refresh(rt, entry)


async def _refresh(rt: Runtime, entry: PoolEntry) -> None:
    post(entry.body, await refresh_pool(rt, entry))


async def pool_created(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    await _reconcile(body, cold=True, logger=logger)


async def pool_changed(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    await _reconcile(body, cold=False, logger=logger)


async def pool_tick(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """Session load changes without any Kubernetes event: poll it, and the status follows."""
    rt = get_runtime()
    entry = rt.pools.get((body.metadata.namespace or "", body.metadata.name or ""))
    if entry is None:
        return
    if any(p.reason in REFERENCE_PROBLEMS for p in entry.problems):
        # A missing Secret or profile may have appeared since: recover without waiting for resync.
        await _reconcile(body, cold=False, logger=logger)
    else:
        await _refresh(rt, entry)


async def pool_resync(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """Repair drift (an owned object deleted or edited by hand) and re-check references."""
    await _reconcile(body, cold=False, logger=logger)


def pool_seen(body: kopf.Body, type: str | None, **_: Any) -> None:
    rt = get_runtime()
    key = (body.metadata.namespace or "", body.metadata.name or "")
    if type == "DELETED":
        rt.pools.pop(key, None)
        forget_pool_metrics(*key)
    elif key in rt.pools:
        rt.pools[key].body = dict(body)


async def deployment_seen(body: kopf.Body, type: str | None, logger: kopf.Logger, **_: Any) -> None:
    """A Deployment's status moved (pods ready, rollout progress): reflect it on the pool now."""
    rt = get_runtime()
    pool = (body.metadata.labels or {}).get(c.POOL_LABEL)
    if not pool:
        return
    key = (body.metadata.namespace or "", pool)
    if type == "DELETED":
        rt.deployments.pop(key, None)
    else:
        rt.deployments[key] = dict(body)
    entry = rt.pools.get(key)
    if entry is None:
        return
    entry.deployment = rt.deployments.get(key)
    if type == "DELETED" and entry.spec is not None:
        # Deleted by hand (drift) or by the garbage collector after the pool: only the API knows.
        pool_body = await rt.kube.get(Ref(c.API_VERSION, c.POOL_KIND, key[0], key[1]))
        if pool_body is not None and not pool_body.get("metadata", {}).get("deletionTimestamp"):
            logger.info("the agent Deployment was deleted: recreating it")
            await _reconcile(kopf.Body(pool_body), cold=False, logger=logger)  # type: ignore[arg-type]
            return
    if entry.spec is not None or entry.problems:
        await _refresh(rt, entry)


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    kopf.on.create(*POOLS, registry=registry)(pool_created)
    kopf.on.resume(*POOLS, registry=registry)(pool_changed)
    kopf.on.update(*POOLS, field="spec", registry=registry)(pool_changed)
    tick = config.status_interval_s
    kopf.timer(*POOLS, interval=tick, initial_delay=tick, registry=registry)(pool_tick)
    kopf.timer(*POOLS, interval=300, initial_delay=300, idle=60, registry=registry)(pool_resync)
    kopf.on.event(*POOLS, registry=registry)(pool_seen)
    kopf.on.event(*DEPLOYMENTS, labels=OWNED_DEPLOYMENTS, registry=registry)(deployment_seen)
