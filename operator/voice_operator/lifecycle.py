"""Operator lifecycle handlers: credentials, the shared API and Redis clients (in kopf's memo), the
HTTP servers, liveness probes."""

import logging
from typing import Any

import kopf

from voice_operator.kube import KubeClient
from voice_operator.memo import OperatorMemo
from voice_operator.metrics_api import start_servers
from voice_operator.pools.lookup import PoolLookup
from voice_operator.pools.scaler import start_scaler
from voice_operator.pools.state import PoolsMemo
from voice_operator.redis_clients import RedisClients

log = logging.getLogger(__name__)


def login(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    """In-cluster service account first, then KUBECONFIG / ~/.kube/config."""
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.LoginError("no service account token and no kubeconfig (set KUBECONFIG)")
    return info


def on_login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    return login(settings)


async def on_startup(settings: kopf.OperatorSettings, memo: PoolsMemo, **indexes: Any) -> None:
    config = memo.config
    # kopf passes its indexes to every handler by id; resource handlers find them in the memo
    # instead (the per-object copies are taken after this, so they share these views).
    memo.pool_states, memo.pool_deployments = indexes["pool_states"], indexes["pool_deployments"]
    memo.kube = KubeClient(lambda: login(settings))
    memo.redis = RedisClients(timeout_s=config.redis_timeout_s)
    memo.scaler = await start_scaler(config, PoolLookup(memo.kube, memo.pool_states), memo.redis)
    memo.servers = await start_servers(config, PoolLookup(memo.kube, memo.pool_states), memo.redis, memo.kube)


async def on_cleanup(memo: OperatorMemo, **_: Any) -> None:
    for runner in memo.get("servers", []):
        await runner.cleanup()
    if "scaler" in memo:
        await memo.scaler.stop()
    if "redis" in memo:
        await memo.redis.close()
    if "kube" in memo:
        await memo.kube.close()


def probe_pools(memo: PoolsMemo, **_: Any) -> int:
    """Liveness detail: how many pools this operator tracks (the endpoint itself is kopf's)."""
    return len(memo.pool_states) if "pool_states" in memo else 0  # asked before the startup ran


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.on.login(errors=kopf.ErrorsMode.PERMANENT, registry=registry)(on_login)
    # A port already taken or an unreadable certificate is fatal: exit (and be restarted, visibly)
    # rather than kopf's default of retrying the startup every minute while handling nothing.
    kopf.on.startup(errors=kopf.ErrorsMode.PERMANENT, registry=registry)(on_startup)
    kopf.on.cleanup(registry=registry)(on_cleanup)
    kopf.on.probe(id="pools", registry=registry)(probe_pools)
