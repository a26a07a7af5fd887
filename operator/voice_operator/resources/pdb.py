"""PodDisruptionBudget: voluntary disruptions (node drains) take agents down one at a time."""

from voice_operator.objects import Obj, Owner, pool_object, pool_selector
from voice_operator.spec import PoolSpec


def render_pdb(owner: Owner, spec: PoolSpec) -> Obj:
    return pool_object(
        "policy/v1",
        "PodDisruptionBudget",
        owner,
        {
            "maxUnavailable": 1,
            "selector": {"matchLabels": pool_selector(owner.name)},
            # A pod that never became ready serves no calls: do not let it block a drain.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    )
