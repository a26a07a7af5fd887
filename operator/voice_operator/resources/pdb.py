"""PodDisruptionBudget: voluntary disruptions (node drains) take agents down one at a time."""

from voice_operator.resources.common import Obj, Owner, metadata, pool_labels, pool_selector, with_hash
from voice_operator.spec import PoolSpec


def render_pdb(owner: Owner, spec: PoolSpec) -> Obj:
    return with_hash(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": metadata(owner.name, owner.namespace, pool_labels(owner.name), owner),
            "spec": {
                "maxUnavailable": 1,
                "selector": {"matchLabels": pool_selector(owner.name)},
                # A pod that never became ready serves no calls: do not let it block a drain.
                "unhealthyPodEvictionPolicy": "AlwaysAllow",
            },
        }
    )
