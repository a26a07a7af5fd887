"""Reconciliation of one VoiceAgentPool: owned objects, references, status, deletion costs."""

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from voice_operator import constants as c
from voice_operator import metrics
from voice_operator.ensure import ConflictError, Outcome, ensure
from voice_operator.events import Event
from voice_operator.fields import SpecError
from voice_operator.kube import ApiError, KubeClient, Obj, Ref
from voice_operator.objects import Owner, pool_selector
from voice_operator.pools.load import PoolLoad, RedisUnavailable, read_load
from voice_operator.pools.references import REFERENCE_REASONS, check_references
from voice_operator.pools.render import render_pool, replaced_autoscaler
from voice_operator.pools.scaling import session_demand
from voice_operator.pools.spec import PoolSpec, parse_pool_spec
from voice_operator.pools.state import PoolState
from voice_operator.pools.status import Problem, pool_status, transition_events
from voice_operator.redis_clients import RedisClients
from voice_operator.status_io import status_changed

log = logging.getLogger(__name__)


def write_events(outcomes: Mapping[str, Outcome]) -> list[Event]:
    """What a reconcile did to the owned objects, told on the pool."""
    created = sorted(k for k, o in outcomes.items() if o is Outcome.CREATED)
    updated = sorted(k for k, o in outcomes.items() if o is Outcome.UPDATED)
    events = [Event("Normal", "Created", f"created {', '.join(created)}")] if created else []
    if "Deployment" in updated:
        events.append(Event("Normal", "RollingOut", "agent Deployment updated: rolling out the new spec"))
    elif updated:
        events.append(Event("Normal", "Updated", f"updated {', '.join(updated)}"))
    return events


async def reconcile_pool(
    kube: KubeClient, state: PoolState, body: Mapping[str, Any], *, cold: bool, scaler_address: str
) -> list[Event]:
    """Bring the owned objects in line with the spec. `cold`: the pool is new, create first.
    `scaler_address`: where KEDA reaches the operator's external scaler (the keda engine's trigger)."""
    owner = Owner.from_body(body)
    assert owner.namespace is not None
    with metrics.RECONCILE_SECONDS.labels(c.POOL_KIND).time():
        try:
            spec = parse_pool_spec(body.get("spec") or {})
        except SpecError as e:
            state.spec, state.problems = None, [Problem("InvalidSpec", p) for p in e.problems]
            metrics.RECONCILES.labels(c.POOL_KIND, "invalid").inc()
            return []
        problems, redis_url = await check_references(kube, owner.namespace, spec)
        outcomes: dict[str, Outcome] = {}
        objects = render_pool(owner, spec, scaler_address)
        results = await asyncio.gather(
            *(ensure(kube, o, lookup=not cold) for o in objects), return_exceptions=True
        )
        replaced = None if cold else await delete_replaced_autoscaler(kube, owner, spec)
        for obj, result in zip(objects, results, strict=True):
            if isinstance(result, ConflictError):
                problems.append(Problem("ResourceConflict", str(result)))
            elif isinstance(result, BaseException):
                metrics.RECONCILES.labels(c.POOL_KIND, "error").inc()
                raise result
            else:
                outcomes[str(obj["kind"])] = result[0]
                if obj["kind"] == "Deployment":
                    state.deployment = result[1]
        state.spec, state.redis_url, state.problems = spec, redis_url, problems
        metrics.RECONCILES.labels(c.POOL_KIND, "degraded" if problems else "ok").inc()
        events = write_events(outcomes)
        if replaced is not None:
            events.append(
                Event("Normal", "Updated", f"deleted {replaced}: the pool scales with {spec.engine}")
            )
        return events


