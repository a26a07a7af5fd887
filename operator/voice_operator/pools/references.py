"""What a pool refers to and the operator only reads: Secrets (and their keys) and its profile.

The Redis URL may sit in a Secret: it is resolved here, and never logged or written anywhere.
"""

import asyncio
import base64
from collections.abc import Mapping
from typing import Any

from voice_operator import constants as c
from voice_operator.kube import KubeClient, Ref
from voice_operator.pools.spec import PoolSpec
from voice_operator.pools.status import Problem

# The reasons of the problems check_references finds (a pool's other problems come from elsewhere).
REFERENCE_REASONS = frozenset({"SecretNotFound", "SecretKeyNotFound", "TuningProfileNotFound"})


def _decode(secret: Mapping[str, Any], key: str) -> str | None:
    data = secret.get("data") or {}
    if key in data:
        return base64.b64decode(data[key]).decode()
    string_data = secret.get("stringData") or {}
    value = string_data.get(key)
    return str(value) if value is not None else None


async def check_references(
    kube: KubeClient, namespace: str, spec: PoolSpec
) -> tuple[list[Problem], str | None]:
    """Missing Secrets/keys or profile make the pool Degraded; returns the Redis URL when known."""
    problems: list[Problem] = []
    names = spec.secret_names()
    secrets = await asyncio.gather(*(kube.get(Ref("v1", "Secret", namespace, n)) for n in names))
    by_name = dict(zip(names, secrets, strict=True))
    wanted: list[tuple[str, str]] = [(p.secret.name, p.secret.key) for p in spec.providers if p.secret]
    if spec.redis_secret is not None:
        wanted.append((spec.redis_secret.name, spec.redis_secret.key))
    if spec.turn is not None:
        wanted += [
            (spec.turn.secret_name, spec.turn.username_key),
            (spec.turn.secret_name, spec.turn.credential_key),
        ]
    for name in names:
        if by_name[name] is None:
            problems.append(Problem("SecretNotFound", f"Secret {namespace}/{name} not found"))
    for name, key in wanted:
        secret = by_name.get(name)
        if secret is not None and _decode(secret, key) is None:
            problems.append(Problem("SecretKeyNotFound", f"Secret {namespace}/{name} has no key {key!r}"))
    if spec.tuning_profile:
        profile = await kube.get(Ref(c.API_VERSION, c.PROFILE_KIND, None, spec.tuning_profile))
        if profile is None:
            problems.append(
                Problem("TuningProfileNotFound", f"NodeTuningProfile {spec.tuning_profile} not found")
            )
    redis_url = spec.redis_url
    if spec.redis_secret is not None and by_name.get(spec.redis_secret.name) is not None:
        redis_url = _decode(by_name[spec.redis_secret.name] or {}, spec.redis_secret.key)
    return problems, redis_url
