"""Who is calling the operator's aggregated APIs (external metrics, sessions), and their error form.

The API server's aggregator reaches an extension API with its front-proxy client certificate and
names the user it authenticated in X-Remote-User / X-Remote-Group / X-Remote-Extra-* headers (the
request-header convention of Kubernetes). Those headers are believed only over a connection whose
client certificate the TLS handshake verified against the configured CA (VOICE_OPERATOR_CLIENT_CA),
so that CA must sign nothing but front proxies. A client holding a certificate of that CA and
sending no such header is the certificate's subject, as Kubernetes reads client certificates (CN
the user, O the groups): what a direct client such as kubectl in the tests presents.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from aiohttp import web

EXTRA_PREFIX = "X-Remote-Extra-"


@dataclasses.dataclass(frozen=True)
class Caller:
    user: str
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


def peer_certificate(request: web.Request) -> dict[str, Any] | None:
    """The client certificate the handshake verified (None: none presented, or plain HTTP)."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    cert = ssl_object.getpeercert() if ssl_object is not None else None
    return cert or None


def _subject(cert: Mapping[str, Any], attribute: str) -> list[str]:
    return [value for rdn in cert.get("subject", ()) for key, value in rdn if key == attribute]


def caller(request: web.Request) -> Caller | None:
    """None when the connection carries no verified client certificate (or names no user)."""
    cert = peer_certificate(request)
    if cert is None:
        return None
    user = request.headers.get("X-Remote-User", "")
    if user:
        extra: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            if name.lower().startswith(EXTRA_PREFIX.lower()):
                extra.setdefault(unquote(name[len(EXTRA_PREFIX) :]).lower(), []).append(value)
        groups = tuple(request.headers.getall("X-Remote-Group", []))
        return Caller(user, groups, {k: tuple(v) for k, v in extra.items()})
    names = _subject(cert, "commonName")
    return Caller(names[0], tuple(_subject(cert, "organizationName"))) if names else None


def status_error(
    code: int, reason: str, message: str, details: Mapping[str, Any] | None = None
) -> web.Response:
    """A metav1 Status, the error form every Kubernetes client reads (kubectl prints its message)."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
    body |= {"message": message, "reason": reason, "code": code}
    if details:
        body["details"] = dict(details)
    return web.json_response(body, status=code)


def parse_selector(raw: str) -> dict[str, str]:
    """Equality-based label selectors only (what an HPA matchLabels and `kubectl -l k=v` send)."""
    labels: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        key, sep, value = part.partition("==") if "==" in part else part.partition("=")
        if not sep or not key.strip() or "!" in key:
            raise ValueError(f"unsupported label selector term {part!r}")
        labels[key.strip()] = value.strip()
    return labels
