"""The scaling arithmetic, in one place: the demand the metrics API serves the HPA, the replica
count the HPA makes of it, and the capacity the pool's status reports.

demand = ceil(active + buffer); the HPA, with an AverageValue target of sessionsPerAgent per agent,
converges on replicas = clamp(ceil(demand / sessionsPerAgent), min, max); capacity = ready agents *
sessionsPerAgent.
"""

import math

from voice_operator.fields import SpecError
from voice_operator.pools.spec import BUFFER_PERCENT, PoolSpec


def buffer_for(buffer: int | str, active: int) -> float:
    """The warm buffer in sessions: absolute, or a percentage of the active sessions."""
    if isinstance(buffer, str):
        match = BUFFER_PERCENT.match(buffer)
        if match is None:
            raise SpecError(f"bad bufferSessions {buffer!r}")
        return active * int(match.group(1)) / 100.0
    return float(buffer)


def session_demand(active: int, buffer: int | str) -> int:
    """Sessions the pool must be able to hold now: ceil(active + buffer)."""
    return math.ceil(active + buffer_for(buffer, active))


def per_agent_target(spec: PoolSpec) -> int:
    """The HPA's AverageValue target: with it the HPA computes desired_replicas below."""
    return spec.sessions_per_agent


def desired_replicas(demand: int, spec: PoolSpec) -> int:
    """The replica count the HPA converges to for this demand."""
    wanted = math.ceil(demand / per_agent_target(spec))
    return max(spec.min_replicas, min(spec.max_replicas, wanted))


def capacity(ready: int, spec: PoolSpec) -> int:
    """Sessions the ready agents can hold."""
    return ready * spec.sessions_per_agent
