"""Idempotent create-or-update of a rendered object.

An object whose stored desired-hash equals the rendered one is left alone, so an operator restart
or a periodic resync costs one read per object and no writes. Fields another controller owns after
creation (the Deployment's replicas belong to the HPA) are never sent on update.
"""

import copy
import enum
import logging
from collections.abc import Mapping
from typing import Any

from voice_operator import constants as c
from voice_operator import metrics
from voice_operator.kube import ApiError, KubeClient, Obj, Ref

log = logging.getLogger(__name__)

# Paths written on creation only; afterwards someone else owns them.
PRESERVED: Mapping[str, tuple[tuple[str, ...], ...]] = {"Deployment": (("spec", "replicas"),)}


class Outcome(enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


class ConflictError(Exception):
    """The name is taken by an object some other controller owns; we do not take it over."""


def update_patch(desired: Obj) -> Obj:
    patch = copy.deepcopy(desired)
    for path in PRESERVED.get(str(desired["kind"]), ()):
        node: Any = patch
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    return patch


def _owned_elsewhere(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """True when a controller other than our resource (same kind and name) owns the object."""
    ours = {(r["kind"], r["name"]) for r in desired.get("metadata", {}).get("ownerReferences", [])}
    for ref in existing.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller") and (ref.get("kind"), ref.get("name")) not in ours:
            return True
    return False


def _hash(obj: Mapping[str, Any]) -> str | None:
    annotations = obj.get("metadata", {}).get("annotations") or {}
    value = annotations.get(c.HASH_ANNOTATION)
    return str(value) if value is not None else None


async def ensure(
    kube: KubeClient, desired: Obj, existing: Obj | None = None, *, lookup: bool = True
) -> tuple[Outcome, Obj]:
    """Make the object match `desired`; `lookup=False` tries to create first (cold start).

    Returns what was done and the object as the API server last reported it.
    """
    ref = Ref.of(desired)
    if existing is None and lookup:
        existing = await kube.get(ref)
    if existing is None:
        try:
            created = await kube.create(desired)
            metrics.OBJECT_WRITES.labels(ref.kind, "create").inc()
            return Outcome.CREATED, created
        except ApiError as e:
            if e.status != 409:
                raise
            existing = await kube.get(ref)
            if existing is None:
                raise
    if _owned_elsewhere(existing, desired):
        raise ConflictError(f"{ref.kind} {ref.name} exists and is owned by another controller")
    if _hash(existing) == _hash(desired) and existing.get("metadata", {}).get("ownerReferences"):
        return Outcome.UNCHANGED, existing
    patched = await kube.patch(ref, update_patch(desired))
    metrics.OBJECT_WRITES.labels(ref.kind, "update").inc()
    return Outcome.UPDATED, patched if patched is not None else existing