async def delete_replaced_autoscaler(kube: KubeClient, owner: Owner, spec: PoolSpec) -> str | None:
    """Switching engines leaves one autoscaler: the other engine's object goes if this pool owns it
    (one read per reconcile; a cluster without KEDA answers 404). Returns the deleted kind."""
    api_version, kind = replaced_autoscaler(spec)
    ref = Ref(api_version, kind, owner.namespace, owner.name)
    try:
        existing = await kube.get(ref)
        owners = ((existing or {}).get("metadata") or {}).get("ownerReferences") or []
        if not any(r.get("uid") == owner.uid for r in owners):
            return None
        await kube.delete(ref)
    except ApiError as e:
        # A cluster where the operator may not read the other kind (no KEDA, RBAC without it) has
        # none of ours to delete: not a reason to fail the reconcile.
        log.warning("cannot check for a %s of %s/%s to delete: %s", kind, owner.namespace, owner.name, e)
        return None
    metrics.OBJECT_WRITES.labels(kind, "delete").inc()
    return kind


async def recheck_references(kube: KubeClient, state: PoolState) -> None:
    """Read the pool's Secrets and profile again: they change or vanish without any event the operator
    sees (it may get Secrets by name, never watch them). The next status shows what changed."""
    if state.spec is None:
        return
    problems, redis_url = await check_references(kube, state.namespace, state.spec)
    others = [p for p in state.problems if p.reason not in REFERENCE_REASONS]
    state.problems, state.redis_url = problems + others, redis_url


async def refresh_pool(
    kube: KubeClient, redis: RedisClients, state: PoolState, deployment: Mapping[str, Any] | None
) -> list[Event]:
    """Recompute the status and write it when it changed; returns the transitions worth telling.

    `deployment`: the agents' Deployment as last watched, None when not (yet) seen.
    """
    async with state.lock:
        load, problems = None, list(state.problems)
        if state.spec is not None:
            try:
                load = await read_load(redis, state.namespace, state.name, state.redis_url)
            except RedisUnavailable as e:
                problems.append(Problem("RedisUnavailable", str(e)))
        previous = state.status
        meta = state.body.get("metadata", {})
        status = pool_status(
            name=state.name,
            spec=state.spec,
            generation=meta.get("generation"),
            deployment=deployment if deployment is not None else state.deployment,
            load=load,
            problems=problems,
            previous=previous,
        )
        if load is not None and state.spec is not None:
            metrics.POOL_ACTIVE.labels(state.namespace, state.name).set(load.active_sessions)
            metrics.POOL_DEMAND.labels(state.namespace, state.name).set(
                session_demand(load.wanted_sessions, state.spec.buffer_sessions)
            )
            await sync_deletion_costs(kube, state, load)
        if not status_changed(previous, status):
            metrics.STATUS_REFRESHES.labels("unchanged").inc()
            return []
        metrics.STATUS_REFRESHES.labels("written").inc()
        patched = await kube.patch(
            Ref(c.API_VERSION, c.POOL_KIND, state.namespace, state.name), {"status": status}, "status"
        )
        if patched is not None:
            state.body = patched
        return transition_events(previous, status)


def deletion_cost_changes(pods: list[Obj], sessions: Mapping[str, int]) -> dict[str, str]:
    """Pod name -> cost for pods whose annotation lags their session count (agent id = pod name)."""
    changes = {}
    for pod in pods:
        name = str(pod["metadata"]["name"])
        want = str(sessions.get(name, 0))
        have = (pod["metadata"].get("annotations") or {}).get(c.DELETION_COST_ANNOTATION)
        if have != want:
            changes[name] = want
    return changes


async def sync_deletion_costs(kube: KubeClient, state: PoolState, load: PoolLoad) -> None:
    """Keep busy agents last in line on scale-down: cost = their live session count."""
    sessions = load.sessions_by_agent()
    if sessions == state.last_costs:
        return
    try:
        pods = await kube.list(Ref("v1", "Pod", state.namespace), labels=pool_selector(state.name))
        changes = deletion_cost_changes(pods, sessions)
        await asyncio.gather(
            *(
                kube.patch(
                    Ref("v1", "Pod", state.namespace, name),
                    {"metadata": {"annotations": {c.DELETION_COST_ANNOTATION: cost}}},
                )
                for name, cost in changes.items()
            )
        )
    except ApiError as e:
        log.warning("cannot update pod deletion costs of %s/%s: %s", state.namespace, state.name, e)
        return
    state.last_costs = sessions
