"""ServiceAccounts: one per pool (agents need no API access) and one per tuner DaemonSet."""

from collections.abc import Mapping

from voice_operator.resources.common import Obj, Owner, metadata, pool_labels, with_hash


def render_serviceaccount(
    owner: Owner,
    name: str | None = None,
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Obj:
    return with_hash(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": metadata(
                name or owner.name,
                namespace or owner.namespace,
                labels if labels is not None else pool_labels(owner.name),
                owner,
            ),
            "automountServiceAccountToken": False,
        }
    )
