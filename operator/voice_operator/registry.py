"""The operator's kopf registry: the lifecycle handlers and both kinds' handlers, registered with
the settings they need at registration (the status timers' interval)."""

import kopf

from voice_operator import lifecycle
from voice_operator.config import OperatorConfig
from voice_operator.pools import handlers as pools
from voice_operator.profiles import handlers as profiles


def build_registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    lifecycle.register(registry)
    pools.register(registry, config)
    profiles.register(registry, config)
    return registry
