"""HTTP servers of the operator: the external metrics API (for the HPA) and Prometheus /metrics.

The external metrics API is what KEDA's metrics server does for its scalers: the cluster's
APIService for external.metrics.k8s.io points at this endpoint, the HPA asks for
voicepool_session_demand with the pool's label selector, and gets ceil(active + buffer) read live
from the pool's Redis. Every replica answers (the APIService balances over them): a standby
replica, paused by kopf peering, reads the pool from the API itself (cached briefly). A metric
request never writes: the pool's status follows on its own timer. If Redis is unreachable the
answer is a 503 Status: the HPA records FailedGetExternalMetric and keeps the current replica count
(it does not scale to zero).
"""

import datetime
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from voice_operator import constants as c
from voice_operator import metrics
from voice_operator.config import OperatorConfig
from voice_operator.front_proxy import parse_selector, peer_certificate, status_error
from voice_operator.kube import ApiError, KubeClient
from voice_operator.pools.load import RedisUnavailable, read_load
from voice_operator.pools.lookup import PoolLookup
from voice_operator.pools.scaling import session_demand
from voice_operator.redis_clients import RedisClients
from voice_operator.sessions.api import install as install_sessions_api
from voice_operator.sessions.objects import PoolRef
from voice_operator.sessions.store import PoolSource

log = logging.getLogger(__name__)

GROUP_VERSION = f"{c.EXTERNAL_METRICS_GROUP}/{c.EXTERNAL_METRICS_VERSION}"
BASE = f"/apis/{GROUP_VERSION}"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def metric_value_list(labels: Mapping[str, str], value: int, now: datetime.datetime) -> dict[str, Any]:
    stamp = now.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return {
        "kind": "ExternalMetricValueList",
        "apiVersion": GROUP_VERSION,
        "metadata": {},
        "items": [
            {
                "metricName": c.DEMAND_METRIC,
                "metricLabels": dict(labels),
                "timestamp": stamp,
                "value": str(value),
            }
        ],
    }


def discovery() -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {
                "name": c.DEMAND_METRIC,
                "singularName": "",
                "namespaced": True,
                "kind": "ExternalMetricValueList",
                "verbs": ["get"],
            }
        ],
    }


def external_metrics_app(config: OperatorConfig, pools: PoolLookup, redis: RedisClients) -> web.Application:
    async def get_discovery(_: web.Request) -> web.Response:
        return web.json_response(discovery())

    async def get_metric(request: web.Request) -> web.Response:
        namespace, metric = request.match_info["namespace"], request.match_info["metric"]
        if metric != c.DEMAND_METRIC:
            metrics.METRIC_REQUESTS.labels("unknown_metric").inc()
            return status_error(404, "NotFound", f"metric {metric} is not served here")
        try:
            labels = parse_selector(request.query.get("labelSelector", ""))
        except ValueError as e:
            metrics.METRIC_REQUESTS.labels("bad_request").inc()
            return status_error(400, "BadRequest", str(e))
        pool = labels.get(c.POOL_LABEL)
        try:
            target = await pools.get(namespace, pool) if pool else None
        except ApiError as e:
            metrics.METRIC_REQUESTS.labels("api_error").inc()
            return status_error(503, "ServiceUnavailable", f"cannot read the VoiceAgentPool: {e.reason}")
        if target is None or pool is None:
            metrics.METRIC_REQUESTS.labels("unknown_pool").inc()
            return status_error(404, "NotFound", f"no reconciled VoiceAgentPool {namespace}/{pool}")
        try:
            load = await read_load(redis, namespace, pool, target.redis_url)
        except RedisUnavailable as e:
            metrics.METRIC_REQUESTS.labels("redis_unavailable").inc()
            return status_error(503, "ServiceUnavailable", str(e))
        demand = session_demand(load.active_sessions, target.spec.buffer_sessions)
        metrics.METRIC_REQUESTS.labels("ok").inc()
        return web.json_response(metric_value_list(labels, demand, datetime.datetime.now(datetime.UTC)))

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    @web.middleware
    async def only_the_aggregator(request: web.Request, handler: Handler) -> web.StreamResponse:
        """With a client CA set, metric reads need a client certificate it signed (the API server's
        front-proxy certificate); the TLS handshake has verified any certificate presented."""
        if config.client_ca and request.path.startswith(BASE) and peer_certificate(request) is None:
            metrics.METRIC_REQUESTS.labels("unauthorized").inc()
            return status_error(401, "Unauthorized", "a client certificate is required")
        return await handler(request)

    app = web.Application(middlewares=[only_the_aggregator])
    app.router.add_get(BASE, get_discovery)
    app.router.add_get(BASE + "/namespaces/{namespace}/{metric}", get_metric)
    app.router.add_get("/healthz", healthz)
    return app


def prometheus_app() -> web.Application:
    async def get_metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    return app


def pool_refs(pools: PoolLookup) -> PoolSource:
    """The pools as the sessions API sees them (it knows no pool spec, only where sessions are)."""

    async def listed(namespace: str | None) -> list[PoolRef]:
        found = await pools.all(namespace)
        return [PoolRef(ns, name, t.redis_url, t.spec.expose_transcripts) for ns, name, t in found]

    return listed


async def start_servers(
    cfg: OperatorConfig, pools: PoolLookup, redis: RedisClients, kube: KubeClient
) -> list[web.AppRunner]:
    tls: ssl.SSLContext | None = None
    if cfg.tls_cert and cfg.tls_key:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        if cfg.client_ca:
            # Optional at the handshake so probes reach /healthz; the middleware guards the API.
            tls.verify_mode = ssl.CERT_OPTIONAL
            tls.load_verify_locations(cfg.client_ca)
    runners = []
    aggregated = external_metrics_app(cfg, pools, redis)
    install_sessions_api(aggregated, kube, redis, pool_refs(pools))
    for app, port, ctx in (
        (aggregated, cfg.external_metrics_port, tls),
        (prometheus_app(), cfg.metrics_port, None),
    ):
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, cfg.bind_host, port, ssl_context=ctx).start()
        runners.append(runner)
    log.info(
        "serving external metrics on %s:%d (%s) and /metrics on %s:%d",
        cfg.bind_host,
        cfg.external_metrics_port,
        "https" if tls else "http",
        cfg.bind_host,
        cfg.metrics_port,
    )
    return runners
