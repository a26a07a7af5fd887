"""Groq / OpenAI chat completions: POST .../chat/completions with `stream: true` answers with
Server-Sent Events of `chat.completion.chunk` objects and a final `data: [DONE]`.

Groq's path is /openai/v1/chat/completions (SDK base URL = host), OpenAI's /v1/chat/completions
(SDK base URL = host + /v1); both are served. Auth is `Authorization: Bearer <key>`.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from tests.providers.fakes.base import Fault, Record
from tests.providers.fakes.http import HttpFake, sse

Reply = Callable[[list[dict[str, str]]], str]


def echo_reply(messages: list[dict[str, str]]) -> str:
    users = [m["content"] for m in messages if m.get("role") == "user"]
    return f"You said {users[-1] if users else 'nothing'}. Anything else?"


class FakeChat(HttpFake):
    content_type = "text/event-stream"

    def __init__(self, api_key: str, reply: Reply = echo_reply) -> None:
        super().__init__(api_key)
        self.reply = reply

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/openai/v1/chat/completions", self.completions),
            web.post("/v1/chat/completions", self.completions),
        ]

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    def error_body(self, status: int) -> dict[str, Any]:
        kinds = {
            401: ("Invalid API Key", "invalid_api_key"),
            429: ("Rate limit reached", "rate_limit_exceeded"),
        }
        message, code = kinds.get(status, ("Internal server error", "internal_error"))
        return {"error": {"message": message, "type": "invalid_request_error", "code": code}}

    async def completions(self, request: web.Request) -> web.StreamResponse:
        rec = await self.record(request)
        rejected, fault = await self.guard(request, rec)
        if rejected is not None:
            return rejected
        body = rec.body or {}
        if not body.get("stream") or not isinstance(body.get("messages"), list) or not body.get("model"):
            return self.reject(rec, 400)
        text = self.reply(body["messages"])
        bad = sse({"id": "x", "object": "chat.completion.chunk", "choices": [{"delta": {"content": 7}}]})
        return await self.stream(request, rec, fault, self._chunks(body["model"], text), bad)

    async def _chunks(self, model: str, text: str) -> AsyncIterator[bytes]:
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
        }

        def chunk(delta: dict[str, str], finish: str | None = None, **extra: Any) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse({**base, "choices": [choice], **extra})

        yield chunk({"role": "assistant", "content": ""})
        for token in re.findall(r"\S+\s*", text):
            yield chunk({"content": token})
        usage = {"prompt_tokens": 10, "completion_tokens": len(text.split()), "total_tokens": 0}
        yield chunk({}, "stop", x_groq={"id": "req_fake", "usage": usage})
        yield sse("[DONE]")


def last_user(rec: Record) -> str:
    return str([m for m in rec.body["messages"] if m["role"] == "user"][-1]["content"])


__all__ = ["FakeChat", "Fault", "echo_reply", "last_user"]
