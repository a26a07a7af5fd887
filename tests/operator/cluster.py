"""kmock as the operator's Kubernetes API server, plus the API-server behaviour kmock leaves out.

kmock 0.8's KubernetesEmulator stores objects, serves list/watch/get/create/merge-patch/delete and
discovery. A real API server also does things kopf and the operator depend on, which this subclass
adds in the test fixture (the operator itself is not patched in any way):

* system metadata on create: uid, creationTimestamp, resourceVersion, generation; generateName
  (kopf posts its Events with generateName);
* resourceVersion bumps on every write and generation bumps on spec changes;
* the status subresource: writes to /status change only .status, other writes never touch .status;
* JSON-patch (application/json-patch+json, with its "test" op), which kopf uses for finalizers;
* ownerReference garbage collection (the cascade a real cluster's garbage collector does);
* core Namespace objects: kmock reads /api/v1/namespaces/NAME as "namespace NAME" and fails;
* watches from a list's resourceVersion (kmock replays every object to every watch), typed lists;
* protobuf bodies (kubectl's typed clients send Secrets so), read into JSON (protobuf.py);
* field selectors on lists and watches (`kubectl describe` finds an object's events by them);
* what `kubectl apply --server-side` and `kubectl wait` need: an apply patch creates a missing
  object, a created CRD is served at once and reads Established, the core group version is "v1",
  and /openapi/v3 says every kind takes the fieldValidation parameter (kubectl then leaves
  validation to the server instead of downloading schemas kmock does not have) and holds the CRDs'
  schemas (`kubectl explain`);
* cheap reaction matching: kmock scans every request ever recorded for each new one, so only the
  requests in flight stay recorded there; `log` keeps the full history for assertions.
"""

import copy
import datetime
import itertools
import json
import pathlib
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
import yaml
from kmock._internal import enums, parsing, rendering

from tests.operator import protobuf

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
CRDS = kmock.resource("apiextensions.k8s.io/v1/customresourcedefinitions")
PROTOBUF = "application/vnd.kubernetes.protobuf"
STATEFULSETS = kmock.resource("apps/v1/statefulsets")


_kmock_parse_path = parsing.parse_path


def _parse_path(path: str) -> parsing.ParsedPath:
    """/api/v1/namespaces[/NAME] is the cluster-scoped Namespace resource, not a namespace prefix."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and len(parts) <= 4:
        return parsing.ParsedPath("", "v1", "namespaces", None, parts[3] if len(parts) == 4 else None, None)
    return _kmock_parse_path(path)


parsing.parse_path = _parse_path


def load_yaml_documents(path: pathlib.Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def crds() -> list[dict[str, Any]]:
    docs = [doc for p in sorted(CRD_DIR.glob("*.yaml")) for doc in load_yaml_documents(p)]
    return [doc for doc in docs if doc.get("kind") == "CustomResourceDefinition"]


def field_value(obj: Any, path: str) -> str:
    """A field as a field selector reads it: absent fields are the empty string."""
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return "" if obj is None else str(obj)


def selected(obj: Any, selector: str) -> bool:
    """Whether an object matches a field selector (terms joined by commas; =, == or !=)."""
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if field_value(obj, key) == value:
                return False
        else:
            key, _, value = term.partition("=")
            if field_value(obj, key) != value.removeprefix("="):
                return False
    return True


def openapi_operation(resource: kmock.resource, kind: str) -> dict[str, Any]:
    """The PATCH of one kind in an OpenAPI v3 document, as much of it as kubectl reads."""
    return {
        "x-kubernetes-group-version-kind": {
            "group": resource.group,
            "version": resource.version,
            "kind": kind,
        },
        "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
        "responses": {"200": {"description": "OK"}},
    }


def merge_diff(old: Any, new: Any) -> Any:
    """The JSON merge patch that turns `old` into `new` (None deletes a key)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_diff(old[key], value) if isinstance(value, dict) else value
    return patch


