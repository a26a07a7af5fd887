"""voicepool operator: reconciles VoiceAgentPool and NodeTuningProfile custom resources."""

__version__ = "0.1.0"
