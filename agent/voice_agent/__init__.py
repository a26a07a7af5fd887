"""voicepool voice agent: WebRTC in, STT -> LLM -> TTS pipeline, speech out."""

__version__ = "2.0.0"
