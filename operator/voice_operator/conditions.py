"""Kubernetes-style status conditions, kept stable: the transition time moves only on a change."""

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

Condition = dict[str, Any]


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def condition(kind: str, status: bool, reason: str, message: str, generation: int | None) -> Condition:
    cond: Condition = {
        "type": kind,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def merge_conditions(
    previous: Iterable[Mapping[str, Any]] | None, current: Iterable[Condition], now: str | None = None
) -> list[Condition]:
    """Carry lastTransitionTime over from the previous conditions when the status did not flip."""
    before = {str(p.get("type")): p for p in previous or []}
    stamp = now or now_iso()
    merged = []
    for cond in current:
        old = before.get(cond["type"])
        keep = old is not None and old.get("status") == cond["status"] and old.get("lastTransitionTime")
        merged.append({**cond, "lastTransitionTime": old["lastTransitionTime"] if keep and old else stamp})
    return merged


def find(conditions: Iterable[Mapping[str, Any]] | None, kind: str) -> Mapping[str, Any] | None:
    for cond in conditions or []:
        if cond.get("type") == kind:
            return cond
    return None
