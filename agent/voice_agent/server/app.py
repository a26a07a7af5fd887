"""HTTP API and WebSocket routes (docs/api.md), and the app's start-up and shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Request, Response, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from voice_agent import __version__
from voice_agent.pool.admission import PooledAdmission
from voice_agent.protocol.sessions import CreatedSession, SessionView
from voice_agent.providers.base import Providers
from voice_agent.providers.factory import build_providers
from voice_agent.server.limits import BodyLimit, KeyedRateLimit, bearer_ok
from voice_agent.sessions import signaling
from voice_agent.sessions.admission import Admission, CapacityError, LocalAdmission
from voice_agent.sessions.manager import CallManager
from voice_agent.settings import Settings
from voice_agent.store import MemorySessionStore, SessionStore
from voice_agent.store.base import StoreUnavailable
from voice_agent.store.redis import RedisSessionStore
from voice_agent.telemetry import metrics

log = logging.getLogger(__name__)

DEFAULT_WEB_DIR = Path(__file__).resolve().parents[2] / "frontend" / "dist"


class RedisHealth(BaseModel):
    enabled: bool
    healthy: bool
    # Why not healthy, without secrets: e.g. the primary a Sentinel names is unreachable.
    error: str | None = None


class Health(BaseModel):
    status: str
    version: str
    active_sessions: int
    redis: RedisHealth


class ServiceInfo(BaseModel):
    name: str
    version: str
    pool: str
    agent_id: str
    links: dict[str, str]


class ErrorBody(BaseModel):
    detail: str


CREATE_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "VOICE_API_TOKEN is set; bearer token missing or wrong"},
    429: {"model": ErrorBody, "description": "Too many sessions created from this address; see Retry-After"},
    503: {"model": ErrorBody, "description": "No capacity; see Retry-After"},
}


def allowed_methods(routes: list[BaseRoute], scope: Scope) -> str:
    """Every method served at this path: Starlette's 405 names only the first route's (one per method)."""
    methods: set[str] = set()
    for route in routes:
        if route.matches(scope)[0] != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def build_store(settings: Settings) -> SessionStore:
    if settings.redis_url is not None and settings.redis_enabled:
        return RedisSessionStore(
            settings.redis_url.get_secret_value(), settings.pool, settings.agent_id, settings.max_sessions
        )
    return MemorySessionStore()


def advertise_url(settings: Settings) -> str:
    return settings.advertise_url or f"http://{settings.host}:{settings.port}"


def build_admission(settings: Settings, store: SessionStore) -> Admission:
    """This agent alone, or a member of the pool when the store is Redis."""
    if isinstance(store, RedisSessionStore):
        return PooledAdmission(settings, store, advertise_url(settings))
    return LocalAdmission(settings, store)


def create_app(
    settings: Settings, providers: Providers | None = None, store: SessionStore | None = None
) -> FastAPI:
    store = store or build_store(settings)
    providers = providers or build_providers(settings)
    manager = CallManager(settings, store, providers, build_admission(settings, store))
    web_dir = Path(settings.web_dir) if settings.web_dir else DEFAULT_WEB_DIR
    creation_limit = KeyedRateLimit(settings.sessions_per_ip_per_min, settings.sessions_per_ip_burst)

    def authorized(request: Request) -> None:
        """Listing and creating sessions need the API token when one is configured."""
        token = settings.api_token.get_secret_value() if settings.api_token else ""
        if token and not bearer_ok(request.headers.get("authorization"), token):
            raise HTTPException(401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})

    def admitted(request: Request) -> None:
        """Per-client creation rate, charged before the token check so guessing is slowed too."""
        wait = creation_limit.retry_after(request.client.host if request.client else "?")
        if wait:
            metrics.ERRORS.labels("rate_limited_create").inc()
            raise HTTPException(429, "too many sessions created; slow down", {"Retry-After": str(wait)})
        authorized(request)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics.SESSION_CAPACITY.set(settings.max_sessions)
        await store.start()
        await manager.start()
        await providers.stt.start()
        log.info(
            "agent ready",
            extra={
                "agent_id": settings.agent_id,
                "pool": settings.pool,
                "stt": providers.stt.name,
                "llm": providers.llm.name,
                "tts": providers.tts.name,
                "store": store.enabled_backend,
            },
        )
        try:
            yield
        finally:
            log.info("shutting down", extra={"active_sessions": manager.active})
            await manager.close()
            await manager.admission.close()
            for provider in (providers.stt, providers.llm, providers.tts):
                await provider.close()
            await store.close()

    app = FastAPI(
        title="voicepool agent",
        version=__version__,
        description="Real-time voice agent: WebRTC audio, STT -> LLM -> TTS, session API.",
        lifespan=lifespan,
    )
    app.state.manager = manager
    app.state.settings = settings
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.request_timeout_s)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After"],
            max_age=600,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(app.router.routes, request.scope)
        if exc.status_code in (204, 304):
            return Response(status_code=exc.status_code, headers=headers)
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=headers)

    @app.exception_handler(CapacityError)
    async def _no_capacity(request: Request, exc: CapacityError) -> JSONResponse:
        return JSONResponse({"detail": exc.reason}, 503, headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(StoreUnavailable)
    async def _store_down(request: Request, exc: StoreUnavailable) -> JSONResponse:
        body = {"detail": "session store (redis) unavailable; try again shortly"}
        return JSONResponse(body, 503, headers={"Retry-After": "2"})

    @app.get("/", response_model=ServiceInfo, responses={200: {"content": {"text/html": {}}}})
    async def root(request: Request) -> Any:
        index = web_dir / "index.html"
        if "text/html" in request.headers.get("accept", "") and index.is_file():
            return FileResponse(index)
        return ServiceInfo(
            name="voicepool-agent",
            version=__version__,
            pool=settings.pool,
            agent_id=settings.agent_id,
            links={
                "health": "/health",
                "ready": "/ready",
                "sessions": "/v2/sessions",
                "metrics": "/metrics",
                "openapi": "/openapi.json",
                "signaling": "/ws/v2/{session_id}",
            },
        )

    @app.get("/health", response_model=Health, response_model_exclude_none=True)
    async def health() -> Health:
        healthy = await store.healthy()
        return Health(
            status="healthy" if healthy else "degraded",
            version=__version__,
            active_sessions=manager.active,
            redis=RedisHealth(
                enabled=settings.redis_enabled,
                healthy=healthy if settings.redis_enabled else False,
                error=None if healthy else getattr(store, "health_error", None),
            ),
        )

    @app.get("/ready", response_model=dict[str, Any], responses={503: {"model": dict[str, Any]}})
    async def ready() -> JSONResponse:
        reasons = []
        if manager.draining:
            reasons.append("draining")
        if manager.at_capacity:
            reasons.append("at capacity")
        body = {"ready": not reasons, "reasons": reasons, "active_sessions": manager.active}
        return JSONResponse(body, status_code=503 if reasons else 200)

    @app.get(
        "/v2/sessions",
        response_model=list[SessionView],
        dependencies=[Depends(authorized)],
        responses={401: CREATE_REFUSALS[401]},
    )
    async def list_sessions() -> list[SessionView]:
        records = await store.list()
        return [SessionView.of(r) for r in records if r.active]

    @app.post(
        "/v2/sessions",
        status_code=201,
        response_model=CreatedSession,
        dependencies=[Depends(admitted)],
        responses=CREATE_REFUSALS,
    )
    async def create_session(request: Request, after: BackgroundTasks) -> Any:
        try:
            record = await manager.create_session()
        except CapacityError as exc:
            return JSONResponse(
                {"detail": exc.reason}, status_code=503, headers={"Retry-After": str(exc.retry_after)}
            )

        async def prepare_media() -> None:  # a coroutine: a plain function would run on a thread
            manager.prepare_media(record.id)

        # Once this answer is out, while the client opens its socket: sooner would delay the answer.
        after.add_task(prepare_media)
        scheme = "wss" if request.url.scheme == "https" else "ws"
        path = f"/ws/v2/{record.id}"
        return CreatedSession(
            **SessionView.of(record).model_dump(),
            ws_url=f"{scheme}://{request.url.netloc}{path}",
            ws_path=path,
            ice_servers=settings.public_ice_servers(),
        )

    @app.get("/v2/sessions/{session_id}", response_model=SessionView, responses={404: {"model": ErrorBody}})
    async def get_session(session_id: str) -> SessionView:
        record = await store.get(session_id)
        if record is None:
            raise HTTPException(404, "no such session")
        return SessionView.of(record)

    @app.delete("/v2/sessions/{session_id}", status_code=204, responses={404: {"model": ErrorBody}})
    async def delete_session(session_id: str) -> Response:
        if not await manager.end_session(session_id):
            raise HTTPException(404, "no such session")
        return Response(status_code=204)

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def prometheus_metrics() -> Response:
        metrics.EVENT_LOOP_TASKS.set(len(asyncio.all_tasks()))
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/ws/v2/{session_id}")
    async def signaling_ws(ws: WebSocket, session_id: str) -> None:
        await signaling.serve(ws, session_id, manager)

    if (web_dir / "assets").is_dir():
        app.mount("/assets", StaticFiles(directory=web_dir / "assets"), name="assets")

    return app
