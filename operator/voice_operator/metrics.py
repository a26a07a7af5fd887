"""The operator's own Prometheus metrics (served on /metrics next to the external metrics API)."""

import contextlib

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "voicepool_operator_reconciles_total", "Reconciliations by kind and result", ["kind", "result"]
)
RECONCILE_SECONDS = Histogram(
    "voicepool_operator_reconcile_seconds",
    "Duration of one reconciliation",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
API_REQUESTS = Counter(
    "voicepool_operator_api_requests_total", "Kubernetes API calls made by the operator", ["method", "code"]
)
OBJECT_WRITES = Counter(
    "voicepool_operator_object_writes_total", "Owned objects created or updated", ["kind", "action"]
)
STATUS_REFRESHES = Counter(
    "voicepool_operator_status_refreshes", "Pool status recomputations by outcome", ["outcome"]
)
POOL_DEMAND = Gauge("voicepool_pool_session_demand", "Session demand per pool", ["namespace", "pool"])
POOL_ACTIVE = Gauge("voicepool_pool_active_sessions", "Active sessions per pool", ["namespace", "pool"])
METRIC_REQUESTS = Counter(
    "voicepool_external_metrics_requests_total", "External metrics API requests by result", ["result"]
)
REDIS_ERRORS = Counter("voicepool_operator_redis_errors_total", "Failed Redis reads", ["namespace", "pool"])
TUNED_NODES = Gauge("voicepool_profile_tuned_nodes", "Nodes verified as tuned per profile", ["profile"])


def forget_pool_metrics(namespace: str, pool: str) -> None:
    """A deleted pool's series go with it (no stale gauges on dashboards)."""
    for family in (POOL_DEMAND, POOL_ACTIVE, REDIS_ERRORS):
        with contextlib.suppress(KeyError):
            family.remove(namespace, pool)
