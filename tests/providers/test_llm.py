"""Groq and OpenAI-compatible chat completions through the official SDKs against the SSE fake."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import pytest

from tests.providers.conftest import GROQ_KEY, KEYS, cloud_settings, sample, until
from tests.providers.fakes.base import Fault
from tests.providers.fakes.chat import FakeChat, last_user
from tests.support.waits import SCHEDULING_SLACK_S
from voice_agent.protocol.sessions import Message
from voice_agent.providers.base import LLMProvider, ProviderError, Providers
from voice_agent.providers.groq_llm import budget_messages
from voice_agent.providers.resilience import CallPolicy
from voice_agent.settings import Settings

Build = Callable[[Settings], Providers]
HISTORY = [
    Message(role="user", content="what time is it"),
    Message(role="assistant", content="It is noon."),
    Message(role="user", content="and the date"),
]


async def reply(llm: LLMProvider, messages: list[Message] = HISTORY) -> str:
    return "".join([token async for token in llm.stream(messages)])


async def failure(llm: LLMProvider) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await reply(llm)
    for key in KEYS:
        assert key not in str(info.value) and key not in info.value.message
    return info.value


async def test_groq_streams_reply_with_model_key_and_history(chat: FakeChat, built: Build) -> None:
    llm = built(cloud_settings(chat=chat, groq_model="llama-3.3-70b-versatile")).llm
    assert await reply(llm) == "You said and the date. Anything else?"
    rec = chat.records[-1]
    assert rec.path == "/openai/v1/chat/completions"
    assert rec.headers["Authorization"] == f"Bearer {GROQ_KEY}"
    assert rec.body["model"] == "llama-3.3-70b-versatile" and rec.body["stream"] is True
    roles = [(m["role"], m["content"]) for m in rec.body["messages"]]
    assert roles[0][0] == "system"
    assert roles[1:] == [(m.role, m.content) for m in HISTORY]
    assert rec.outcome == "complete"


async def test_openai_compatible_base_url_uses_openai_sdk(chat: FakeChat, built: Build) -> None:
    llm = built(cloud_settings(chat=chat, llm="openai", openai_model="local-llama")).llm
    assert llm.name == "openai"
    assert (await reply(llm)).startswith("You said and the date")
    assert chat.records[-1].path == "/v1/chat/completions"
    assert chat.records[-1].body["model"] == "local-llama"


def test_history_budget_drops_oldest_turns_and_keeps_the_question() -> None:
    long = [Message(role="user" if i % 2 == 0 else "assistant", content=f"turn {i} " * 50) for i in range(20)]
    long.append(Message(role="user", content="newest question"))
    out = budget_messages("be brief", long, max_tokens=400)
    assert out[0] == {"role": "system", "content": "be brief"}
    assert out[-1] == {"role": "user", "content": "newest question"}
    assert len(out) < len(long) and out[1]["role"] == "user"
    assert sum(len(m["content"]) for m in out) // 4 <= 400
    huge = [Message(role="user", content="x" * 100_000)]
    assert budget_messages("p", huge, 200)[-1]["content"] == "x" * 100_000  # the question is never cut


async def test_invalid_key_is_auth_error_without_retry(chat: FakeChat, built: Build) -> None:
    llm = built(cloud_settings(chat=chat, GROQ_API_KEY="wrong-key")).llm
    before = sample("voice_provider_errors_total", provider="groq", stage="llm", type="auth")
    err = await failure(llm)
    assert (err.code, err.provider) == ("llm_auth", "groq")
    assert "HTTP 401" in err.message and "wrong-key" not in err.message
    assert len(chat.records) == 1
    assert sample("voice_provider_errors_total", provider="groq", stage="llm", type="auth") == before + 1


async def test_429_with_retry_after_is_retried_with_bounded_wait(chat: FakeChat, built: Build) -> None:
    llm = built(cloud_settings(chat=chat)).llm
    chat.fail_next(Fault(status=429, headers={"Retry-After": "0.2"}))
    before = sample("voice_provider_retries_total", provider="groq", stage="llm")
    started = time.monotonic()
    assert (await reply(llm)).startswith("You said")
    # Waited as told, plus at most the jitter on top (docs/providers.md) and scheduling slack.
    assert 0.2 <= time.monotonic() - started < 0.2 + CallPolicy.base_s + SCHEDULING_SLACK_S
    assert [r.status for r in chat.records] == [429, 200]
    assert sample("voice_provider_retries_total", provider="groq", stage="llm") == before + 1


async def test_429_retries_are_bounded(chat: FakeChat, built: Build) -> None:
    llm = built(cloud_settings(chat=chat, provider_max_retries=2)).llm
    chat.fail_next(*[Fault(status=429, headers={"Retry-After": "0"}) for _ in range(5)])
    err = await failure(llm)
    assert err.code == "llm_rate_limited"
    assert len(chat.records) == 3


async def test_retry_after_beyond_the_cap_fails_at_once(chat: FakeChat, built: Build) -> None:
    llm = built(cloud_settings(chat=chat, provider_retry_max_wait_s=1.0)).llm
    chat.fail_next(Fault(status=429, headers={"Retry-After": "30"}))
    started = time.monotonic()
    assert (await failure(llm)).code == "llm_rate_limited"
    assert time.monotonic() - started < 10 and len(chat.records) == 1  # did not sit out 30 s


async def test_server_error_is_retried(chat: FakeChat, built: Build) -> None:
    llm = built(cloud_settings(chat=chat)).llm
    chat.fail_next(Fault(status=503))
    assert (await reply(llm)).startswith("You said")
    assert [r.status for r in chat.records] == [503, 200]


async def test_stalled_stream_times_out(chat: FakeChat, built: Build) -> None:
    llm = built(cloud_settings(chat=chat, provider_timeout_s=0.3)).llm
    chat.fail_next(Fault(mode="stall", after=0))
    started = time.monotonic()
    assert (await failure(llm)).code == "llm_timeout"
    assert time.monotonic() - started < 10
    await until(lambda: chat.records[-1].outcome == "client_closed", what="stalled stream closed")


async def test_connection_dropped_mid_stream(chat: FakeChat, built: Build) -> None:
    llm = built(cloud_settings(chat=chat)).llm
    chat.fail_next(Fault(mode="drop", after=3))
    got: list[str] = []
    with pytest.raises(ProviderError) as info:
        async for token in llm.stream(HISTORY):
            got.append(token)
    assert info.value.code == "llm_dropped"
    assert "".join(got) == "You said "  # what arrived before the drop was delivered, nothing replayed
    assert len(chat.records) == 1


async def test_malformed_chunk_is_bad_response(chat: FakeChat, built: Build) -> None:
    llm = built(cloud_settings(chat=chat)).llm
    chat.fail_next(Fault(mode="malformed", after=2))
    assert (await failure(llm)).code == "llm_bad_response"


async def test_unreachable_provider(built: Build) -> None:
    from tests.support.procs import free_port

    settings = cloud_settings(
        llm="groq", GROQ_BASE_URL=f"http://127.0.0.1:{free_port()}", provider_max_retries=1
    )
    assert (await failure(built(settings).llm)).code == "llm_unavailable"


async def test_closing_the_stream_closes_the_http_stream(chat: FakeChat, built: Build) -> None:
    llm = built(cloud_settings(chat=chat)).llm
    chat.chunk_delay_s = 0.2
    in_flight = sample("voice_provider_in_flight_requests", provider="groq", stage="llm")
    tokens = llm.stream(HISTORY)
    async with contextlib.aclosing(tokens):
        assert await anext(tokens) == "You "
        assert sample("voice_provider_in_flight_requests", provider="groq", stage="llm") == in_flight + 1
    await until(lambda: chat.records[-1].outcome == "client_closed", what="fake saw the client close")
    assert len(chat.records[-1].sent) < 6  # of 10 chunks: the request stopped, it did not run to its end
    assert sample("voice_provider_in_flight_requests", provider="groq", stage="llm") == in_flight
    assert last_user(chat.records[-1]) == "and the date"
