"""voicepool voice agent: WebRTC in, STT -> LLM -> TTS pipeline, speech out."""

from importlib.metadata import version

__version__ = version("voicepool")  # one place: pyproject.toml
