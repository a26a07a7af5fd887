"""Provider selection: settings name the provider per stage, this builds them once per process.

Cloud SDKs are imported only when their provider is configured, so an offline agent starts without
them. A configured provider whose key is missing has already failed in `Settings.check_providers`.
"""

from __future__ import annotations

from voice_agent.providers.base import LLMProvider, ProviderError, Providers, STTProvider, TTSProvider
from voice_agent.providers.resilience import CallPolicy
from voice_agent.settings import ConfigError, Settings


def _key(settings: Settings, field: str) -> str:
    secret = getattr(settings, field)
    return "" if secret is None else str(secret.get_secret_value())


def _local_tts() -> TTSProvider:
    from voice_agent.providers.local_tts import FliteTTS

    try:
        return FliteTTS()
    except ProviderError as exc:
        raise ConfigError(f"VOICE_TTS=local: {exc.message}") from None


def _stt(settings: Settings, policy: CallPolicy) -> STTProvider:
    from voice_agent.providers.local_stt import PocketSphinxSTT

    local = PocketSphinxSTT(settings.stt_decoders)
    if settings.stt == "local":
        return local
    from voice_agent.providers.deepgram_stt import build_deepgram_stt

    cloud = build_deepgram_stt(
        _key(settings, "deepgram_api_key"),
        settings.deepgram_base_url,
        settings.deepgram_model,
        settings.deepgram_language,
        policy,
        settings.deepgram_keepalive_s,
        settings.deepgram_idle_close_s,
        settings.deepgram_endpointing_ms if settings.stt_endpointing == "provider" else 0,
    )
    if not settings.stt_fallback:
        return cloud
    from voice_agent.providers.fallback import FallbackSTT

    return FallbackSTT(cloud, local)


def _llm(settings: Settings, policy: CallPolicy) -> LLMProvider:
    from voice_agent.providers.local_llm import LocalResponder

    if settings.llm == "local":
        return LocalResponder()
    from voice_agent.providers.groq_llm import build_chat_llm

    provider = settings.llm
    cloud = build_chat_llm(
        provider,
        _key(settings, f"{provider}_api_key"),
        getattr(settings, f"{provider}_base_url"),
        getattr(settings, f"{provider}_model"),
        settings.llm_system_prompt,
        settings.llm_max_history_tokens,
        settings.llm_max_tokens,
        policy,
    )
    if not settings.llm_fallback:
        return cloud
    from voice_agent.providers.fallback import FallbackLLM

    return FallbackLLM(cloud, LocalResponder())


def _tts(settings: Settings, policy: CallPolicy) -> TTSProvider:
    if settings.tts == "local":
        return _local_tts()
    from voice_agent.providers.elevenlabs_tts import build_elevenlabs_tts

    cloud = build_elevenlabs_tts(
        _key(settings, "elevenlabs_api_key"),
        settings.elevenlabs_base_url,
        settings.elevenlabs_voice_id,
        settings.elevenlabs_model,
        settings.elevenlabs_output_format,
        policy,
    )
    if not settings.tts_fallback:
        return cloud
    from voice_agent.providers.fallback import FallbackTTS

    return FallbackTTS(cloud, _local_tts())


def build_providers(settings: Settings) -> Providers:
    settings.check_providers()
    policy = CallPolicy(
        max_retries=settings.provider_max_retries,
        max_wait_s=settings.provider_retry_max_wait_s,
        timeout_s=settings.provider_timeout_s,
    )
    try:
        return Providers(stt=_stt(settings, policy), llm=_llm(settings, policy), tts=_tts(settings, policy))
    except ImportError as exc:
        raise ConfigError(
            f"cloud provider SDK missing ({exc.name}): install the 'cloud' extra (voicepool[cloud])"
        ) from None
