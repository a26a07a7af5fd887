"""voicepool operator: reconciles VoiceAgentPool and NodeTuningProfile custom resources."""

from importlib.metadata import version

__version__ = version("voicepool")  # one place: pyproject.toml
