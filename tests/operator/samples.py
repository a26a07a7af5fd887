"""Custom resources used across the operator tests (plain dicts, as `kubectl apply` would send)."""

import copy
from typing import Any

from voice_operator import constants as c

REDIS_URL = "redis://redis.voicepool.svc:6379/0"


# spec.turn as the API server defaults it (the CRD), which the agent's own defaults match.
TURN_DEFAULTS: dict[str, Any] = {
    "detector": "adaptive",
    "minSilenceMs": 200,
    "maxSilenceMs": 1600,
    "fixedSilenceMs": 500,
    "interruption": "classify",
    "interruptionMinSpeechMs": 700,
}


def pool(name: str = "demo", namespace: str = "default", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": c.API_VERSION,
        "kind": c.POOL_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"image": "voicepool/agent:1.0", "redis": {"url": REDIS_URL}},
    }
    body["spec"].update(copy.deepcopy(spec))
    return body


def cloud_pool(name: str = "cloud", namespace: str = "default") -> dict[str, Any]:
    """Every provider in the cloud, Redis and TURN credentials from Secrets, a tuning profile."""
    return pool(
        name,
        namespace,
        replicas={"min": 2, "max": 8},
        sessionsPerAgent=5,
        bufferSessions=3,
        resources={"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
        providers={
            "stt": {"provider": "deepgram", "model": "nova-3", "secretRef": {"name": "deepgram"}},
            "llm": {
                "provider": "groq",
                "model": "llama-3.1-8b-instant",
                "secretRef": {"name": "groq", "key": "k"},
            },
            "tts": {
                "provider": "elevenlabs",
                "baseURL": "https://tts.example/v1",
                "secretRef": {"name": "elevenlabs"},
            },
        },
        redis={"secretRef": {"name": "redis", "key": "url"}, "tls": True},
        session={"ttlSeconds": 1800, "drainTimeoutSeconds": 600},
        ice={
            "servers": [{"urls": ["stun:stun.example:3478"]}],
            "turn": {"urls": ["turn:turn.example:3478?transport=udp"], "secretRef": {"name": "turn"}},
        },
        tuningProfile="realtime",
    )


def host_network_pool(name: str = "edge", namespace: str = "default") -> dict[str, Any]:
    """Agents on their nodes' network, gathering only on the node's uplink, announcing the node's IP."""
    return pool(
        name,
        namespace,
        hostNetwork=True,
        ice={
            "servers": [{"urls": ["stun:stun.example:3478"]}],
            "interfaces": ["eth0", "bond0"],
            "excludeInterfaces": ["docker0"],
            "addresses": ["192.0.2.0/24", "2001:db8::/32"],
            "excludeAddresses": ["192.0.2.1", "10.244.0.0/16"],
        },
    )


def profile(name: str = "realtime", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": c.API_VERSION,
        "kind": c.PROFILE_KIND,
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"voicepool.dev/role": "voice"},
            "sysctls": {
                "net.core.rmem_max": "4194304",
                "net.core.wmem_max": "4194304",
                "net.ipv4.tcp_low_latency": "1",
                "net.ipv4.tcp_congestion_control": "bbr",
                "net.ipv4.udp_rmem_min": "16384",
            },
        },
    }
    body["spec"].update(copy.deepcopy(spec))
    return body
