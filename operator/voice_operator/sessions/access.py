"""Who may do what to VoiceSessions: the caller (front_proxy.py) asked about in a SubjectAccessReview.

The API server's RBAC decides, as for any other resource: a VoiceSession is readable and deletable
by whoever a Role grants get/list/watch/delete on voicesessions.sessions.voicepool.dev in that
namespace (docs/operator.md, "Sessions in kubectl"). Answers are kept AUTHZ_TTL_S, as Kubernetes'
delegated authorization caches them, so a `kubectl get -w` or a burst of gets costs one review.
"""

import time
from typing import Any

from voice_operator.front_proxy import Caller
from voice_operator.kube import KubeClient
from voice_operator.sessions.objects import GROUP, PLURAL

SAR_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
AUTHZ_TTL_S = 10.0


class Authorizer:
    def __init__(self, kube: KubeClient, ttl_s: float = AUTHZ_TTL_S) -> None:
        self._kube = kube
        self._ttl_s = ttl_s
        self._answers: dict[tuple[Any, ...], tuple[float, bool]] = {}

    async def allowed(self, who: Caller, verb: str, namespace: str | None, name: str | None = None) -> bool:
        """ApiError when the API server cannot answer (the caller gets a 503, not a guess)."""
        extra = tuple(sorted(who.extra.items()))
        key = (who.user, who.groups, extra, verb, namespace, name)
        now = time.monotonic()
        cached = self._answers.get(key)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        attributes = {"verb": verb, "group": GROUP, "resource": PLURAL, "namespace": namespace or ""}
        if name:
            attributes["name"] = name
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": who.user,
                "groups": list(who.groups),
                "extra": {k: list(v) for k, v in who.extra.items()},
                "resourceAttributes": attributes,
            },
        }
        answer = await self._kube.request("POST", SAR_PATH, review)
        allowed = bool(((answer or {}).get("status") or {}).get("allowed"))
        if len(self._answers) > 10_000:
            self._answers.clear()
        self._answers[key] = (now, allowed)
        return allowed
