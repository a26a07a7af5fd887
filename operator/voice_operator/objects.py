"""What every owned object carries: labels, owner references, the desired-state hash; and the
ServiceAccount both kinds render (one per pool, one per tuner DaemonSet)."""

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from voice_operator import constants as c

Obj = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Owner:
    """The custom resource that owns rendered objects (deletion cascades through ownerReferences)."""

    kind: str
    name: str
    uid: str
    namespace: str | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> "Owner":
        meta = body.get("metadata", {})
        return cls(
            kind=str(body.get("kind") or c.POOL_KIND),
            name=str(meta["name"]),
            uid=str(meta.get("uid") or ""),
            namespace=meta.get("namespace"),
        )

    def reference(self) -> Obj:
        return {
            "apiVersion": c.API_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def managed_labels(app: str, owner_label: str, owner: str) -> dict[str, str]:
    """Stable labels of an owned object; a superset of its pods' selector (never changed later)."""
    return {
        c.LABEL_NAME: app,
        c.LABEL_INSTANCE: owner,
        c.LABEL_PART_OF: "voicepool",
        c.LABEL_MANAGED_BY: c.MANAGER,
        owner_label: owner,
    }


def pool_labels(pool: str) -> dict[str, str]:
    return managed_labels("voice-agent", c.POOL_LABEL, pool)


def pool_selector(pool: str) -> dict[str, str]:
    return {c.LABEL_NAME: "voice-agent", c.POOL_LABEL: pool}


def selector_string(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def metadata(
    name: str,
    namespace: str | None,
    labels: Mapping[str, str],
    owner: Owner,
    annotations: Mapping[str, str] | None = None,
) -> Obj:
    meta: Obj = {"name": name, "labels": dict(labels), "ownerReferences": [owner.reference()]}
    if namespace is not None:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def desired_hash(obj: Mapping[str, Any]) -> str:
    """A digest of everything we render except the hash itself: equal hash => nothing to write."""
    stripped = json.loads(json.dumps(obj, sort_keys=True))
    meta = stripped.get("metadata", {})
    meta.get("annotations", {}).pop(c.HASH_ANNOTATION, None)
    if meta.get("annotations") == {}:
        del meta["annotations"]  # the same digest before and after the hash is stored on the object
    blob = json.dumps(stripped, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def with_hash(obj: Obj) -> Obj:
    obj.setdefault("metadata", {}).setdefault("annotations", {})[c.HASH_ANNOTATION] = desired_hash(obj)
    return obj


def pool_object(api_version: str, kind: str, owner: Owner, spec: Obj) -> Obj:
    """An object named like its pool, in the pool's namespace, with the pool's labels."""
    meta = metadata(owner.name, owner.namespace, pool_labels(owner.name), owner)
    return with_hash({"apiVersion": api_version, "kind": kind, "metadata": meta, "spec": spec})


def render_serviceaccount(
    owner: Owner,
    name: str | None = None,
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Obj:
    return with_hash(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": metadata(
                name or owner.name,
                namespace or owner.namespace,
                labels if labels is not None else pool_labels(owner.name),
                owner,
            ),
            "automountServiceAccountToken": False,
        }
    )
