"""Operator lifecycle handlers: credentials, the shared runtime, the HTTP servers, liveness probes."""

import contextlib
import logging
from typing import Any

import kopf
from aiohttp import web

from voice_operator.kube import KubeClient
from voice_operator.memo import OperatorMemo
from voice_operator.metrics_api import start_servers
from voice_operator.pools.load import RedisClients
from voice_operator.runtime import Runtime, get_runtime, set_runtime

log = logging.getLogger(__name__)
_runners: list[web.AppRunner] = []


def login(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    """In-cluster service account first, then KUBECONFIG / ~/.kube/config."""
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.LoginError("no service account token and no kubeconfig (set KUBECONFIG)")
    return info


def on_login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    return login(settings)


async def on_startup(settings: kopf.OperatorSettings, memo: OperatorMemo, **_: Any) -> None:
    config = memo.config
    rt = Runtime(
        config=config,
        kube=KubeClient(lambda: login(settings)),
        redis=RedisClients(timeout_s=config.redis_timeout_s),
    )
    set_runtime(rt)
    _runners.extend(await start_servers(rt))


async def on_cleanup(**_: Any) -> None:
    for runner in _runners:
        await runner.cleanup()
    _runners.clear()
    with contextlib.suppress(RuntimeError):
        await get_runtime().close()
    set_runtime(None)


def probe_pools(**_: Any) -> int:
    """Liveness detail: how many pools this operator tracks (the endpoint itself is kopf's)."""
    return len(get_runtime().pools)


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.on.login(errors=kopf.ErrorsMode.PERMANENT, registry=registry)(on_login)
    # A port already taken or an unreadable certificate is fatal: exit (and be restarted, visibly)
    # rather than kopf's default of retrying the startup every minute while handling nothing.
    kopf.on.startup(errors=kopf.ErrorsMode.PERMANENT, registry=registry)(on_startup)
    kopf.on.cleanup(registry=registry)(on_cleanup)
    kopf.on.probe(id="pools", registry=registry)(probe_pools)
