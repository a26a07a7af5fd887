"""KEDA's external scaler and the waker: how pools with spec.autoscaling.engine keda scale, to zero
and back (docs/operator.md, "Autoscaling engines" and "Scale to zero").

The scaler is KEDA's `externalscaler.proto` over gRPC. KEDA names the ScaledObject (= the pool) in
every call; the answer is the pool's session demand, read live from its Redis exactly as the
external metrics API reads it for the HPA (pools/load.py, scaling.session_demand):
- IsActive / StreamIsActive: demand > 0. KEDA scales a pool at zero to one agent when it turns
  true, and back to zero after its cooldown once it has stayed false.
- GetMetricSpec: the AverageValue target per agent, sessionsPerAgent (scaling.per_agent_target).
- GetMetrics: the demand; KEDA's own HPA then keeps ceil(demand / sessionsPerAgent) agents.

The waker answers a session request when the pool has no agent to answer it (the platform's
ingress falls back to it, docs/operator.md): it records the wake in the pool's Redis, which counts
as one session of demand for WAKE_TTL_S, and answers 503 with Retry-After, as an agent at capacity
does; clients retry until an agent is up. Both servers only read the Kubernetes API; the one write
is the wake, in Redis.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import redis.asyncio as aioredis
from aiohttp import web

from voice_agent.store import keys
from voice_operator import constants as c
from voice_operator.config import OperatorConfig
from voice_operator.externalscaler import externalscaler_pb2 as pb
from voice_operator.kube import ApiError
from voice_operator.pools.load import RedisUnavailable, read_load
from voice_operator.pools.lookup import MetricTarget, PoolLookup
from voice_operator.pools.scaling import per_agent_target, session_demand
from voice_operator.redis_clients import RedisClients

log = logging.getLogger(__name__)

SERVICE = "externalscaler.ExternalScaler"
# How long one session request keeps a pool awake: clients retry well within it (Retry-After), and
# each retry renews it, so it lapses soon after the last client gave up.
WAKE_TTL_S = 30
# What the waker tells clients to wait before asking again: one KEDA polling interval or so.
WAKE_RETRY_AFTER_S = 2
# How often StreamIsActive re-reads the demand (it sends only changes).
STREAM_INTERVAL_S = 1.0


class ScalerError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class PoolDemand:
    """A pool's session demand by (namespace, name), as both servers need it."""

    def __init__(self, pools: PoolLookup, redis: RedisClients) -> None:
        self.pools = pools
        self.redis = redis

    async def target(self, namespace: str, name: str) -> MetricTarget:
        try:
            target = await self.pools.get(namespace, name)
        except ApiError as e:
            raise ScalerError(grpc.StatusCode.UNAVAILABLE, f"cannot read the VoiceAgentPool: {e}") from e
        if target is None:
            raise ScalerError(grpc.StatusCode.NOT_FOUND, f"no reconciled VoiceAgentPool {namespace}/{name}")
        return target

    async def demand(self, namespace: str, name: str) -> tuple[MetricTarget, int]:
        target = await self.target(namespace, name)
        try:
            load = await read_load(self.redis, namespace, name, target.redis_url)
        except RedisUnavailable as e:
            raise ScalerError(grpc.StatusCode.UNAVAILABLE, str(e)) from e
        return target, session_demand(load.wanted_sessions, target.spec.buffer_sessions)

    async def wake(self, namespace: str, name: str) -> None:
        target = await self.target(namespace, name)
        if target.redis_url is None:
            raise ScalerError(grpc.StatusCode.UNAVAILABLE, "the Redis URL is not resolved")
        client = self.redis.get(target.redis_url)
        try:
            async with asyncio.timeout(self.redis.timeout_s):
                await client.set(keys.wake_key(c.pool_id(namespace, name)), "1", ex=WAKE_TTL_S)
        except (aioredis.RedisError, OSError, TimeoutError) as e:
            raise ScalerError(grpc.StatusCode.UNAVAILABLE, f"cannot record the wake in Redis: {e}") from e


