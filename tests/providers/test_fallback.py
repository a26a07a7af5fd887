"""Per-stage offline fallback: the call keeps going, and `Served` names who answered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.providers.conftest import cloud_settings, sample
from tests.providers.fakes.base import Fault
from tests.providers.fakes.chat import FakeChat
from tests.providers.fakes.deepgram import FakeDeepgram
from tests.providers.fakes.elevenlabs import FakeElevenLabs
from tests.providers.test_stt import speech, utterance
from tests.support.speech import overlap, transcribe
from voice_agent.protocol.sessions import Message
from voice_agent.providers.base import Providers, Served
from voice_agent.providers.fallback import BREAKER_FAILURES, Breaker
from voice_agent.settings import Settings

Build = Callable[[Settings], Providers]


async def test_llm_falls_back_to_local_when_groq_rejects_the_key(chat: FakeChat, built: Build) -> None:
    llm = built(cloud_settings(chat=chat, GROQ_API_KEY="revoked", llm_fallback=True)).llm
    before = sample("voice_provider_fallbacks_total", stage="llm", provider="local")
    served = Served(llm.name)
    text = "".join([t async for t in llm.stream([Message(role="user", content="tell me a story")], served)])
    assert text.startswith("Once upon a time") and served.provider == "local"
    assert sample("voice_provider_fallbacks_total", stage="llm", provider="local") == before + 1


async def test_llm_without_failure_is_served_by_groq(chat: FakeChat, built: Build) -> None:
    llm = built(cloud_settings(chat=chat, llm_fallback=True)).llm
    served = Served(llm.name)
    text = "".join([t async for t in llm.stream([Message(role="user", content="hi")], served)])
    assert text.startswith("You said hi") and served.provider == "groq"


async def test_tts_falls_back_to_flite_at_the_primary_rate(elevenlabs: FakeElevenLabs, built: Build) -> None:
    tts = built(cloud_settings(elevenlabs=elevenlabs, tts_fallback=True)).tts
    elevenlabs.fail_next(Fault(status=503), Fault(status=503), Fault(status=503))
    served = Served(tts.name)
    pcm = b"".join([c async for c in tts.synthesize("Good morning to you.", served)])
    assert served.provider == "local" and tts.sample_rate == 24000
    assert overlap("good morning to you", transcribe(pcm, 24000)) >= 0.5


async def test_stt_falls_back_to_pocketsphinx_with_the_whole_utterance(
    deepgram: FakeDeepgram, built: Build
) -> None:
    stt = built(cloud_settings(deepgram=deepgram, stt_fallback=True, provider_max_retries=0)).stt
    deepgram.fail_next(Fault(mode="drop", after=20))
    state: dict[str, Any] = {}
    text = await utterance(stt, state, speech())
    assert overlap("what time is it", text) >= 0.5, text  # pocketsphinx heard all of it, replayed
    await stt.release(state)


async def test_a_failing_provider_is_skipped_for_a_while(chat: FakeChat, built: Build) -> None:
    llm = built(cloud_settings(chat=chat, GROQ_API_KEY="revoked", llm_fallback=True)).llm
    for _ in range(BREAKER_FAILURES + 2):
        served = Served(llm.name)
        text = "".join(
            [t async for t in llm.stream([Message(role="user", content="what time is it")], served)]
        )
        assert text.startswith("It is") and served.provider == "local"
    assert len(chat.records) == BREAKER_FAILURES  # after that, turns no longer wait for groq to fail


def test_breaker_opens_after_failures_in_a_row_and_retries_after_the_cooldown() -> None:
    now = [0.0]
    breaker = Breaker(threshold=3, cooldown_s=30, clock=lambda: now[0])
    for _ in range(2):
        breaker.failed()
    breaker.succeeded()  # a success resets the run
    breaker.failed()
    breaker.failed()
    assert breaker.allow()
    breaker.failed()
    assert not breaker.allow()
    now[0] = 29.9
    assert not breaker.allow()
    now[0] = 30.0
    assert breaker.allow()
