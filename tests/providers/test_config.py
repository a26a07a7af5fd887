"""Start-up configuration of cloud providers: one clear line naming what is missing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.providers.conftest import cloud_settings
from tests.support.procs import ROOT, free_port
from voice_agent.providers.factory import build_providers
from voice_agent.settings import ConfigError, Settings, load_settings


@pytest.mark.parametrize(
    ("stage", "provider", "key"),
    [
        ("STT", "deepgram", "DEEPGRAM_API_KEY"),
        ("LLM", "groq", "GROQ_API_KEY"),
        ("LLM", "openai", "OPENAI_API_KEY"),
        ("TTS", "elevenlabs", "ELEVENLABS_API_KEY"),
    ],
)
def test_agent_refuses_to_start_without_the_configured_providers_key(
    stage: str, provider: str, key: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("VOICE_")}
    env[f"VOICE_{stage}"] = provider
    env |= {"VOICE_HOST": "127.0.0.1", "VOICE_PORT": str(free_port())}  # should it start after all
    proc = subprocess.run(
        [sys.executable, "-m", "voice_agent"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and f"VOICE_{stage}={provider}" in lines[0], proc.stderr


def test_keys_of_unused_providers_are_not_required() -> None:
    settings = load_settings(stt="local", llm="groq", tts="local", GROQ_API_KEY="k")
    assert settings.llm == "groq"


def test_build_providers_checks_keys_too() -> None:
    with pytest.raises(ConfigError, match="ELEVENLABS_API_KEY"):
        build_providers(Settings(tts="elevenlabs", ELEVENLABS_API_KEY=""))


def test_keys_stay_secret_in_settings_repr() -> None:
    settings = cloud_settings(stt="deepgram", llm="groq", tts="elevenlabs")
    text = repr(settings) + str(settings.model_dump())
    assert "dg-test-key" not in text and "gsk-test-key" not in text and "xi-test-key" not in text


def test_deepgram_base_url_accepts_http_or_ws() -> None:
    from voice_agent.providers.deepgram_stt import deepgram_environment

    env = deepgram_environment("https://127.0.0.1:8443/")
    assert (env.base, env.production) == (
        "https://127.0.0.1:8443",
        "wss://127.0.0.1:8443",
    )
    env = deepgram_environment("ws://127.0.0.1:9")
    assert (env.base, env.production) == ("http://127.0.0.1:9", "ws://127.0.0.1:9")
