"""VoiceAgentPool handlers: reconcile on create/resume/spec change, keep status and costs fresh.

Each pool's state lives in its own kopf memo (pools/state.py); two kopf indexes, both keyed by
(namespace, pool name), make it and the agents' Deployments reachable from other objects' handlers
and from the metrics API: pool_states and pool_deployments.
"""

import logging
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

import kopf

from voice_operator import constants as c
from voice_operator.config import OperatorConfig
from voice_operator.events import post
from voice_operator.kube import ApiError, Ref
from voice_operator.metrics import forget_pool_metrics
from voice_operator.pools.reconcile import recheck_references, reconcile_pool, refresh_pool
from voice_operator.pools.references import REFERENCE_REASONS
from voice_operator.pools.state import PoolsMemo, PoolState

log = logging.getLogger(__name__)
POOLS = (c.GROUP, c.VERSION, c.POOL_PLURAL)
REFERENCE_PROBLEMS = REFERENCE_REASONS | {"ResourceConflict"}
DEPLOYMENTS = ("apps", "v1", "deployments")
OWNED_DEPLOYMENTS = {c.LABEL_MANAGED_BY: c.MANAGER, c.LABEL_NAME: "voice-agent"}

Key = tuple[str, str]
V = TypeVar("V")


def one(index: Mapping[Key, Collection[V]], key: Key) -> V | None:
    """The value indexed under a pool's key (one pool, one Deployment of that name)."""
    return next(iter(index.get(key) or ()), None)


def state_of(memo: PoolsMemo, body: kopf.Body) -> PoolState:
    state: PoolState | None = memo.get("pool")
    if state is None:
        state = memo.pool = PoolState(body.metadata.namespace or "", body.metadata.name or "")
    return state


def pool_states(body: kopf.Body, memo: PoolsMemo, **_: Any) -> dict[Key, PoolState]:
    """Index every pool's state; on each of the pool's events, its copy of the pool follows."""
    state = state_of(memo, body)
    state.body = dict(body)
    return {(state.namespace, state.name): state}


def pool_deployments(body: kopf.Body, **_: Any) -> dict[Key, Any]:
    """Index the agents' Deployments by their pool (their status feeds the pool's)."""
    pool = (body.metadata.labels or {}).get(c.POOL_LABEL)
    return {(body.metadata.namespace or "", pool): dict(body)} if pool else {}


async def _reconcile(
    body: Mapping[str, Any], state: PoolState, memo: PoolsMemo, cold: bool, logger: kopf.Logger
) -> None:
    before = list(state.problems)
    try:
        events = await reconcile_pool(
            memo.kube, state, body, cold=cold, scaler_address=memo.config.scaler_address
        )
        await post(memo.kube, body, events)
    except ApiError as e:
        raise kopf.TemporaryError(f"Kubernetes API error: {e}", delay=5) from e
    if state.problems != before:  # logged once per change (the Degraded event comes with the status)
        for problem in state.problems:
            logger.info("pool degraded: %s", problem.message)
    await _refresh(state, memo)


async def _refresh(state: PoolState, memo: PoolsMemo) -> None:
    deployment = one(memo.pool_deployments, (state.namespace, state.name))
    await post(memo.kube, state.body, await refresh_pool(memo.kube, memo.redis, state, deployment))


async def pool_created(body: kopf.Body, memo: PoolsMemo, logger: kopf.Logger, **_: Any) -> None:
    await _reconcile(body, state_of(memo, body), memo, cold=True, logger=logger)


async def pool_changed(body: kopf.Body, memo: PoolsMemo, logger: kopf.Logger, **_: Any) -> None:
    await _reconcile(body, state_of(memo, body), memo, cold=False, logger=logger)


async def pool_tick(body: kopf.Body, memo: PoolsMemo, logger: kopf.Logger, **_: Any) -> None:
    """Session load changes without any Kubernetes event: poll it, and the status follows."""
    state = state_of(memo, body)
    if not state.reconciled:
        return
    if any(p.reason in REFERENCE_PROBLEMS for p in state.problems):
        # A missing Secret or profile may have appeared since: recover without waiting for resync.
        await _reconcile(body, state, memo, cold=False, logger=logger)
    else:
        # A Secret deleted or edited since is noticed here, within one interval (no watch on Secrets).
        await recheck_references(memo.kube, state)
        await _refresh(state, memo)


async def pool_resync(body: kopf.Body, memo: PoolsMemo, logger: kopf.Logger, **_: Any) -> None:
    """Repair drift (an owned object deleted or edited by hand) and re-check references."""
    await _reconcile(body, state_of(memo, body), memo, cold=False, logger=logger)


def pool_gone(body: kopf.Body, type: str | None, **_: Any) -> None:
    """A deleted pool's series go with it (its state and index entries go with kopf's memory)."""
    if type == "DELETED":
        forget_pool_metrics(body.metadata.namespace or "", body.metadata.name or "")


async def deployment_seen(
    body: kopf.Body, type: str | None, memo: PoolsMemo, logger: kopf.Logger, **_: Any
) -> None:
    """A Deployment's status moved (pods ready, rollout progress): reflect it on the pool now."""
    pool = (body.metadata.labels or {}).get(c.POOL_LABEL)
    state = one(memo.pool_states, (body.metadata.namespace or "", pool)) if pool else None
    if state is None:
        return
    if type == "DELETED":
        state.deployment = None
        if state.spec is not None:
            # Deleted by hand (drift) or by the garbage collector after the pool: only the API knows.
            pool_body = await memo.kube.get(Ref(c.API_VERSION, c.POOL_KIND, state.namespace, state.name))
            if pool_body is not None and not pool_body.get("metadata", {}).get("deletionTimestamp"):
                logger.info("the agent Deployment was deleted: recreating it")
                await _reconcile(pool_body, state, memo, cold=False, logger=logger)
                return
    if state.reconciled:
        await _refresh(state, memo)


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    # The startup handler puts both indexes into the memo under these ids (lifecycle.py).
    kopf.index(*POOLS, id="pool_states", registry=registry)(pool_states)
    kopf.index(*DEPLOYMENTS, labels=OWNED_DEPLOYMENTS, id="pool_deployments", registry=registry)(
        pool_deployments
    )
    kopf.on.create(*POOLS, registry=registry)(pool_created)
    kopf.on.resume(*POOLS, registry=registry)(pool_changed)
    kopf.on.update(*POOLS, field="spec", registry=registry)(pool_changed)
    tick = config.status_interval_s
    kopf.timer(*POOLS, interval=tick, initial_delay=tick, registry=registry)(pool_tick)
    kopf.timer(*POOLS, interval=300, initial_delay=300, idle=60, registry=registry)(pool_resync)
    kopf.on.event(*POOLS, registry=registry)(pool_gone)
    kopf.on.event(*DEPLOYMENTS, labels=OWNED_DEPLOYMENTS, registry=registry)(deployment_seen)
