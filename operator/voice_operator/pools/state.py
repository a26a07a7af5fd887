"""What the operator keeps per VoiceAgentPool between events, and where: in the pool's own kopf
memo, and in two kopf indexes (pools/handlers.py) that the startup handler puts in the memo."""

import asyncio
import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

from voice_operator.memo import OperatorMemo
from voice_operator.pools.spec import PoolSpec
from voice_operator.pools.status import Problem


@dataclasses.dataclass
class PoolState:
    namespace: str
    name: str
    # The pool as last seen: from its watch events, or as our own status write returned it.
    body: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # What the last reconcile found: None (and a problem) for a spec it cannot act on.
    spec: PoolSpec | None = None
    redis_url: str | None = None
    problems: list[Problem] = dataclasses.field(default_factory=list)
    # The Deployment as this operator last wrote it: the status uses it until the watch of
    # Deployments delivers it (a new pool, or right after a restart).
    deployment: Mapping[str, Any] | None = None
    last_costs: dict[str, int] | None = None
    # One status refresh at a time per pool (timer, Deployment events and reconciles all refresh).
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)

    @property
    def reconciled(self) -> bool:
        return self.spec is not None or bool(self.problems)

    @property
    def status(self) -> Mapping[str, Any]:
        status = self.body.get("status")
        return status if isinstance(status, Mapping) else {}


# The indexes of pools/handlers.py, by (namespace, pool name): each pool's state, and the agents'
# Deployment as last watched.
PoolStates = Mapping[tuple[str, str], Collection[PoolState]]
PoolDeployments = Mapping[tuple[str, str], Collection[Mapping[str, Any]]]


class PoolsMemo(OperatorMemo):
    """The pools' part of kopf's memo: handlers annotate their memo with it for the types (the memo
    itself is the one dict kopf hands over, whatever the annotation says)."""

    pool_states: PoolStates  # kopf's indexes (live views), set at startup
    pool_deployments: PoolDeployments
    pool: PoolState  # in a VoiceAgentPool's own copy only
