"""Prometheus metrics of the Redis store and the signaling relay."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REDIS_OP_SECONDS = Histogram(
    "voice_redis_operation_seconds",
    "Latency of one Redis operation (script or command) as seen by the agent",
    ["op"],
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
REDIS_ERRORS = Counter("voice_redis_errors_total", "Failed Redis operations", ["op"])
RELAY_SECONDS = Histogram(
    "voice_redis_relay_seconds",
    "Publish -> receive time of a relayed signaling message (wall clocks of two agents)",
    ["direction"],
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1),
)
RELAY_LINKS = Gauge(
    "voice_redis_relay_links", "Relayed client connections (edge: socket here; owner: call here)", ["role"]
)
RELAYED_MESSAGES = Counter("voice_redis_relayed_messages_total", "Relay messages by kind", ["kind"])
LEASE_LAPSES = Counter(
    "voice_redis_lease_lapses_total",
    "Times this agent found its own lease (alive key) expired while it ran: the pool could take it for dead",
)
UNREPLICATED_WRITES = Counter(
    "voice_redis_unreplicated_writes_total",
    "Session writes to a Redis with replicas that no replica acknowledged: a failover could lose them",
)
