"""sessions.voicepool.dev/v1alpha1 over HTTP: discovery, OpenAPI, list/get/watch/delete of VoiceSessions.

Served on the operator's aggregated-API port beside the external metrics API (one TLS server, one
Service); the APIService for this group points there (manifests/base/operator/). Every request
needs a verified client certificate (front_proxy.py), and every read or delete a SubjectAccessReview
(access.py). kubectl's Table form (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`) gives the
columns of docs/operator.md; the plain form gives VoiceSession objects (describe, -o yaml).
"""

import datetime
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web

from voice_operator import constants as c
from voice_operator.front_proxy import Caller, caller, parse_selector, status_error
from voice_operator.kube import ApiError, KubeClient
from voice_operator.redis_clients import RedisClients
from voice_operator.sessions import discovery
from voice_operator.sessions import objects as o
from voice_operator.sessions.access import Authorizer
from voice_operator.sessions.cache import SessionCache
from voice_operator.sessions.store import PoolSource, SessionReader, SessionsUnavailable

log = logging.getLogger(__name__)

BASE = f"/apis/{o.GROUP_VERSION}"
GUARDED = ("/apis", "/openapi")
# A watch re-reads its pools this often: what expires silently (TTL) leaves as DELETED, and a
# change whose event was lost in a Redis reconnect shows up.
RESYNC_S = 5.0
OPENAPI_HASH = "v1alpha1-1"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Key = tuple[str, str]


class Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


def wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return any("as=Table" in part and "g=meta.k8s.io" in part for part in accept.split(","))


def field_filter(raw: str) -> dict[str, str]:
    """The field selectors kubectl sends for this kind (delete --wait, describe): name and namespace."""
    fields = parse_selector(raw)
    unknown = set(fields) - {"metadata.name", "metadata.namespace"}
    if unknown:
        raise ValueError(f"field selector {', '.join(sorted(unknown))} is not supported for {o.PLURAL}")
    return fields


def matches(pool: o.PoolRef, labels: Mapping[str, str]) -> bool:
    own = {c.POOL_LABEL: pool.name}
    return all(own.get(k) == v for k, v in labels.items())


def forbidden(who: Caller, verb: str, namespace: str | None, name: str | None) -> web.Response:
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    what = o.qualified(name)
    message = (
        f'{what} is forbidden: User "{who.user}" cannot {verb} resource "{o.PLURAL}" '
        f'in API group "{o.GROUP}" {scope}'
    )
    return status_error(403, "Forbidden", message, {"name": name or "", "group": o.GROUP, "kind": o.PLURAL})


def not_found(name: str) -> web.Response:
    details = {"name": name, "group": o.GROUP, "kind": o.PLURAL}
    return status_error(404, "NotFound", f"{o.qualified(name)} not found", details)


def resource_version() -> str:
    return str(int(time.time() * 1000))


def created_ms(session: o.Session) -> float:
    stamp = session.created
    return stamp.timestamp() * 1000 if stamp else 0.0


