"""The one settings object of the agent.

Every knob is an environment variable (listed in docs/configuration.md) so the operator can configure
pods with env and secretRefs only. Bad values fail at start with one line naming the setting.
"""

from __future__ import annotations

import json
import socket
from functools import cached_property
from typing import Annotated, Any, Literal

import ifaddr
from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from voice_agent.media.ice import (
    HostCandidatePolicy,
    IcePolicyError,
    IPNetwork,
    parse_announced,
    parse_networks,
)


class ConfigError(Exception):
    """Raised for configuration that cannot work; the message names the setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOICE_", extra="ignore", frozen=True)

    host: str = "0.0.0.0"
    port: int = Field(8000, ge=1, le=65535)
    pool: str = "default"
    agent_id: str = Field(default_factory=socket.gethostname)
    advertise_url: str | None = None
    max_sessions: int = Field(50, ge=1)
    session_ttl_s: int = Field(3600, ge=10)
    ice_servers: list[dict[str, Any]] = Field(default_factory=list)
    # "relay": gather TURN candidates only (pods behind NAT; browsers never see pod IPs).
    ice_transport_policy: Literal["all", "relay"] = "all"
    # Host candidates (docs/configuration.md): where to gather, and the address clients are told.
    ice_interfaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    ice_exclude_interfaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    ice_addresses: Annotated[list[str], NoDecode] = Field(default_factory=list)
    ice_exclude_addresses: Annotated[list[str], NoDecode] = Field(default_factory=list)
    ice_announced_address: str | None = None
    web_dir: str | None = None
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"

    stt: Literal["local", "deepgram"] = "local"
    llm: Literal["local", "groq", "openai"] = "local"
    tts: Literal["local", "elevenlabs"] = "local"

    deepgram_api_key: SecretStr | None = Field(None, validation_alias="DEEPGRAM_API_KEY")
    groq_api_key: SecretStr | None = Field(None, validation_alias="GROQ_API_KEY")
    openai_api_key: SecretStr | None = Field(None, validation_alias="OPENAI_API_KEY")
    elevenlabs_api_key: SecretStr | None = Field(None, validation_alias="ELEVENLABS_API_KEY")
    deepgram_base_url: str | None = Field(None, validation_alias="DEEPGRAM_BASE_URL")
    groq_base_url: str | None = Field(None, validation_alias="GROQ_BASE_URL")
    openai_base_url: str | None = Field(None, validation_alias="OPENAI_BASE_URL")
    elevenlabs_base_url: str | None = Field(None, validation_alias="ELEVENLABS_BASE_URL")
    # Cloud provider details (docs/providers.md): models, retry/timeout policy, offline fallback per stage.
    deepgram_model: str = "nova-3"
    deepgram_language: str = "en"
    deepgram_keepalive_s: float = Field(5.0, gt=0, le=9)
    deepgram_idle_close_s: float = Field(60.0, gt=0)
    # Who ends a turn: the local VAD's silence only, or also the STT provider's own endpointing
    # (Deepgram speech_final / UtteranceEnd), whichever comes first.
    stt_endpointing: Literal["vad", "provider"] = "vad"
    deepgram_endpointing_ms: int = Field(300, ge=10, le=5000)
    groq_model: str = "llama-3.1-8b-instant"
    openai_model: str = "gpt-4o-mini"
    llm_system_prompt: str = (
        "You are a friendly voice assistant. "
        "Answer briefly in plain spoken sentences, without lists or markup."
    )
    llm_max_history_tokens: int = Field(3000, ge=100)
    llm_max_tokens: int = Field(300, ge=16)
    elevenlabs_voice_id: str = "21m00Tcm4TlvDq8ikWAM"
    elevenlabs_model: str = "eleven_flash_v2_5"
    elevenlabs_output_format: Literal["pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100", "pcm_48000"] = (
        "pcm_24000"
    )
    provider_timeout_s: float = Field(10.0, gt=0)
    provider_max_retries: int = Field(2, ge=0, le=5)
    provider_retry_max_wait_s: float = Field(4.0, ge=0)
    stt_fallback: bool = False
    llm_fallback: bool = False
    tts_fallback: bool = False

    redis_url: SecretStr | None = Field(None, validation_alias=AliasChoices("REDIS_URL", "VOICE_REDIS_URL"))

    # Turn taking: how long the user must be silent before the turn ends, and how eager the VAD is.
    # Adaptive: at a pause of turn_min_silence_ms the words so far decide (finished: the turn ends;
    # unfinished: up to turn_max_silence_ms); fixed, or no decision possible: end_of_turn_silence_ms.
    turn_detector: Literal["adaptive", "fixed"] = "adaptive"
    turn_min_silence_ms: int = Field(200, ge=100, le=1000)
    turn_max_silence_ms: int = Field(1600, ge=300, le=5000)
    end_of_turn_silence_ms: int = Field(500, ge=100, le=5000)
    vad_aggressiveness: int = Field(3, ge=0, le=3)
    vad_start_ms: int = Field(60, ge=20, le=1000)
    # Draft the reply once the user has paused this long (0 = off); used if the turn ends unchanged.
    preemptive_after_ms: int = Field(100, ge=0, le=5000)
    max_utterance_s: float = Field(30.0, gt=1)
    # User sound during a reply: hold the reply and judge it (a cough or "mm-hmm" does not cut it), or
    # cut it at once; a sound this long cuts it even without words.
    interruption: Literal["classify", "immediate"] = "classify"
    interruption_min_speech_ms: int = Field(700, ge=100, le=5000)
    history_max_messages: int = Field(24, ge=2)
    stt_decoders: int = Field(2, ge=1, le=32)
    # Received audio frames held back for reordering; each costs 20 ms of turn/barge-in latency.
    jitter_prefetch_frames: int = Field(0, ge=0, le=8)
    # Accept a browser's audio redundancy (RED) on the uplink: lost packets rebuilt from the next one.
    audio_red: bool = True

    # Protection: limits that keep one client from hurting the others.
    reconnect_grace_s: float = Field(15.0, ge=0)
    connect_timeout_s: float = Field(120.0, gt=0)
    drain_timeout_s: float = Field(300.0, ge=0)
    # While draining, move each call at its next turn boundary to an agent of the pool with room.
    drain_migrate: bool = True
    max_frame_bytes: int = Field(64 * 1024, ge=1024)
    max_messages_per_s: float = Field(50.0, gt=0)
    message_burst: int = Field(200, ge=1)
    max_pending_candidates: int = Field(64, ge=1)
    # Abuse controls of the HTTP API (docs/reliability.md). 0 turns the per-client rate limit off.
    sessions_per_ip_per_min: float = Field(600.0, ge=0)
    sessions_per_ip_burst: int = Field(100, ge=1)
    max_sockets_per_session: int = Field(4, ge=1)
    max_body_bytes: int = Field(16 * 1024, ge=256)
    request_timeout_s: float = Field(10.0, gt=0)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_token: SecretStr | None = None

    @field_validator("ice_servers", mode="before")
    @classmethod
    def _parse_ice(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else []
        if not isinstance(value, list) or not all(isinstance(s, dict) and "urls" in s for s in value):
            raise ValueError('must be a JSON list of {"urls": ..., "username"?, "credential"?}')
        return value

    @field_validator(
        "ice_interfaces", "ice_exclude_interfaces", "ice_addresses", "ice_exclude_addresses", mode="before"
    )
    @classmethod
    def _parse_list(cls, value: Any) -> Any:
        """A comma-separated list (what an operator writes in env) or a JSON list."""
        if isinstance(value, str):
            value = json.loads(value) if value.strip().startswith("[") else value.split(",")
        return [str(v).strip() for v in value if str(v).strip()]

    @field_validator("turn_max_silence_ms")
    @classmethod
    def _longer_than_the_pause(cls, value: int, info: ValidationInfo) -> int:
        shortest = info.data.get("turn_min_silence_ms")
        if shortest is not None and value <= shortest:
            raise ValueError(f"must be more than VOICE_TURN_MIN_SILENCE_MS ({shortest})")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: Any) -> Any:
        """A JSON list or a comma-separated list; "*" is refused (any site could drive sessions)."""
        if isinstance(value, str):
            value = json.loads(value) if value.strip().startswith("[") else value.split(",")
        origins = [str(o).strip().rstrip("/") for o in value if str(o).strip()]
        bad = [o for o in origins if o == "*" or not o.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"origins must be explicit http(s)://host[:port] values, not {bad[0]!r}")
        return origins

    @cached_property
    def redis_enabled(self) -> bool:
        return self.redis_url is not None and bool(self.redis_url.get_secret_value())

    @cached_property
    def ice_policy(self) -> HostCandidatePolicy:
        """The host-candidate policy; a bad value raises ConfigError naming the setting."""
        try:
            return HostCandidatePolicy(
                interfaces=tuple(self.ice_interfaces),
                exclude_interfaces=tuple(self.ice_exclude_interfaces),
                addresses=_networks("VOICE_ICE_ADDRESSES", self.ice_addresses),
                exclude_addresses=_networks("VOICE_ICE_EXCLUDE_ADDRESSES", self.ice_exclude_addresses),
                announced=parse_announced(self.ice_announced_address) if self.ice_announced_address else None,
            )
        except IcePolicyError as exc:
            raise ConfigError(f"invalid setting VOICE_ICE_ANNOUNCED_ADDRESS: {exc}") from None

    def check_ice(self) -> None:
        """Fail at start when the host-candidate settings name a missing interface or match nothing."""
        policy = self.ice_policy
        try:
            policy.check(ifaddr.get_adapters())
        except IcePolicyError as exc:
            raise ConfigError(f"invalid ICE host-candidate settings (VOICE_ICE_*): {exc}") from None

    def public_ice_servers(self) -> list[dict[str, Any]]:
        """ICE servers as handed to clients (TURN credentials are meant for the client)."""
        return [dict(s) for s in self.ice_servers]

    def check_providers(self) -> None:
        """Fail at start, not mid-call, when a configured cloud provider has no key."""
        needs = {
            ("stt", "deepgram"): ("DEEPGRAM_API_KEY", self.deepgram_api_key),
            ("llm", "groq"): ("GROQ_API_KEY", self.groq_api_key),
            ("llm", "openai"): ("OPENAI_API_KEY", self.openai_api_key),
            ("tts", "elevenlabs"): ("ELEVENLABS_API_KEY", self.elevenlabs_api_key),
        }
        for (stage, provider), (env, key) in needs.items():
            if getattr(self, stage) == provider and (key is None or not key.get_secret_value()):
                raise ConfigError(f"VOICE_{stage.upper()}={provider} needs {env} to be set")
        if self.stt_endpointing == "provider" and self.stt == "local":
            raise ConfigError(
                "VOICE_STT_ENDPOINTING=provider needs an STT that endpoints (VOICE_STT=deepgram)"
            )


def _networks(setting: str, values: list[str]) -> tuple[IPNetwork, ...]:
    try:
        return parse_networks(values)
    except IcePolicyError as exc:
        raise ConfigError(f"invalid setting {setting}: {exc}") from None


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, turning pydantic's report into one clear line."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = str(err["loc"][0]) if err["loc"] else "?"
        name = loc if loc.isupper() else f"VOICE_{loc.upper()}"
        raise ConfigError(f"invalid setting {name}: {err['msg']}") from None
    settings.check_providers()
    settings.check_ice()
    return settings
