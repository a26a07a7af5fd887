"""A small async Kubernetes client on aiohttp for the objects the operator owns.

kopf talks to the API for its own resources; this client does the rest (owned objects, nodes,
pods, secrets) with the same credentials, so the process keeps one HTTP stack and one event loop.
Every call is counted (voicepool_operator_api_requests_total) for the API-calls-per-pool figure.
"""

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import kopf

from voice_operator import metrics

log = logging.getLogger(__name__)

Obj = dict[str, Any]

# kind -> (plural, namespaced) for everything the operator reads or writes.
KINDS: Mapping[str, tuple[str, bool]] = {
    "Deployment": ("deployments", True),
    "DaemonSet": ("daemonsets", True),
    "Service": ("services", True),
    "ServiceAccount": ("serviceaccounts", True),
    "PodDisruptionBudget": ("poddisruptionbudgets", True),
    "HorizontalPodAutoscaler": ("horizontalpodautoscalers", True),
    "ScaledObject": ("scaledobjects", True),
    "Secret": ("secrets", True),
    "Pod": ("pods", True),
    "Namespace": ("namespaces", False),
    "Node": ("nodes", False),
    "VoiceAgentPool": ("voiceagentpools", True),
    "NodeTuningProfile": ("nodetuningprofiles", False),
}

MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclasses.dataclass(frozen=True)
class Ref:
    api_version: str
    kind: str
    namespace: str | None
    name: str | None = None

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> "Ref":
        meta = obj.get("metadata", {})
        return cls(str(obj["apiVersion"]), str(obj["kind"]), meta.get("namespace"), meta.get("name"))

    def path(self, subresource: str | None = None, collection: bool = False) -> str:
        plural, namespaced = KINDS[self.kind]
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if namespaced and self.namespace is not None:
            base += f"/namespaces/{quote(self.namespace)}"
        base += f"/{plural}"
        if not collection and self.name is not None:
            base += f"/{quote(self.name)}"
            if subresource:
                base += f"/{subresource}"
        return base


def _session(info: kopf.ConnectionInfo) -> aiohttp.ClientSession:
    headers = info.as_http_headers()
    headers["User-Agent"] = "voicepool-operator"
    server = info.server.rstrip("/")
    ssl_ctx: Any = info.as_ssl_context() if server.startswith("https") else False
    return aiohttp.ClientSession(
        base_url=server,
        connector=aiohttp.TCPConnector(limit=64, ssl=ssl_ctx),
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=30, sock_connect=5),
    )


class KubeClient:
    def __init__(self, login: Callable[[], kopf.ConnectionInfo]) -> None:
        self._login = login
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()

    async def _get_session(self, renew: bool = False) -> aiohttp.ClientSession:
        async with self._lock:
            if renew and self._session is not None:
                await self._session.close()
                self._session = None
            if self._session is None:
                self._session = _session(self._login())
            return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> Obj | None:
        """One API call; None for 404 on reads/patches/deletes, ApiError for other failures."""
        url = path + ("?" + urlencode(params) if params else "")
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if body is not None else {}
        for attempt in range(2):
            session = await self._get_session(renew=attempt > 0)
            async with session.request(method, url, data=data, headers=headers) as resp:
                metrics.API_REQUESTS.labels(method, str(resp.status)).inc()
                if resp.status == 401 and attempt == 0:
                    continue  # token rotated: log in again once
                text = await resp.text()
                if resp.status == 404:
                    return None
                if resp.status >= 400:
                    try:
                        status = json.loads(text)
                        reason, message = str(status.get("reason", "")), str(status.get("message", ""))
                    except ValueError:
                        reason, message = "", text[:200]
                    raise ApiError(resp.status, reason, message)
                result: Obj = json.loads(text) if text else {}
                return result
        raise ApiError(401, "Unauthorized", "credentials rejected after re-login")

    async def get(self, ref: Ref) -> Obj | None:
        return await self.request("GET", ref.path())

    async def list(self, ref: Ref, labels: Mapping[str, str] | None = None) -> list[Obj]:
        """List objects; the label filter is applied server-side and again here (cheap, exact)."""
        params = {"labelSelector": ",".join(f"{k}={v}" for k, v in labels.items())} if labels else None
        result = await self.request("GET", ref.path(collection=True), params=params)
        items: list[Obj] = list((result or {}).get("items") or [])
        if labels:
            items = [
                item
                for item in items
                if all((item.get("metadata", {}).get("labels") or {}).get(k) == v for k, v in labels.items())
            ]
        if ref.namespace is not None and KINDS[ref.kind][1]:
            items = [i for i in items if i.get("metadata", {}).get("namespace") == ref.namespace]
        return items

    async def create(self, obj: Obj) -> Obj:
        ref = Ref.of(obj)
        result = await self.request("POST", ref.path(collection=True), obj)
        if result is None:
            raise ApiError(404, "NotFound", f"cannot create {ref.kind} {ref.namespace}/{ref.name}")
        return result

    async def patch(self, ref: Ref, patch: Obj, subresource: str | None = None) -> Obj | None:
        return await self.request("PATCH", ref.path(subresource), patch, content_type=MERGE_PATCH)

    async def delete(self, ref: Ref) -> bool:
        return await self.request("DELETE", ref.path()) is not None
