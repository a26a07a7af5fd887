"""HPA on session demand: replicas = ceil(demand / sessionsPerAgent) within [min, max].

The External metric is served by the operator itself (external.metrics.k8s.io); with an
AverageValue target of sessionsPerAgent the HPA keeps exactly enough agents for the live
sessions plus the warm buffer. Scale-up is immediate, scale-down slow (calls last minutes).
"""

from voice_operator import constants as c
from voice_operator.objects import Obj, Owner, pool_object
from voice_operator.spec import PoolSpec


def render_hpa(owner: Owner, spec: PoolSpec) -> Obj:
    return pool_object(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        owner,
        {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner.name},
            "minReplicas": spec.min_replicas,
            "maxReplicas": spec.max_replicas,
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {
                            "name": c.DEMAND_METRIC,
                            "selector": {"matchLabels": {c.POOL_LABEL: owner.name}},
                        },
                        "target": {"type": "AverageValue", "averageValue": str(spec.sessions_per_agent)},
                    },
                }
            ],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "selectPolicy": "Max",
                    "policies": [
                        {"type": "Pods", "value": 4, "periodSeconds": 15},
                        {"type": "Percent", "value": 100, "periodSeconds": 15},
                    ],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": 300,
                    "selectPolicy": "Min",
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                },
            },
        },
    )
