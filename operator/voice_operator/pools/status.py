"""The VoiceAgentPool status summary, computed purely from what the operator observed."""

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from voice_operator.conditions import condition, find, merge_conditions
from voice_operator.events import Event
from voice_operator.objects import pool_selector, selector_string
from voice_operator.pools.load import PoolLoad
from voice_operator.pools.scaling import capacity, desired_replicas, session_demand
from voice_operator.pools.spec import PoolSpec


@dataclasses.dataclass(frozen=True)
class Problem:
    """Why the pool is Degraded (missing Secret or profile, Redis down, invalid spec...)."""

    reason: str
    message: str


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0


def pool_status(
    *,
    name: str,
    spec: PoolSpec | None,
    generation: int | None,
    deployment: Mapping[str, Any] | None,
    load: PoolLoad | None,
    problems: Iterable[Problem],
    previous: Mapping[str, Any],
    now: str | None = None,
) -> dict[str, Any]:
    problems = list(problems)
    dstatus = (deployment or {}).get("status") or {}
    dspec_replicas = _int(((deployment or {}).get("spec") or {}).get("replicas"))
    replicas = _int(dstatus.get("replicas"))
    ready = _int(dstatus.get("readyReplicas"))
    updated = _int(dstatus.get("updatedReplicas"))
    # With Redis unreadable keep the last known session numbers rather than reporting zero load.
    active = load.active_sessions if load is not None else _int(previous.get("activeSessions"))
    # A rollout in progress, as the agents see it: draining agents and the calls they still hold,
    # each moved to another agent at its next turn boundary (docs/deploy.md, "Rolling a pool").
    draining = [a for a in load.live if a.draining] if load is not None else None
    draining_agents = len(draining) if draining is not None else _int(previous.get("drainingAgents"))
    moving = sum(a.active for a in draining) if draining is not None else _int(previous.get("movingSessions"))

    status: dict[str, Any] = {
        "replicas": replicas,
        "readyReplicas": ready,
        "updatedReplicas": updated,
        "activeSessions": active,
        "drainingAgents": draining_agents,
        "movingSessions": moving,
        "selector": selector_string(pool_selector(name)),
    }
    if generation is not None:
        status["observedGeneration"] = generation

    conds = []
    if spec is None:
        conds.append(condition("Ready", False, "InvalidSpec", "the spec cannot be reconciled", generation))
        conds.append(condition("Scaling", False, "InvalidSpec", "the spec cannot be reconciled", generation))
    else:
        demand = session_demand(load.wanted_sessions, spec.buffer_sessions) if load is not None else None
        desired = (
            desired_replicas(demand, spec) if demand is not None else _int(previous.get("desiredReplicas"))
        )
        status["demand"] = demand if demand is not None else _int(previous.get("demand"))
        status["desiredReplicas"] = desired or spec.min_replicas
        status["capacity"] = capacity(ready, spec)
        want = max(1, min(spec.min_replicas, dspec_replicas or spec.min_replicas))
        if deployment is None:
            conds.append(
                condition("Ready", False, "DeploymentMissing", "agents are not deployed yet", generation)
            )
        elif spec.min_replicas == 0 and dspec_replicas == 0 and replicas == 0:
            # Scaled to zero on purpose (engine keda): the first session request wakes the pool.
            msg = "no agent up while there is no demand; a session request starts one"
            conds.append(condition("Ready", True, "ScaledToZero", msg, generation))
        elif ready >= want:
            msg = f"{ready}/{replicas} agents ready, capacity {status['capacity']} sessions"
            conds.append(condition("Ready", True, "AgentsReady", msg, generation))
        else:
            conds.append(
                condition("Ready", False, "AgentsNotReady", f"{ready}/{want} agents ready", generation)
            )

        target = dspec_replicas or spec.min_replicas
        if updated < replicas or replicas > target:
            msg = f"{updated}/{replicas} agents updated"
            if draining_agents:
                msg += f"; {draining_agents} draining, {moving} calls to move"
            conds.append(condition("Scaling", True, "RollingOut", msg, generation))
        elif desired and desired != target:
            direction = "ScalingUp" if desired > target else "ScalingDown"
            msg = f"demand {status['demand']} sessions wants {desired} agents, have {target}"
            conds.append(condition("Scaling", True, direction, msg, generation))
        elif replicas < target:
            conds.append(
                condition("Scaling", True, "ScalingUp", f"{replicas}/{target} agents created", generation)
            )
        else:
            conds.append(condition("Scaling", False, "Stable", f"{target} agents for the demand", generation))

    if problems:
        reasons = problems[0].reason
        message = "; ".join(p.message for p in problems)
        conds.append(condition("Degraded", True, reasons, message, generation))
    else:
        conds.append(condition("Degraded", False, "AsExpected", "all references resolved", generation))
    status["conditions"] = merge_conditions(previous.get("conditions"), conds, now)
    return status


def transition_events(previous: Mapping[str, Any], status: Mapping[str, Any]) -> list[Event]:
    """The Kubernetes events worth posting for this status change.

    Ready: only real flips (a new pool is not ready yet, that is no news). Degraded: as soon as it
    is true, and when it clears.
    """
    events = []
    for kind, bad in (("Ready", "False"), ("Degraded", "True")):
        old, new = find(previous.get("conditions"), kind), find(status.get("conditions"), kind)
        if new is None:
            continue
        was = old.get("status") if old is not None else None
        now = new.get("status")
        flipped = was is not None and was != now
        first_bad = was is None and kind == "Degraded" and now == bad
        if flipped or first_bad:
            events.append(
                Event("Warning" if now == bad else "Normal", str(new.get("reason")), str(new.get("message")))
            )
    return events
