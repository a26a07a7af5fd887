"""Reconciliation of one VoiceAgentPool: owned objects, references, status, deletion costs."""

import asyncio
import base64
import logging
import time
from collections.abc import Mapping
from typing import Any

from voice_operator import constants as c
from voice_operator import metrics
from voice_operator.ensure import ConflictError, Outcome, ensure
from voice_operator.fields import SpecError
from voice_operator.kube import ApiError, Obj, Ref
from voice_operator.objects import Owner, pool_selector
from voice_operator.pools.load import PoolLoad, RedisUnavailable, read_pool_load
from voice_operator.pools.render import render_pool
from voice_operator.pools.scaling import session_demand
from voice_operator.pools.spec import PoolSpec, parse_pool_spec
from voice_operator.pools.status import Problem, pool_status, status_changed, transition_events
from voice_operator.runtime import PoolEntry, Runtime

log = logging.getLogger(__name__)


def _decode(secret: Mapping[str, Any], key: str) -> str | None:
    data = secret.get("data") or {}
    if key in data:
        return base64.b64decode(data[key]).decode()
    string_data = secret.get("stringData") or {}
    value = string_data.get(key)
    return str(value) if value is not None else None


async def check_references(rt: Runtime, namespace: str, spec: PoolSpec) -> tuple[list[Problem], str | None]:
    """Missing Secrets/keys or profile make the pool Degraded; returns the Redis URL when known."""
    problems: list[Problem] = []
    names = spec.secret_names()
    secrets = await asyncio.gather(*(rt.kube.get(Ref("v1", "Secret", namespace, n)) for n in names))
    by_name = dict(zip(names, secrets, strict=True))
    wanted: list[tuple[str, str]] = [(p.secret.name, p.secret.key) for p in spec.providers if p.secret]
    if spec.redis_secret is not None:
        wanted.append((spec.redis_secret.name, spec.redis_secret.key))
    if spec.turn is not None:
        wanted += [
            (spec.turn.secret_name, spec.turn.username_key),
            (spec.turn.secret_name, spec.turn.credential_key),
        ]
    for name in names:
        if by_name[name] is None:
            problems.append(Problem("SecretNotFound", f"Secret {namespace}/{name} not found"))
    for name, key in wanted:
        secret = by_name.get(name)
        if secret is not None and _decode(secret, key) is None:
            problems.append(Problem("SecretKeyNotFound", f"Secret {namespace}/{name} has no key {key!r}"))
    if spec.tuning_profile:
        profile = await rt.kube.get(Ref(c.API_VERSION, c.PROFILE_KIND, None, spec.tuning_profile))
        if profile is None:
            problems.append(
                Problem("TuningProfileNotFound", f"NodeTuningProfile {spec.tuning_profile} not found")
            )
    redis_url = spec.redis_url
    if spec.redis_secret is not None and by_name.get(spec.redis_secret.name) is not None:
        redis_url = _decode(by_name[spec.redis_secret.name] or {}, spec.redis_secret.key)
    return problems, redis_url


async def reconcile_pool(rt: Runtime, body: Mapping[str, Any], *, cold: bool) -> dict[str, Outcome]:
    """Bring the owned objects in line with the spec. `cold`: the pool is new, create first."""
    owner = Owner.from_body(body)
    assert owner.namespace is not None
    entry = rt.pool(owner.namespace, owner.name, body)
    owner_key = (owner.namespace, owner.name)
    with metrics.RECONCILE_SECONDS.labels(c.POOL_KIND).time():
        try:
            spec = parse_pool_spec(body.get("spec") or {})
        except SpecError as e:
            entry.spec, entry.problems = None, [Problem("InvalidSpec", str(e))]
            metrics.RECONCILES.labels(c.POOL_KIND, "invalid").inc()
            return {}
        problems, redis_url = await check_references(rt, owner.namespace, spec)
        outcomes: dict[str, Outcome] = {}
        objects = render_pool(owner, spec)
        results = await asyncio.gather(
            *(ensure(rt.kube, o, lookup=not cold) for o in objects), return_exceptions=True
        )
        for obj, result in zip(objects, results, strict=True):
            if isinstance(result, ConflictError):
                problems.append(Problem("ResourceConflict", str(result)))
            elif isinstance(result, BaseException):
                metrics.RECONCILES.labels(c.POOL_KIND, "error").inc()
                raise result
            else:
                outcomes[str(obj["kind"])] = result[0]
                if obj["kind"] == "Deployment" and owner_key not in rt.deployments:
                    # Before the Deployment watch has delivered it (new pool, or just restarted).
                    entry.deployment = result[1]
        entry.spec, entry.redis_url, entry.problems = spec, redis_url, problems
        entry.fetched_at = None
        metrics.RECONCILES.labels(c.POOL_KIND, "degraded" if problems else "ok").inc()
        return outcomes