@attrs.define(kw_only=True)
class Cluster(kmock.KubernetesEmulator):
    _versions: Iterator[int] = attrs.field(factory=lambda: itertools.count(1000), init=False)
    _status_subresources: set[Any] = attrs.field(factory=set, init=False)
    _schemas: dict[Any, dict[str, Any]] = attrs.field(factory=dict, init=False)
    _last_version: int = attrs.field(default=999, init=False)
    log: list[rendering.Request] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self["get /openapi/v3"] << self._serve_openapi_root
        self["get", re.compile(r"^/openapi/v3/.+")] << self._serve_openapi

    def install_crds(self) -> None:
        """Discovery for the built-in kinds and every CRD in crds/ (as `kubectl apply -f crds/`)."""
        self.resources.load_bundled()
        for crd in crds():
            self.install_crd(crd)

    def install_crd(self, crd: dict[str, Any]) -> None:
        """Serve a CRD's kinds (what the API server does once it is established)."""
        spec = crd["spec"]
        for version in spec["versions"]:
            key = f"{spec['group']}/{version['name']}/{spec['names']['plural']}"
            subresources = set((version.get("subresources") or {}).keys())
            self.resources[key] = kmock.ResourceInfo(
                kind=spec["names"]["kind"],
                singular=spec["names"].get("singular"),
                namespaced=spec["scope"] == "Namespaced",
                verbs={"create", "delete", "get", "list", "patch", "update", "watch", "deletecollection"},
                shortnames=set(spec["names"].get("shortNames", [])),
                categories=set(spec["names"].get("categories", [])),
                subresources=subresources,
            )
            if "status" in subresources:
                self._status_subresources.add(kmock.resource(key))
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if schema:
                gvk = {"group": spec["group"], "version": version["name"], "kind": spec["names"]["kind"]}
                self._schemas[kmock.resource(key)] = {**schema, "x-kubernetes-group-version-kind": [gvk]}

    def _group_versions(self) -> dict[str, list[tuple[kmock.resource, str]]]:
        """OpenAPI v3 path of each served group version -> its resources and kinds."""
        served: dict[str, list[tuple[kmock.resource, str]]] = {}
        for res in self._get_resources():
            kind = self.resources[res].kind if res in self.resources else None
            path = f"apis/{res.group}/{res.version}" if res.group else f"api/{res.version}"
            served.setdefault(path, []).append((res, kind or str(res.plural).capitalize()))
        return served

    async def _serve_openapi_root(self, request: rendering.Request) -> rendering.Payload:
        paths = {gv: {"serverRelativeURL": f"/openapi/v3/{gv}"} for gv in self._group_versions()}
        return {"paths": paths}

    async def _serve_openapi(self, request: rendering.Request) -> rendering.Payload:
        resources = self._group_versions().get(request.url.path.removeprefix("/openapi/v3/"), [])
        paths = {
            f"{api_path(f'{res.group}/{res.version}/{res.plural}', '{namespace}')}/{{name}}": {
                "patch": openapi_operation(res, kind)
            }
            for res, kind in resources
        }
        # A CRD's schema, for `kubectl explain` (keyed as the API server names it: reversed group).
        schemas = {
            ".".join([*reversed(res.group.split(".")), res.version, kind]): self._schemas[res]
            for res, kind in resources
            if res in self._schemas
        }
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.30.0"},
            "paths": paths,
            "components": {"schemas": schemas},
        }

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        """kmock names the core group version "/v1"; clients want "v1"."""
        payload: Any = await super()._serve_version(request)
        payload["groupVersion"] = str(payload["groupVersion"]).lstrip("/")
        return payload  # type: ignore[no-any-return]

    def _next_version(self) -> str:
        self._last_version = next(self._versions)
        return str(self._last_version)

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        """As kmock's, but with a real list resourceVersion for the watch that follows."""
        payload: Any = await super()._serve_list(request)
        payload["metadata"]["resourceVersion"] = str(self._last_version)
        selector = request.params.get("fieldSelector")
        if selector:
            payload["items"] = [item for item in payload["items"] if selected(item, selector)]
        res = request.resource
        if res is not None and res in self.resources:  # kubectl wants typed lists
            payload["kind"] = f"{self.resources[res].kind}List"
            payload["apiVersion"] = f"{res.group}/{res.version}" if res.group else str(res.version)
        return payload  # type: ignore[no-any-return]

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        """A watch from ?resourceVersion=N: only newer objects replayed, then live events.

        kmock replays every stored object as ADDED on each watch, so a client that listed first
        sees every object twice with the same resourceVersion; kopf then holds its finalizer patch
        as pending and never runs the creation handlers. A real API server sends only newer events.
        """
        yield b""
        assert request.resource is not None
        since = request.params.get("resourceVersion", "")
        floor = int(since) if since.isdigit() else -1
        bus = self._buses[request.resource]
        mark = await bus.mark()
        try:
            replayed: dict[tuple[str | None, str], int] = {}
            async with self._lock:
                objs = self._KubernetesEmulator__get_objs(request, strict=False)  # type: ignore[attr-defined]
                events = []
                for obj in objs:
                    if obj.deleted:
                        continue
                    meta = obj.raw.get("metadata", {})
                    version = int(meta.get("resourceVersion") or 0)
                    if version > floor:
                        replayed[(meta.get("namespace"), meta.get("name"))] = version
                        events.append({"type": "ADDED", "object": obj.raw})
            selector = request.params.get("fieldSelector") or ""
            for event in events:
                if selected(event["object"], selector):
                    yield event
            async for event in bus.stream(since=mark):
                if not selected(event.get("object", {}), selector):
                    continue
                meta = event.get("object", {}).get("metadata", {})
                key = (meta.get("namespace"), meta.get("name"))
                if request.namespace is not None and key[0] != request.namespace:
                    continue
                if request.name is not None and key[1] != request.name:
                    continue
                seen = replayed.get(key)
                stale = seen is not None and int(meta.get("resourceVersion") or 0) <= seen
                if stale and event["type"] != "DELETED":
                    continue
                yield event
        finally:
            await bus.unmark(mark)

    def _current(self, request: rendering.Request) -> dict[str, Any] | None:
        if request.resource is None or request.name is None:
            return None
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def _prepare_create(self, request: rendering.Request) -> rendering.Request:
        data = copy.deepcopy(request.data) if isinstance(request.data, dict) else {}
        meta = data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)
        if request.namespace and not meta.get("namespace"):
            meta["namespace"] = request.namespace
        meta["uid"] = f"uid-{secrets.token_hex(8)}"
        meta["creationTimestamp"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        meta["resourceVersion"] = self._next_version()
        meta["generation"] = 1
        if request.resource == STATEFULSETS:  # a default the API server writes and kubectl reads
            data.setdefault("spec", {}).setdefault("updateStrategy", {"type": "RollingUpdate"})
        if request.resource == CRDS:
            data["status"] = {
                "conditions": [{"type": t, "status": "True"} for t in ("NamesAccepted", "Established")],
                "acceptedNames": data.get("spec", {}).get("names", {}),
            }
        return attrs.evolve(request, data=data, action=enums.action.CREATE)

    def _prepare_patch(self, request: rendering.Request) -> rendering.Request:
        current = self._current(request)
        if current is None:
            return request  # kmock answers 404
        content_type = request.headers.get("Content-Type", "")
        if "json-patch" in content_type:
            try:
                patched = jsonpatch.apply_patch(current, request.data)
            except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPatchTestFailed) as e:
                raise kmock.KubernetesError(422, "Invalid", f"the JSON patch does not apply: {e}") from e
            patch = merge_diff(current, patched)
        else:
            patch = copy.deepcopy(request.data) if isinstance(request.data, dict) else {}
        if request.subresource == "status":
            patch = {"status": patch.get("status")}
        elif request.resource in self._status_subresources:
            patch.pop("status", None)
        meta = patch.get("metadata") if isinstance(patch.get("metadata"), dict) else None
        if meta is not None:
            meta.pop("resourceVersion", None)
        patch.setdefault("metadata", {})["resourceVersion"] = self._next_version()
        if "spec" in patch:
            new_spec = kmock_patch(current.get("spec"), patch["spec"])
            if new_spec != current.get("spec"):
                patch["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        return attrs.evolve(request, data=patch)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.content_type == PROTOBUF:
            # kmock reads JSON only: a protobuf body is read here and handed on as JSON.
            decoded = protobuf.decode(await raw_request.read())
            if decoded is None:
                reason = f"the test API server reads no {PROTOBUF} body of this kind"
                return await self._render_error(kmock.KubernetesError(415, "UnsupportedMediaType", reason))
            raw_request._read_bytes = json.dumps(decoded).encode()
        return await super().__call__(raw_request)

    async def _handle(self, request: rendering.Request) -> Any:
        before_uid = None
        original = request
        if request.resource is not None and request.action == enums.action.CREATE:
            request = self._prepare_create(request)
        elif request.resource is not None and request.action == enums.action.UPDATE:
            if "apply-patch" in request.headers.get("Content-Type", "") and self._current(request) is None:
                request = self._prepare_create(request)  # server-side apply creates what is missing
            else:
                request = self._prepare_patch(request)
        if request is not original:
            # kmock matches reactions to the recorded request by identity: record the rewritten one.
            self._replace_recorded(original, request)
        self.log.append(request)
        if request.resource is not None and request.name is not None:
            current = self._current(request)
            before_uid = (current or {}).get("metadata", {}).get("uid")
        try:
            response = await super()._handle(request)
        finally:
            # kmock finds a request's reaction by scanning every recorded request: quadratic in a
            # long run. Keep only the requests in flight there; the full history is in self.log.
            self._replace_recorded(request, None)
        if before_uid is not None and self._current(request) is None:
            await self._collect_garbage({before_uid})
        if request.resource == CRDS and request.action == enums.action.CREATE:
            self.install_crd(request.data)
        return response

    def _replace_recorded(self, old: rendering.Request, new: rendering.Request | None) -> None:
        for i in range(len(self._requests) - 1, -1, -1):
            if self._requests[i] is old:
                if new is None:
                    del self._requests[i]
                else:
                    self._requests[i] = new
                return

    async def _collect_garbage(self, uids: set[str]) -> None:
        """Delete dependents of deleted owners, transitively (foreground-less, like background GC)."""
        while uids:
            orphans: set[str] = set()
            async with self._lock:
                for (resource, _, _), obj in list(self.objects.items()):
                    if obj.deleted:
                        continue
                    refs = obj.get("metadata", {}).get("ownerReferences") or []
                    if any(ref.get("uid") in uids for ref in refs):
                        raw = obj.raw
                        obj.delete()
                        orphans.add(raw["metadata"].get("uid", ""))
                        await self._buses[resource].put({"type": "DELETED", "object": raw})
            uids = orphans - {""}

    # -- helpers for tests -------------------------------------------------------------------------

    def obj(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The stored object (resource as "group/version/plural", "v1/pods" for the core group)."""
        key = (kmock.resource(resource), namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def peek(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The stored object without a copy (read-only; for cheap polling in benchmarks)."""
        key = (kmock.resource(resource), namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        raw: dict[str, Any] = self.objects[key].raw
        return raw

    def live(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        res = kmock.resource(resource)
        return [
            copy.deepcopy(o.raw)
            for (r, ns, _), o in self.objects.items()
            if r == res and not o.deleted and (namespace is None or ns == namespace)
        ]

    def writes(self, since: int = 0) -> list[rendering.Request]:
        """Requests that changed state (create/patch/delete), from request number `since` on."""
        changing = {enums.action.CREATE, enums.action.UPDATE, enums.action.DELETE}
        return [r for r in self.log[since:] if r.action in changing]

    @property
    def request_count(self) -> int:
        return len(self.log)


def api_path(
    resource: str, namespace: str | None = None, name: str | None = None, sub: str | None = None
) -> str:
    """URL path of a collection or object; resource as "group/version/plural" or "v1/plural"."""
    res = kmock.resource(resource)
    path = f"/api/{res.version}" if not res.group else f"/apis/{res.group}/{res.version}"
    if namespace is not None:
        path += f"/namespaces/{namespace}"
    path += f"/{res.plural}"
    if name is not None:
        path += f"/{name}"
    if sub is not None:
        path += f"/{sub}"
    return path


def kmock_patch(old: Any, patch: Any) -> Any:
    """Merge-patch semantics as kmock applies them (to predict the new spec for generation)."""
    if not isinstance(patch, dict) or not isinstance(old, dict):
        return patch
    result = dict(old)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = kmock_patch(old.get(key), value)
    return result
