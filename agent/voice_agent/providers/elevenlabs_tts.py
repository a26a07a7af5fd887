"""ElevenLabs streaming synthesis with the official `elevenlabs` SDK, one request per sentence.

The pipeline hands TTS one sentence at a time as the LLM writes, so a streaming request per
sentence starts speech on the first sentence; input streaming over a WebSocket would save little
more. Output is raw PCM (`pcm_<rate>`), so nothing is decoded: at pcm_48000 (paid tiers) the
audio goes to the track untouched, other rates take one resampling step.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from voice_agent.providers.base import Served
from voice_agent.providers.resilience import (
    CallPolicy,
    Failure,
    Telemetry,
    failure_from_status,
    http_limits,
    resilient_stream,
)

MAX_CHARS = 2000
CHUNK_BYTES = 2048
NOT_AUDIO = ("application/json", "text/")


def classify(exc: Exception) -> Failure:
    import httpx
    from elevenlabs.core.api_error import ApiError

    if isinstance(exc, ApiError):
        headers = exc.headers or {}
        retry_after = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
        return failure_from_status(exc.status_code or 0, retry_after)
    if isinstance(exc, httpx.TimeoutException):
        return Failure("timeout")
    if isinstance(exc, httpx.TransportError):
        return Failure("unavailable")
    return Failure("bad_response")


class EvenBytes:
    """Chunk boundaries of an HTTP stream can split a 16-bit sample; carry the odd byte over."""

    def __init__(self) -> None:
        self._carry = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._carry + chunk
        cut = len(data) & ~1
        self._carry = data[cut:]
        return data[:cut]


class ElevenLabsTTS:
    name = "elevenlabs"

    def __init__(
        self,
        client: Any,
        http: Any,
        voice_id: str,
        model: str,
        output_format: str,
        policy: CallPolicy,
    ) -> None:
        self._client = client
        self._http = http
        self._voice_id = voice_id
        self._model = model
        self._output_format = output_format
        self.sample_rate = int(output_format.removeprefix("pcm_"))
        self._policy = policy
        self.telemetry = Telemetry(self.name, "tts")

    async def _audio(self, text: str) -> AsyncIterator[bytes]:
        if not text:
            return
        even = EvenBytes()
        # The raw-response variant exposes the headers: a 200 carrying JSON or HTML (an error
        # page from a proxy, say) must not be played as audio.
        async with self._client.text_to_speech.with_raw_response.stream(
            self._voice_id,
            text=text,
            model_id=self._model,
            output_format=self._output_format,
            request_options={"max_retries": 0, "chunk_size": CHUNK_BYTES},
        ) as response:
            content_type = response.headers.get("content-type", "")
            if content_type.startswith(NOT_AUDIO):
                raise Failure("bad_response")
            async for chunk in response.data:
                pcm = even.feed(chunk)
                if pcm:
                    yield pcm

    def synthesize(self, text: str, served: Served | None = None) -> AsyncGenerator[bytes, None]:
        text = " ".join(text.split())[:MAX_CHARS]
        return resilient_stream(self.telemetry, self._policy, lambda: self._audio(text), classify)

    async def close(self) -> None:
        await self._http.aclose()


def build_elevenlabs_tts(
    api_key: str,
    base_url: str | None,
    voice_id: str,
    model: str,
    output_format: str,
    policy: CallPolicy,
) -> ElevenLabsTTS:
    import httpx
    from elevenlabs import AsyncElevenLabs

    http = httpx.AsyncClient(timeout=policy.timeout_s, limits=http_limits(), follow_redirects=True)
    client = AsyncElevenLabs(api_key=api_key, base_url=base_url, timeout=policy.timeout_s, httpx_client=http)
    return ElevenLabsTTS(client, http, voice_id, model, output_format, policy)
