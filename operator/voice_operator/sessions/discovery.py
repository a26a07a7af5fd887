"""Discovery and OpenAPI documents of sessions.voicepool.dev: what the aggregator merges into the
cluster's (kubectl finds the kind through discovery, `kubectl explain` reads OpenAPI v3)."""

from typing import Any

from voice_operator.sessions.objects import GROUP, GROUP_VERSION, KIND, PLURAL, SINGULAR, VERBS, VERSION

SCHEMA_NAME = f"dev.voicepool.sessions.{VERSION}.{KIND}"
LIST_SCHEMA_NAME = f"{SCHEMA_NAME}List"
GVK = [{"group": GROUP, "version": VERSION, "kind": KIND}]


def api_group() -> dict[str, Any]:
    version = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [version],
        "preferredVersion": version,
    }


def api_group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group()]}


def api_resource_list() -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {
                "name": PLURAL,
                "singularName": SINGULAR,
                "namespaced": True,
                "kind": KIND,
                "verbs": list(VERBS),
            }
        ],
    }


def _string(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _schema(ref: str) -> dict[str, Any]:
    """The VoiceSession schema; `ref` is where definitions live (v2 and v3 differ only there)."""
    status = {
        "type": "object",
        "description": "The call as Redis holds it now.",
        "properties": {
            "phase": _string("created, connected, disconnected (suspended, resumable by any agent)."),
            "agent": _string("The agent holding the session; empty while no agent does."),
            "turns": {"type": "integer", "description": "Turns the caller has taken."},
            "speaking": {"type": "boolean", "description": "Whether the agent is speaking now."},
            "lastVoiceToVoiceMs": {
                "type": "integer",
                "description": "Voice-to-voice latency of the last turn, in milliseconds.",
            },
            "lastActivity": _string("When something last happened in the call (RFC 3339)."),
            "expiresAt": _string("When the session ends unless something happens first (RFC 3339)."),
            "timeline": {
                "type": "array",
                "items": {"type": "string"},
                "description": "The call in order. What was said appears only where the pool's "
                "spec.session.exposeTranscripts allows it; otherwise utterances show their word count.",
            },
            "transcript": _string("The caller's last final transcript (exposeTranscripts pools only)."),
            "aiResponse": _string("The agent's last reply (exposeTranscripts pools only)."),
        },
    }
    return {
        "type": "object",
        "description": "A live voice session of a VoiceAgentPool, served from the pool's Redis (never "
        "stored in etcd). Deleting one ends the call: its client sees close code 1000.",
        "x-kubernetes-group-version-kind": GVK,
        "properties": {
            "apiVersion": _string("sessions.voicepool.dev/v1alpha1"),
            "kind": _string("VoiceSession"),
            "metadata": {"$ref": f"{ref}io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
            "spec": {
                "type": "object",
                "description": "Where the session runs.",
                "properties": {"pool": _string("The VoiceAgentPool (label voicepool.dev/pool).")},
            },
            "status": status,
        },
    }


def _list_schema(ref: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A list of VoiceSessions.",
        "x-kubernetes-group-version-kind": [{"group": GROUP, "version": VERSION, "kind": f"{KIND}List"}],
        "properties": {
            "apiVersion": _string("sessions.voicepool.dev/v1alpha1"),
            "kind": _string("VoiceSessionList"),
            "metadata": {"$ref": f"{ref}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"},
            "items": {"type": "array", "items": {"$ref": f"{ref}{SCHEMA_NAME}"}},
        },
        "required": ["items"],
    }


def _meta_schemas() -> dict[str, Any]:
    """Just enough of ObjectMeta/ListMeta for explain; the aggregator keeps the API server's own."""
    return {
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {
            "type": "object",
            "description": "Standard object metadata: name is the session id.",
            "properties": {
                "name": _string("The session id."),
                "namespace": _string("The pool's namespace."),
                "uid": _string("Stable for a session of a pool."),
                "creationTimestamp": _string("When the session was created (RFC 3339)."),
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta": {
            "type": "object",
            "properties": {"resourceVersion": _string("Where a watch after this list starts.")},
        },
    }


def _operation(action: str, description: str, kind: str = KIND) -> dict[str, Any]:
    """An operation as kubectl explain finds a resource's kind by it (the GVK on the operation)."""
    return {
        "description": description,
        "operationId": f"{action}{kind}",
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": GROUP, "version": VERSION, "kind": kind},
        "responses": {"200": {"description": "OK"}},
    }


def _paths() -> dict[str, Any]:
    base = f"/apis/{GROUP_VERSION}"
    return {
        f"{base}/{PLURAL}": {"get": _operation("list", "list in all namespaces", f"{KIND}List")},
        f"{base}/namespaces/{{namespace}}/{PLURAL}": {"get": _operation("list", "list", f"{KIND}List")},
        f"{base}/namespaces/{{namespace}}/{PLURAL}/{{name}}": {
            "get": _operation("get", "read"),
            "delete": _operation("delete", "end the call"),
        },
    }


def openapi_v2() -> dict[str, Any]:
    ref = "#/definitions/"
    return {
        "swagger": "2.0",
        "info": {"title": "voicepool sessions", "version": VERSION},
        "paths": _paths(),
        "definitions": {SCHEMA_NAME: _schema(ref), LIST_SCHEMA_NAME: _list_schema(ref)} | _meta_schemas(),
    }


def openapi_v3_index(version_hash: str) -> dict[str, Any]:
    path = f"apis/{GROUP_VERSION}"
    return {"paths": {path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={version_hash}"}}}


def openapi_v3() -> dict[str, Any]:
    ref = "#/components/schemas/"
    schemas = {SCHEMA_NAME: _schema(ref), LIST_SCHEMA_NAME: _list_schema(ref)} | _meta_schemas()
    return {
        "openapi": "3.0.0",
        "info": {"title": "voicepool sessions", "version": VERSION},
        "paths": _paths(),
        "components": {"schemas": schemas},
    }
