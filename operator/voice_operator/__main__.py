"""`python -m voice_operator`: run the operator (KUBECONFIG or in-cluster credentials).

Configuration is environment only (see config.OperatorConfig / docs/operator.md), read here once
and handed to the handlers in kopf's memo; a bad value stops the process at once with one line
naming the setting.
"""

import gc
import logging
import socket
import sys

import kopf

from voice_operator import constants as c
from voice_operator.config import ConfigError, OperatorConfig
from voice_operator.logs import configure_logging
from voice_operator.memo import OperatorMemo
from voice_operator.registry import build_registry


def settings_for(config: OperatorConfig) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # Keep kopf's bookkeeping in annotations of our group; the CRD status schema stays ours alone.
    settings.persistence.finalizer = "voicepool.dev/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="voicepool.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="voicepool.dev", key="last-handled-configuration"
    )
    # Only warnings become Kubernetes events automatically; the handlers post the useful ones.
    settings.posting.level = logging.WARNING
    # kopf's own warnings (a handler that failed) come from the operator too, by the same name.
    settings.posting.reporting_component = c.MANAGER
    settings.posting.reporting_instance = socket.gethostname()
    # HA: replicas peer in a ClusterKopfPeering; without the peering CRD/object run standalone.
    settings.peering.name = config.peering
    settings.peering.clusterwide = True
    settings.peering.mandatory = False
    settings.peering.standalone = config.standalone
    settings.peering.priority = config.priority
    settings.networking.connect_timeout = 10
    # A SIGTERM that lands while kopf is starting an object's timers can leave that worker running
    # (kopf: "Unprocessed streams left"); exit anyway after a bounded wait. Handlers are idempotent.
    settings.process.ultimate_exiting_timeout = 5
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    return settings


def main() -> None:
    try:
        config = OperatorConfig.from_env()
    except ConfigError as e:
        print(f"voice-operator: configuration error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(config.log_level, config.log_format)
    registry = build_registry(config)
    # The ~77,000 objects imported by now live as long as the process: frozen, a full collection
    # (73-100 ms of the loop that also answers kubectl's session lists) no longer walks them.
    gc.collect()
    gc.freeze()
    kopf.run(
        registry=registry,
        memo=OperatorMemo(config=config),
        settings=settings_for(config),
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        liveness_endpoint=f"http://{config.bind_host}:{config.health_port}/healthz",
        standalone=config.standalone or None,
    )


if __name__ == "__main__":
    main()
