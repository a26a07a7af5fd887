"""Reconciliation of one NodeTuningProfile: tuner DaemonSet, node labels, status."""

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from voice_operator import constants as c
from voice_operator import metrics
from voice_operator.config import OperatorConfig
from voice_operator.ensure import ensure
from voice_operator.events import Event
from voice_operator.fields import SpecError
from voice_operator.kube import ApiError, KubeClient, Ref
from voice_operator.objects import Owner
from voice_operator.profiles.render import render_daemonset, render_namespace, render_tuner_serviceaccount
from voice_operator.profiles.spec import parse_profile_spec
from voice_operator.profiles.status import label_changes, matching_nodes, profile_status, tuned_nodes
from voice_operator.status_io import write_status

log = logging.getLogger(__name__)


def spec_problem(body: Mapping[str, Any]) -> str | None:
    try:
        parse_profile_spec(body.get("spec") or {})
    except SpecError as e:
        return str(e)
    return None


async def ensure_namespace(kube: KubeClient, name: str) -> None:
    namespace = render_namespace(name)
    if await kube.get(Ref.of(namespace)) is not None:
        return
    try:
        await kube.create(namespace)
    except ApiError as e:
        if e.status != 409:
            raise


async def reconcile_profile(
    kube: KubeClient, config: OperatorConfig, body: Mapping[str, Any], *, cold: bool
) -> list[Event]:
    """Ensure the tuner; returns what is worth telling (an unusable spec, a new tuner)."""
    owner = Owner.from_body(body)
    with metrics.RECONCILE_SECONDS.labels(c.PROFILE_KIND).time():
        try:
            spec = parse_profile_spec(body.get("spec") or {})
        except SpecError as e:
            metrics.RECONCILES.labels(c.PROFILE_KIND, "invalid").inc()
            return [Event("Warning", "InvalidSpec", str(e))]
        ns = config.tuning_namespace
        await ensure_namespace(kube, ns)
        await ensure(kube, render_tuner_serviceaccount(owner, ns), lookup=not cold)
        await ensure(kube, render_daemonset(owner, spec, ns, config.tuner_image), lookup=not cold)
        metrics.RECONCILES.labels(c.PROFILE_KIND, "ok").inc()
        return [Event("Normal", "Created", "created the node tuner DaemonSet")] if cold else []


async def apply_labels(kube: KubeClient, changes: Mapping[str, str | None], key: str) -> None:
    await asyncio.gather(
        *(
            kube.patch(Ref("v1", "Node", None, n), {"metadata": {"labels": {key: v}}})
            for n, v in changes.items()
        )
    )


async def refresh_profile(
    kube: KubeClient, config: OperatorConfig, body: Mapping[str, Any], problem: str | None
) -> None:
    """Label verified nodes, unlabel the rest, and report desired/tuned counts."""
    name = str(body["metadata"]["name"])
    key = c.tuned_label(name)
    nodes = await kube.list(Ref("v1", "Node", None))
    if problem is None:
        spec = parse_profile_spec(body.get("spec") or {})
        pods = await kube.list(Ref("v1", "Pod", config.tuning_namespace), labels={c.PROFILE_LABEL: name})
        matching = matching_nodes(nodes, spec.node_selector)
        tuned = tuned_nodes(matching, pods)
    else:
        matching, tuned = set(), set()
    await apply_labels(kube, label_changes(nodes, key, tuned), key)
    metrics.TUNED_NODES.labels(name).set(len(tuned))
    status = profile_status(
        desired=len(matching),
        tuned=len(tuned),
        generation=body.get("metadata", {}).get("generation"),
        problem=("InvalidSpec", problem) if problem else None,
        previous=body.get("status") or {},
    )
    await write_status(kube, Ref(c.API_VERSION, c.PROFILE_KIND, None, name), body.get("status") or {}, status)


async def release_nodes(kube: KubeClient, name: str) -> None:
    """On profile deletion: no node is tuned by it any more."""
    key = c.tuned_label(name)
    nodes = await kube.list(Ref("v1", "Node", None))
    await apply_labels(kube, label_changes(nodes, key, set()), key)
