"""NodeTuningProfile: its spec, the tuner it renders, its status, reconciler and kopf handlers."""
