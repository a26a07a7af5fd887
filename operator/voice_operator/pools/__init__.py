"""VoiceAgentPool: its spec, the objects it renders, its session load and status, reconciler and kopf
handlers."""
