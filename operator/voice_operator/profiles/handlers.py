"""NodeTuningProfile handlers: the tuner DaemonSet, node labels and counts, cleanup on delete."""

from typing import Any

import kopf

from voice_operator import constants as c
from voice_operator.config import OperatorConfig
from voice_operator.events import post
from voice_operator.kube import ApiError
from voice_operator.memo import OperatorMemo
from voice_operator.profiles.reconcile import reconcile_profile, refresh_profile, release_nodes, spec_problem

PROFILES = (c.GROUP, c.VERSION, c.PROFILE_PLURAL)


async def _reconcile(body: kopf.Body, memo: OperatorMemo, cold: bool) -> None:
    try:
        await post(memo.kube, body, await reconcile_profile(memo.kube, memo.config, body, cold=cold))
        await refresh_profile(memo.kube, memo.config, body, spec_problem(body))
    except ApiError as e:
        raise kopf.TemporaryError(f"Kubernetes API error: {e}", delay=5) from e


async def profile_created(body: kopf.Body, memo: OperatorMemo, **_: Any) -> None:
    await _reconcile(body, memo, cold=True)


async def profile_changed(body: kopf.Body, memo: OperatorMemo, **_: Any) -> None:
    await _reconcile(body, memo, cold=False)


async def profile_tick(body: kopf.Body, memo: OperatorMemo, **_: Any) -> None:
    """Tuner pods become ready (or fail verification) on their own: follow them."""
    try:
        await refresh_profile(memo.kube, memo.config, body, spec_problem(body))
    except ApiError as e:
        raise kopf.TemporaryError(f"Kubernetes API error: {e}", delay=5) from e


async def profile_deleted(body: kopf.Body, memo: OperatorMemo, **_: Any) -> None:
    """Nodes stop being advertised as tuned; the DaemonSet goes by garbage collection."""
    await release_nodes(memo.kube, body.metadata.name or "")


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    kopf.on.create(*PROFILES, registry=registry)(profile_created)
    kopf.on.resume(*PROFILES, registry=registry)(profile_changed)
    kopf.on.update(*PROFILES, field="spec", registry=registry)(profile_changed)
    tick = config.status_interval_s
    kopf.timer(*PROFILES, interval=tick, initial_delay=tick, registry=registry)(profile_tick)
    kopf.on.delete(*PROFILES, registry=registry)(profile_deleted)