class ExternalScaler:
    """The four RPCs of externalscaler.proto; errors become gRPC status codes KEDA logs."""

    def __init__(self, demand: PoolDemand) -> None:
        self._demand = demand

    async def _active(self, ref: pb.ScaledObjectRef) -> bool:
        _, demand = await self._demand.demand(ref.namespace, ref.name)
        return demand > 0

    async def is_active(self, ref: pb.ScaledObjectRef, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return pb.IsActiveResponse(result=await _or_abort(self._active(ref), context))

    async def stream_is_active(
        self, ref: pb.ScaledObjectRef, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.IsActiveResponse]:
        """The current answer at once, then each change (KEDA's `external-push` trigger)."""
        last: bool | None = None
        while True:
            active = await _or_abort(self._active(ref), context)
            if active != last:
                yield pb.IsActiveResponse(result=active)
                last = active
            await asyncio.sleep(STREAM_INTERVAL_S)

    async def get_metric_spec(
        self, ref: pb.ScaledObjectRef, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetMetricSpecResponse:
        target = await _or_abort(self._demand.target(ref.namespace, ref.name), context)
        size = per_agent_target(target.spec)
        spec = pb.MetricSpec(metricName=c.DEMAND_METRIC, targetSize=size, targetSizeFloat=float(size))
        return pb.GetMetricSpecResponse(metricSpecs=[spec])

    async def get_metrics(
        self, request: pb.GetMetricsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetMetricsResponse:
        ref = request.scaledObjectRef
        _, demand = await _or_abort(self._demand.demand(ref.namespace, ref.name), context)
        value = pb.MetricValue(metricName=c.DEMAND_METRIC, metricValue=demand, metricValueFloat=float(demand))
        return pb.GetMetricsResponse(metricValues=[value])

    def handler(self) -> grpc.GenericRpcHandler:
        """The service as protoc's grpc plugin would register it (the messages are generated)."""
        unary, stream = grpc.unary_unary_rpc_method_handler, grpc.unary_stream_rpc_method_handler
        ref, metrics_request = pb.ScaledObjectRef.FromString, pb.GetMetricsRequest.FromString
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "IsActive": unary(self.is_active, ref, _serialize),
                "StreamIsActive": stream(self.stream_is_active, ref, _serialize),
                "GetMetricSpec": unary(self.get_metric_spec, ref, _serialize),
                "GetMetrics": unary(self.get_metrics, metrics_request, _serialize),
            },
        )


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data


T = TypeVar("T")


async def _or_abort(call: Awaitable[T], context: grpc.aio.ServicerContext[Any, Any]) -> T:
    try:
        return await call
    except ScalerError as e:
        await context.abort(e.code, str(e))
        raise  # abort raises; this line is for the type checker


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# For a fallback route that keeps the client's own path (POST /v2/sessions): the pool it was for.
POOL_HEADER = "X-Voicepool-Pool"


CORS = {
    # Any origin may ask: the answer carries no data, and the wake costs at most one agent.
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": f"Content-Type, Authorization, {POOL_HEADER}",
    "Access-Control-Expose-Headers": "Retry-After",
}


def _pool_of(request: web.Request) -> tuple[str, str] | None:
    """(namespace, name) from the path, or from POOL_HEADER as `<namespace>/<name>`."""
    if "name" in request.match_info:
        return request.match_info["namespace"], request.match_info["name"]
    namespace, sep, name = request.headers.get(POOL_HEADER, "").partition("/")
    return (namespace, name) if sep and namespace and name and "/" not in name else None


def waker_app(demand: PoolDemand) -> web.Application:
    async def wake(request: web.Request) -> web.Response:
        pool = _pool_of(request)
        if pool is None:
            body = {"detail": f"name the pool in the path or in {POOL_HEADER}: <namespace>/<name>"}
            return web.json_response(body | {"code": "pool_unknown"}, status=400)
        namespace, name = pool
        try:
            await demand.wake(namespace, name)
        except ScalerError as e:
            status = 404 if e.code is grpc.StatusCode.NOT_FOUND else 503
            body = {"detail": str(e), "code": "pool_unknown" if status == 404 else "pool_unavailable"}
            return web.json_response(body, status=status, headers={"Retry-After": str(WAKE_RETRY_AFTER_S)})
        log.info("session request for %s/%s while no agent is up: waking the pool", namespace, name)
        body = {"detail": "starting an agent", "code": "agent_starting"}
        return web.json_response(body, status=503, headers={"Retry-After": str(WAKE_RETRY_AFTER_S)})

    async def preflight(_: web.Request) -> web.Response:
        return web.Response(status=204)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        response.headers.update(CORS)
        return response

    app = web.Application(middlewares=[cors])
    for path in ("/pools/{namespace}/{name}/v2/sessions", "/v2/sessions"):
        app.router.add_post(path, wake)
        app.router.add_route("OPTIONS", path, preflight)
    app.router.add_get("/healthz", healthz)
    return app


class ScalerServers:
    """The gRPC scaler and the waker's HTTP server, started and stopped together."""

    def __init__(self, grpc_server: grpc.aio.Server, waker: web.AppRunner) -> None:
        self.grpc_server, self.waker = grpc_server, waker

    async def stop(self) -> None:
        await self.grpc_server.stop(grace=1)
        await self.waker.cleanup()


async def start_scaler(cfg: OperatorConfig, pools: PoolLookup, redis: RedisClients) -> ScalerServers:
    demand = PoolDemand(pools, redis)
    # Without SO_REUSEPORT (gRPC's default), a port already taken fails here as the HTTP ports do.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((ExternalScaler(demand).handler(),))
    if server.add_insecure_port(f"{cfg.bind_host}:{cfg.scaler_port}") == 0:
        raise OSError(f"cannot bind the external scaler to {cfg.bind_host}:{cfg.scaler_port}")
    await server.start()
    runner = web.AppRunner(waker_app(demand), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, cfg.bind_host, cfg.waker_port).start()
    log.info(
        "serving KEDA's external scaler on %s:%d (gRPC) and the waker on %s:%d",
        cfg.bind_host,
        cfg.scaler_port,
        cfg.bind_host,
        cfg.waker_port,
    )
    return ScalerServers(server, runner)
