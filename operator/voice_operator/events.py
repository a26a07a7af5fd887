"""Kubernetes events as data: reconcilers say what is worth telling, the handlers post it.

The operator writes its events itself rather than through kopf's poster, which puts the namespace
of a cluster-scoped object's events ("default") into their involvedObject too: `kubectl describe
ntp` selects on an empty involvedObject.namespace and found none of them (docs/operator.md, Status).
"""

import datetime
import logging
import socket
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import aiohttp

from voice_operator import constants as c
from voice_operator.kube import ApiError, KubeClient, Obj

log = logging.getLogger(__name__)

# The API server refuses longer messages.
MAX_MESSAGE = 1024
# Where a cluster-scoped object's events live, as the API server's own components post them.
CLUSTER_EVENTS_NAMESPACE = "default"


class Event(NamedTuple):
    type: str  # Normal or Warning
    reason: str
    message: str


def _shorten(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    half = (MAX_MESSAGE - 3) // 2
    return f"{message[:half]}...{message[-half:]}"


def event_body(obj: Mapping[str, Any], event: Event, *, now: str, instance: str) -> Obj:
    """The core/v1 Event telling `event` about `obj`, named after the operator."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    involved = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
    }
    if namespace:
        involved["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "generateName": f"{meta.get('name')}.",
            "namespace": namespace or CLUSTER_EVENTS_NAMESPACE,
        },
        "involvedObject": {k: v for k, v in involved.items() if v is not None},
        "type": event.type,
        "reason": event.reason,
        "message": _shorten(event.message),
        "source": {"component": c.MANAGER},  # kubectl describe's "From" column
        "reportingComponent": c.MANAGER,
        "reportingInstance": instance,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


async def post(kube: KubeClient, obj: Mapping[str, Any], events: Iterable[Event]) -> None:
    """Write the events on the object; a failure is logged and never fails the handler."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for event in events:
        body = event_body(obj, event, now=now, instance=socket.gethostname())
        path = f"/api/v1/namespaces/{body['metadata']['namespace']}/events"
        try:
            await kube.request("POST", path, body)
        except (ApiError, aiohttp.ClientError, TimeoutError) as e:
            log.warning("cannot post the %s event %s: %s", event.type, event.reason, e)