class SessionsApi:
    def __init__(self, kube: KubeClient, redis: RedisClients, pools: PoolSource) -> None:
        self.authorizer = Authorizer(kube)
        self.reader = SessionReader(redis)
        self.cache = SessionCache(self.reader)
        self.pools = pools

    async def authorize(
        self, request: web.Request, verb: str, namespace: str | None, name: str | None
    ) -> None:
        who = caller(request)
        if who is None:
            raise Refused(status_error(401, "Unauthorized", "a client certificate is required"))
        try:
            allowed = await self.authorizer.allowed(who, verb, namespace, name)
        except ApiError as e:
            raise Refused(status_error(503, "ServiceUnavailable", f"cannot review access: {e.reason}")) from e
        if not allowed:
            raise Refused(forbidden(who, verb, namespace, name))

    async def pools_of(self, namespace: str | None, labels: Mapping[str, str]) -> list[o.PoolRef]:
        try:
            pools = await self.pools(namespace)
        except ApiError as e:
            raise Refused(status_error(503, "ServiceUnavailable", f"cannot list VoiceAgentPools: {e}")) from e
        return [p for p in pools if matches(p, labels)]

    # --- handlers -----------------------------------------------------------------------------
    async def collection(self, request: web.Request) -> web.StreamResponse:
        namespace = request.match_info.get("namespace")
        try:
            labels = parse_selector(request.query.get("labelSelector", ""))
            fields = field_filter(request.query.get("fieldSelector", ""))
        except ValueError as e:
            return status_error(400, "BadRequest", str(e))
        if fields.get("metadata.namespace") not in (None, namespace) and namespace is not None:
            return self.listed(request, [])
        namespace = namespace or fields.get("metadata.namespace")
        watch = request.query.get("watch", "").lower() in {"1", "true"}
        await self.authorize(request, "watch" if watch else "list", namespace, None)
        pools = await self.pools_of(namespace, labels)
        name = fields.get("metadata.name")
        if watch:
            return await self.watch(request, pools, name)
        if name is not None:
            found = await self.reader.find(pools, name)
            return self.listed(request, [found] if found else [])
        if wants_table(request):
            rows = await self.cache.rows(pools)
            body = o.table_json(rows, resource_version(), datetime.datetime.now(datetime.UTC))
            return web.Response(body=body, content_type="application/json")
        return self.listed(request, await self.cache.sessions(pools))

    def listed(self, request: web.Request, sessions: Iterable[o.Session]) -> web.Response:
        version = resource_version()
        if wants_table(request):
            return web.json_response(o.table(sessions, version, datetime.datetime.now(datetime.UTC)))
        return web.json_response(o.voice_session_list(sessions, version))

    async def one(self, request: web.Request, verb: str) -> o.Session:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        await self.authorize(request, verb, namespace, name)
        found = await self.reader.find(await self.pools_of(namespace, {}), name)
        if found is None:
            raise Refused(not_found(name))
        return found

    async def get(self, request: web.Request) -> web.Response:
        session = await self.one(request, "get")
        if wants_table(request):
            return web.json_response(
                o.table([session], resource_version(), datetime.datetime.now(datetime.UTC))
            )
        return web.json_response(o.voice_session(session))

    async def delete(self, request: web.Request) -> web.Response:
        session = await self.one(request, "delete")
        if not await self.reader.end(session):
            raise Refused(not_found(session.id))
        who = caller(request)
        log.info(
            "session ended through the sessions API",
            extra={"session_id": session.id, "pool": session.pool.pool_id, "by": who.user if who else ""},
        )
        body = o.voice_session(session)
        body["status"]["phase"] = "ended"
        return web.json_response(body)

    async def watch(
        self, request: web.Request, pools: Sequence[o.PoolRef], name: str | None
    ) -> web.StreamResponse:
        """Events until the client goes or timeoutSeconds pass. From a list's resourceVersion only
        what changed since (a session created after it counts as ADDED); without one, every session
        first, as ADDED."""
        table = wants_table(request)
        since = request.query.get("resourceVersion", "")
        floor = int(since) if since.isdigit() and since != "0" else None
        timeout = float(request.query.get("timeoutSeconds") or 0) or None
        deadline = time.monotonic() + timeout if timeout else None
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)

        def wanted(s: o.Session) -> bool:
            return name is None or s.id == name

        async def send(kind: str, session: o.Session) -> None:
            now = datetime.datetime.now(datetime.UTC)
            obj = o.table([session], resource_version(), now) if table else o.voice_session(session)
            await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

        async def apply(fresh: Mapping[Key, o.Session], gone: Iterable[Key]) -> None:
            for key, session in fresh.items():
                old = known.get(key)
                if old is None or old.fingerprint() != session.fingerprint():
                    known[key] = session
                    await send("ADDED" if old is None else "MODIFIED", session)
            for key in gone:
                if (old := known.pop(key, None)) is not None:
                    await send("DELETED", old)

        known: dict[Key, o.Session] = {}
        try:
            async with self.reader.subscribe(pools) as events:
                first = {(s.pool.pool_id, s.id): s for s in await self.reader.sessions(pools) if wanted(s)}
                if floor is None:
                    await apply(first, ())
                else:
                    known.update({k: s for k, s in first.items() if created_ms(s) <= floor})
                    await apply({k: s for k, s in first.items() if created_ms(s) > floor}, ())
                resynced = time.monotonic()
                while deadline is None or time.monotonic() < deadline:
                    wait = RESYNC_S - (time.monotonic() - resynced)
                    if deadline is not None:
                        wait = min(wait, deadline - time.monotonic())
                    changed = await events.next(max(0.0, wait))
                    by_pool: dict[o.PoolRef, set[str]] = {}
                    for pool, sid in changed:
                        if name is None or sid == name:
                            by_pool.setdefault(pool, set()).add(sid)
                    for pool, ids in by_pool.items():
                        fresh = {(pool.pool_id, s.id): s for s in await self.reader.pool_sessions(pool, ids)}
                        await apply(fresh, [(pool.pool_id, i) for i in ids if (pool.pool_id, i) not in fresh])
                    if time.monotonic() - resynced >= RESYNC_S:
                        now = {
                            (s.pool.pool_id, s.id): s for s in await self.reader.sessions(pools) if wanted(s)
                        }
                        await apply(now, [k for k in known if k not in now])
                        resynced = time.monotonic()
        except (ConnectionResetError, SessionsUnavailable) as e:
            log.info("a sessions watch ended", extra={"reason": str(e)})
        return response

    async def document(self, request: web.Request) -> web.Response:
        documents: dict[str, Callable[[], dict[str, Any]]] = {
            "/apis": discovery.api_group_list,
            f"/apis/{o.GROUP}": discovery.api_group,
            BASE: discovery.api_resource_list,
            "/openapi/v2": discovery.openapi_v2,
            "/openapi/v3": lambda: discovery.openapi_v3_index(OPENAPI_HASH),
            f"/openapi/v3/apis/{o.GROUP_VERSION}": discovery.openapi_v3,
        }
        return web.json_response(documents[request.path.rstrip("/") or "/"]())