LOOKUP_TTL_S = 15.0


async def lookup_pool(rt: Runtime, namespace: str, name: str) -> PoolEntry | None:
    """The pool as the metrics API needs it: from the handlers, or read from the API and cached."""
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
    _, redis_url = await check_references(rt, namespace, spec)
    entry = rt.pool(namespace, name, body)
    if entry.fetched_at is None and entry.spec is not None:
        return entry  # the handlers got there first
    entry.spec, entry.redis_url, entry.fetched_at = spec, redis_url, time.monotonic()
    return entry


async def read_load(rt: Runtime, entry: PoolEntry) -> tuple[PoolLoad | None, Problem | None]:
    if entry.redis_url is None:
        return None, Problem("RedisUnavailable", "the Redis URL is not resolved")
    try:
        load = await read_pool_load(
            rt.redis.get(entry.redis_url), c.pool_id(entry.namespace, entry.name), rt.redis.timeout_s
        )
    except RedisUnavailable as e:
        metrics.REDIS_ERRORS.labels(entry.namespace, entry.name).inc()
        return None, Problem("RedisUnavailable", f"cannot read session load from Redis: {e}")
    return load, None


async def refresh_pool(rt: Runtime, entry: PoolEntry) -> Mapping[str, Any] | None:
    """Recompute the status and write it when it changed; returns the new status if written."""
    async with entry.lock:
        load, redis_problem = await read_load(rt, entry) if entry.spec is not None else (None, None)
        problems = list(entry.problems) + ([redis_problem] if redis_problem else [])
        previous = entry.status
        meta = entry.body.get("metadata", {})
        status = pool_status(
            name=entry.name,
            spec=entry.spec,
            generation=meta.get("generation"),
            deployment=entry.deployment,
            load=load,
            problems=problems,
            previous=previous,
        )
        if load is not None and entry.spec is not None:
            metrics.POOL_ACTIVE.labels(entry.namespace, entry.name).set(load.active_sessions)
            metrics.POOL_DEMAND.labels(entry.namespace, entry.name).set(
                session_demand(load.active_sessions, entry.spec.buffer_sessions)
            )
            await sync_deletion_costs(rt, entry, load)
        if not status_changed(previous, status):
            metrics.STATUS_REFRESHES.labels("unchanged").inc()
            return None
        metrics.STATUS_REFRESHES.labels("written").inc()
        patched = await rt.kube.patch(
            Ref(c.API_VERSION, c.POOL_KIND, entry.namespace, entry.name), {"status": status}, "status"
        )
        if patched is not None:
            entry.body = patched
        _announce(entry, previous, status)
        return status


def _announce(entry: PoolEntry, previous: Mapping[str, Any], status: Mapping[str, Any]) -> None:
    """Post the transition events (the queue exists only inside a running operator)."""
    import kopf

    for event_type, reason, message in transition_events(previous, status):
        try:
            kopf.event(
                kopf.Body(dict(entry.body)),  # type: ignore[arg-type]
                type=event_type,
                reason=reason,
                message=message,
            )
        except (LookupError, RuntimeError):
            log.debug("no event queue (not inside the operator)")


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


async def sync_deletion_costs(rt: Runtime, entry: PoolEntry, load: PoolLoad) -> None:
    """Keep busy agents last in line on scale-down: cost = their live session count."""
    sessions = load.sessions_by_agent()
    if sessions == entry.last_costs:
        return
    try:
        pods = await rt.kube.list(Ref("v1", "Pod", entry.namespace), labels=pool_selector(entry.name))
        changes = deletion_cost_changes(pods, sessions)
        await asyncio.gather(
            *(
                rt.kube.patch(
                    Ref("v1", "Pod", entry.namespace, name),
                    {"metadata": {"annotations": {c.DELETION_COST_ANNOTATION: cost}}},
                )
                for name, cost in changes.items()
            )
        )
    except ApiError as e:
        log.warning("cannot update pod deletion costs of %s/%s: %s", entry.namespace, entry.name, e)
        return
    entry.last_costs = sessions
