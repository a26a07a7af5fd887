"""Streaming chat completions: Groq (Llama 3 family) with the official `groq` SDK, and any
OpenAI-compatible server (self-hosted vLLM, llama.cpp, Ollama, OpenAI) with the `openai` SDK.

Groq's API is OpenAI's chat-completions API, and both SDKs are generated from the same template
(same client shape, same exception names), so one adapter serves both: the SDK module is the
only thing that differs. SDK retries are off; ours (resilience.py) apply, before the first token
only, so a retry never repeats words the user already heard.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from types import ModuleType
from typing import Any

from voice_agent.protocol.sessions import Message
from voice_agent.providers.base import Served
from voice_agent.providers.resilience import (
    CallPolicy,
    Failure,
    Telemetry,
    failure_from_status,
    http_limits,
    resilient_stream,
)

CHARS_PER_TOKEN = 4  # a coarse, tokenizer-free estimate; the budget only needs to be safe, not exact


def estimate_tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 4


def budget_messages(system_prompt: str, history: Sequence[Message], max_tokens: int) -> list[dict[str, str]]:
    """The request's messages: system prompt first, then the newest turns that fit the budget.

    Oldest turns go first; the newest user message is always kept. A window never opens with an
    assistant reply whose question was cut away.
    """
    system = [m for m in history if m.role == "system"]
    prompt = system_prompt if not system else system[0].content
    rest = [m for m in history if m.role != "system"]
    budget = max_tokens - estimate_tokens(prompt)
    kept: list[Message] = []
    for m in reversed(rest):
        cost = estimate_tokens(m.content)
        if kept and cost > budget:
            break
        kept.append(m)
        budget -= cost
    kept.reverse()
    while len(kept) > 1 and kept[0].role == "assistant":
        kept.pop(0)
    out = [{"role": "system", "content": prompt}] if prompt else []
    return out + [{"role": m.role, "content": m.content} for m in kept]


def classify(sdk: ModuleType) -> Any:
    """Map one SDK's exceptions (groq or openai: same names) to failure kinds."""
    import httpx

    def _classify(exc: Exception) -> Failure:
        if isinstance(exc, sdk.APIStatusError):
            return failure_from_status(exc.status_code, exc.response.headers.get("retry-after"))
        if isinstance(exc, sdk.APITimeoutError | httpx.TimeoutException):
            return Failure("timeout")
        if isinstance(exc, sdk.APIConnectionError | httpx.TransportError):
            return Failure("unavailable")
        if isinstance(exc, sdk.APIError):  # an `error` event inside the SSE stream
            return Failure("rejected")
        return Failure("bad_response")  # JSON, shape or SDK validation errors

    return _classify


class ChatCompletionsLLM:
    def __init__(
        self,
        name: str,
        sdk: ModuleType,
        client: Any,
        model: str,
        system_prompt: str,
        max_history_tokens: int,
        max_tokens: int,
        policy: CallPolicy,
    ) -> None:
        self.name = name
        self._client = client
        self._model = model
        self._system_prompt = system_prompt
        self._max_history_tokens = max_history_tokens
        self._max_tokens = max_tokens
        self._policy = policy
        self._classify = classify(sdk)
        self.telemetry = Telemetry(name, "llm")

    async def _tokens(self, messages: list[dict[str, str]]) -> AsyncIterator[str]:
        stream = await self._client.chat.completions.create(
            model=self._model, messages=messages, stream=True, max_tokens=self._max_tokens
        )
        try:
            async for chunk in stream:
                if not chunk.choices:  # usage-only chunks (x_groq, stream_options) carry no text
                    continue
                content = chunk.choices[0].delta.content
                if content is not None and not isinstance(content, str):
                    raise Failure("bad_response")
                if content:
                    yield content
        finally:
            await stream.close()

    def stream(self, messages: Sequence[Message], served: Served | None = None) -> AsyncGenerator[str, None]:
        request = budget_messages(self._system_prompt, messages, self._max_history_tokens)
        return resilient_stream(self.telemetry, self._policy, lambda: self._tokens(request), self._classify)

    async def close(self) -> None:
        await self._client.close()


def build_chat_llm(
    provider: str,
    api_key: str,
    base_url: str | None,
    model: str,
    system_prompt: str,
    max_history_tokens: int,
    max_tokens: int,
    policy: CallPolicy,
) -> ChatCompletionsLLM:
    """`provider` is "groq" or "openai"; the SDK of that name is used, pointed at `base_url`."""
    sdk = importlib.import_module(provider)
    client_class = sdk.AsyncGroq if provider == "groq" else sdk.AsyncOpenAI
    http = sdk.DefaultAsyncHttpxClient(limits=http_limits(), timeout=policy.timeout_s)
    client = client_class(
        api_key=api_key, base_url=base_url, max_retries=0, timeout=policy.timeout_s, http_client=http
    )
    return ChatCompletionsLLM(
        provider, sdk, client, model, system_prompt, max_history_tokens, max_tokens, policy
    )
