"""Provider interfaces: STT, LLM and TTS as async streams.

Offline providers implement these with no network; cloud providers (Deepgram, Groq/OpenAI,
ElevenLabs) drop in behind the same shapes, selected by settings only.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from voice_agent.protocol.sessions import Message

InterimCallback = Callable[[str], None]
# The provider heard the end of the user's turn (its own endpointing), ahead of the local VAD.
EndpointCallback = Callable[[], None]


class ProviderError(Exception):
    """A provider failed in a way the session should survive; `code` goes to the client."""

    def __init__(self, provider: str, code: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.code = code
        self.message = message


@dataclass
class Served:
    """Which provider actually answered one request: the configured one, or its offline fallback.

    A fallback wrapper overwrites `provider`; the pipeline reports it to the client per turn.
    """

    provider: str


class STTStream(Protocol):
    """One utterance of streaming recognition."""

    @property
    def provider(self) -> str:
        """Who is recognizing this utterance (the configured provider or its fallback)."""
        ...

    async def send(self, pcm: bytes) -> None:
        """Feed 16 kHz mono s16 PCM; interim hypotheses go to the callback given at open."""

    async def finish(self) -> str:
        """End of utterance: return the final transcript."""

    async def aclose(self) -> None:
        """Abandon the utterance and free its resources (idempotent)."""


@runtime_checkable
class PartialHypothesis(Protocol):
    """What an STTStream may also offer: its freshest hypothesis at once, for the adaptive end of
    turn's decision at a pause (a streamed interim can be up to its interval old)."""

    def partial(self) -> str | None:
        """The words so far, without waiting for anything; None: it cannot say now."""
        ...


class STTProvider(Protocol):
    name: str
    sample_rate: int

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def open_stream(
        self, on_interim: InterimCallback, state: dict[str, Any], on_endpoint: EndpointCallback | None = None
    ) -> STTStream:
        """`state` is the session's own dict: a provider may keep per-speaker adaptation there."""
        ...

    async def release(self, state: dict[str, Any]) -> None:
        """The session of `state` ended: free what the provider kept there (e.g. a live socket)."""
        ...


class LLMProvider(Protocol):
    name: str

    def stream(self, messages: Sequence[Message], served: Served | None = None) -> AsyncGenerator[str, None]:
        """Reply tokens as they are produced; closing the iterator cancels the request."""
        ...

    async def close(self) -> None: ...


class TTSProvider(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str, served: Served | None = None) -> AsyncGenerator[bytes, None]:
        """s16 mono PCM at `sample_rate`, in chunks as they are produced (even-sized)."""
        ...

    async def close(self) -> None: ...


@dataclass
class Providers:
    """The three providers of a process, shared by all its sessions."""

    stt: STTProvider
    llm: LLMProvider
    tts: TTSProvider
