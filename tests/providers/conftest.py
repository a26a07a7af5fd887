"""Fakes of the three provider APIs on free loopback ports, and adapters pointed at them."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest
from prometheus_client import REGISTRY

from tests.providers.fakes.chat import FakeChat
from tests.providers.fakes.deepgram import FakeDeepgram
from tests.providers.fakes.elevenlabs import FakeElevenLabs
from tests.support import waits
from voice_agent.providers.base import Providers
from voice_agent.providers.factory import build_providers
from voice_agent.settings import Settings

DEEPGRAM_KEY = "dg-test-key-4f1c9a"
GROQ_KEY = "gsk-test-key-77b2e0"
ELEVENLABS_KEY = "xi-test-key-0c5d31"
KEYS = (DEEPGRAM_KEY, GROQ_KEY, ELEVENLABS_KEY)
F = TypeVar("F", FakeChat, FakeElevenLabs, FakeDeepgram)


@contextlib.asynccontextmanager
async def serving(fake: F) -> AsyncIterator[F]:
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def chat() -> AsyncIterator[FakeChat]:
    async with serving(FakeChat(GROQ_KEY)) as fake:
        yield fake


@pytest.fixture
async def elevenlabs() -> AsyncIterator[FakeElevenLabs]:
    async with serving(FakeElevenLabs(ELEVENLABS_KEY)) as fake:
        yield fake


@pytest.fixture
async def deepgram() -> AsyncIterator[FakeDeepgram]:
    async with serving(FakeDeepgram(DEEPGRAM_KEY)) as fake:
        yield fake


def _url(fake: FakeDeepgram | FakeChat | FakeElevenLabs | str) -> str:
    return fake if isinstance(fake, str) else fake.url


def cloud_settings(
    deepgram: FakeDeepgram | str | None = None,
    chat: FakeChat | str | None = None,
    elevenlabs: FakeElevenLabs | str | None = None,
    **overrides: Any,
) -> Settings:
    """Settings pointing the configured cloud providers at fakes (or at fake URLs)."""
    values: dict[str, Any] = {
        "DEEPGRAM_API_KEY": DEEPGRAM_KEY,
        "GROQ_API_KEY": GROQ_KEY,
        "OPENAI_API_KEY": GROQ_KEY,
        "ELEVENLABS_API_KEY": ELEVENLABS_KEY,
        "provider_timeout_s": 2.0,
        "provider_retry_max_wait_s": 1.0,
    }
    if deepgram is not None:
        values |= {"stt": "deepgram", "DEEPGRAM_BASE_URL": _url(deepgram)}
    if chat is not None:
        values |= {"llm": "groq", "GROQ_BASE_URL": _url(chat), "OPENAI_BASE_URL": _url(chat) + "/v1"}
    if elevenlabs is not None:
        values |= {"tts": "elevenlabs", "ELEVENLABS_BASE_URL": _url(elevenlabs)}
    return Settings(**(values | overrides))


@pytest.fixture
async def built() -> AsyncIterator[Callable[[Settings], Providers]]:
    made: list[Providers] = []

    def build(settings: Settings) -> Providers:
        providers = build_providers(settings)
        made.append(providers)
        return providers

    yield build
    for providers in made:
        for provider in (providers.stt, providers.llm, providers.tts):
            await provider.close()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


until = functools.partial(waits.until, timeout=5.0, interval=0.005)
