"""Provider selection: settings name the provider per stage, this builds them once per process."""

from __future__ import annotations

from voice_agent.providers.base import ProviderError, Providers
from voice_agent.settings import ConfigError, Settings


def build_providers(settings: Settings) -> Providers:
    """Offline providers are built here; cloud providers plug in by name (see docs/providers.md)."""
    from voice_agent.providers.local_llm import LocalResponder
    from voice_agent.providers.local_stt import PocketSphinxSTT
    from voice_agent.providers.local_tts import FliteTTS

    if settings.stt != "local" or settings.llm != "local" or settings.tts != "local":
        raise ConfigError(
            f"cloud providers (VOICE_STT={settings.stt}, VOICE_LLM={settings.llm}, "
            f"VOICE_TTS={settings.tts}) are not available in this build; use 'local'"
        )
    try:
        tts = FliteTTS()
    except ProviderError as exc:
        raise ConfigError(f"VOICE_TTS=local: {exc.message}") from None
    return Providers(stt=PocketSphinxSTT(settings.stt_decoders), llm=LocalResponder(), tts=tts)