def install(app: web.Application, kube: KubeClient, redis: RedisClients, pools: PoolSource) -> None:
    """Adds the group's routes and their guard to the aggregated-API app (metrics_api.py)."""
    api = SessionsApi(kube, redis, pools)

    @web.middleware
    async def verified_callers_only(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Unlike the metrics API, no client CA means no access: these show calls, and delete ends them."""
        if request.path.startswith(GUARDED) and not request.path.startswith(
            f"/apis/{c.EXTERNAL_METRICS_GROUP}"
        ):
            if caller(request) is None:
                return status_error(401, "Unauthorized", "a client certificate is required")
            try:
                return await handler(request)
            except Refused as refused:
                return refused.response
            except SessionsUnavailable as e:
                return status_error(503, "ServiceUnavailable", str(e))
        return await handler(request)

    async def close_cache(_: web.Application) -> None:
        await api.cache.close()

    app.middlewares.append(verified_callers_only)
    app.on_cleanup.append(close_cache)
    for path in (
        "/apis",
        f"/apis/{o.GROUP}",
        BASE,
        "/openapi/v2",
        "/openapi/v3",
        f"/openapi/v3/apis/{o.GROUP_VERSION}",
    ):
        app.router.add_get(path, api.document)
    app.router.add_get(f"{BASE}/{o.PLURAL}", api.collection)
    app.router.add_get(f"{BASE}/namespaces/{{namespace}}/{o.PLURAL}", api.collection)
    app.router.add_get(f"{BASE}/namespaces/{{namespace}}/{o.PLURAL}/{{name}}", api.get)
    app.router.add_delete(f"{BASE}/namespaces/{{namespace}}/{o.PLURAL}/{{name}}", api.delete)
