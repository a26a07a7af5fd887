"""Deepgram live transcription (Nova-3) over /v1/listen with the official `deepgram-sdk`.

One socket per session, reused across utterances: the handshake (TLS + auth, ~100-300 ms) is paid
once, and between utterances a KeepAlive every few seconds keeps Deepgram from closing it (it
closes a socket that receives nothing for 10 s); after a longer idle spell it is closed and
reopened on the next utterance. The local VAD bounds each utterance; at its end a `Finalize`
flushes Deepgram's buffer and the Results marked `from_finalize` close the utterance.

Audio never waits for the network: `send` appends to the utterance's buffer and wakes the
session's writer task. The buffer is kept for the whole utterance, so when the socket drops
mid-utterance the writer reconnects and replays it: the turn is not lost, only delayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from voice_agent.providers.base import EndpointCallback, InterimCallback
from voice_agent.providers.resilience import CallPolicy, Failure, Telemetry, failure_from_status

log = logging.getLogger(__name__)

STATE_KEY = "deepgram"
SAMPLE_RATE = 16000
CLOSE_GRACE_S = 1.0


def classify(exc: Exception) -> Failure:
    import websockets.exceptions as wse
    from deepgram.core.api_error import ApiError

    if isinstance(exc, Failure):
        return exc
    if isinstance(exc, ApiError):
        # The SDK puts the *request* headers on ApiError; the handshake response (with its
        # Retry-After) is on the websockets exception it replaced.
        response = getattr(exc.__context__, "headers", None) or {}
        return failure_from_status(exc.status_code or 0, response.get("Retry-After"))
    if isinstance(exc, TimeoutError):
        return Failure("timeout")
    if isinstance(exc, wse.ConnectionClosed):
        return Failure("dropped")
    if isinstance(exc, OSError | wse.WebSocketException):
        return Failure("unavailable")
    return Failure("bad_response")


class _Utterance:
    """Audio and results of one utterance; survives reconnects (audio is replayed)."""

    def __init__(
        self, on_interim: InterimCallback, telemetry: Telemetry, on_endpoint: EndpointCallback | None = None
    ) -> None:
        self.on_endpoint = on_endpoint
        self.endpointed = False
        self.audio = bytearray()
        self.sent = 0
        self.finish_requested = False
        self.finalize_sent = False
        self.finals: list[str] = []
        self.partial = ""
        self.done = asyncio.Event()
        self.failure: Failure | None = None
        self.reconnects = 0
        self._on_interim = on_interim
        self._shown = ""
        self._metrics = contextlib.ExitStack()
        self.request = self._metrics.enter_context(telemetry.request())

    def restart(self) -> None:
        """The socket was replaced: everything is sent again and earlier results are void."""
        self.sent = 0
        self.finalize_sent = False
        self.finals.clear()
        self.partial = ""

    def result(
        self, transcript: str, is_final: bool, from_finalize: bool, speech_final: bool = False
    ) -> None:
        self.request.first_result()
        if is_final:
            if transcript:
                self.finals.append(transcript)
            self.partial = ""
        else:
            self.partial = transcript
        view = self.text(with_partial=True)
        if view and view != self._shown:
            self._shown = view
            self._on_interim(view)
        if from_finalize:
            self.done.set()
        elif speech_final and self.text():
            self.endpoint()

    def endpoint(self) -> None:
        """Deepgram's endpointing says the turn ended: tell the pipeline once per utterance."""
        if self.on_endpoint is not None and not self.endpointed and not self.finish_requested:
            self.endpointed = True
            self.on_endpoint()

    def fail(self, failure: Failure) -> None:
        if self.failure is None and not self.done.is_set():
            self.failure = failure
            self.done.set()

    def text(self, with_partial: bool = False) -> str:
        parts = [*self.finals, self.partial] if with_partial else self.finals
        return " ".join(p for p in parts if p).strip()

    def end(self) -> None:
        self._metrics.close()


class _Link:
    """The session's socket and its writer task, serving one utterance at a time."""

    def __init__(self, provider: DeepgramSTT) -> None:
        self._p = provider
        self.utt: _Utterance | None = None
        self.retire = False  # close once the current utterance is done (a newer link took over)
        self._wake = asyncio.Event()
        self._socket: Any = None
        self._worker: asyncio.Task[None] | None = None
        self._last_send = time.monotonic()
        self._last_use = time.monotonic()

    @property
    def busy(self) -> bool:
        return self.utt is not None

    def attach(self, utt: _Utterance) -> None:
        self.utt = utt
        self._last_use = time.monotonic()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name="deepgram-link")
        self.wake()

    def detach(self) -> None:
        if self.utt is not None:
            self.utt.end()
        self.utt = None
        self._last_use = time.monotonic()
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    async def close_gracefully(self, timeout_s: float) -> None:
        """Session end: CloseStream lets Deepgram flush and bill exactly; cut it short if slow."""
        self.retire = True
        self.wake()
        worker = self._worker
        if worker is not None and not self.busy:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(worker)
        await self.shutdown()

    async def shutdown(self) -> None:
        """Close the socket now (cancellation path: must not wait for the provider).

        The TCP connection is aborted first: a WebSocket close handshake waits up to 10 s for a
        provider that stopped reading, and barge-in or session end must not wait for it.
        """
        worker, self._worker = self._worker, None
        transport = getattr(getattr(self._socket, "_websocket", None), "transport", None)
        if transport is not None:
            transport.abort()
        if worker is not None and not worker.done():
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        if self.utt is not None:
            self.utt.fail(Failure("dropped"))

    # --- writer task ----------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            while True:
                async with contextlib.AsyncExitStack() as stack:
                    try:
                        self._socket = await self._p.connect(stack)
                    except Failure as failure:
                        if self.utt is not None:
                            self.utt.fail(failure)
                        return
                    reader = asyncio.create_task(self._read(), name="deepgram-reader")
                    stack.push_async_callback(_cancel, reader)
                    try:
                        await self._pump(reader)
                        return
                    except Failure as failure:
                        if not self._may_reconnect(failure):
                            return
        finally:
            self._socket = None
            self._p.forget(self)

    def _may_reconnect(self, failure: Failure) -> bool:
        utt = self.utt
        if utt is None:
            return False  # idle: the next utterance opens a fresh socket
        if failure.kind == "dropped" and utt.reconnects < self._p.policy.max_retries:
            utt.reconnects += 1
            utt.restart()
            log.info("deepgram socket dropped, reconnecting and replaying the utterance")
            return True
        utt.fail(failure)
        return False

    async def _pump(self, reader: asyncio.Task[Failure]) -> None:
        socket = self._socket
        keepalive = self._p.keepalive_s
        while True:
            # Cleared before the work, not after: a wake (new audio, finish) that arrives while
            # this loop awaits the socket must not be lost, or Finalize could wait for the timer.
            self._wake.clear()
            if reader.done():
                raise reader.result()
            now = time.monotonic()
            utt = self.utt
            try:
                if utt is not None and utt.failure is None:
                    if utt.sent < len(utt.audio):
                        chunk = bytes(utt.audio[utt.sent :])
                        utt.sent = len(utt.audio)
                        await socket.send_media(chunk)
                        self._last_send = now
                    if utt.finish_requested and not utt.finalize_sent:
                        utt.finalize_sent = True
                        await socket.send_finalize()
                        self._last_send = now
                elif utt is None and (self.retire or now - self._last_use > self._p.idle_close_s):
                    self.retire = True  # from here on open_stream must not pick this link
                    with contextlib.suppress(Exception):
                        await socket.send_close_stream()
                    return
                if now - self._last_send >= keepalive:
                    await socket.send_keep_alive()
                    self._last_send = now
            except Exception as exc:
                raise classify(exc) from None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(keepalive / 2):
                    await self._wake.wait()

    async def _read(self) -> Failure:
        """Route results to the current utterance; returns why the socket ended."""
        try:
            async for message in self._socket:
                self._handle(message)
            return Failure("dropped")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return classify(exc)
        finally:
            self.wake()

    def _handle(self, message: Any) -> None:
        kind = getattr(message, "type", None)
        if kind == "Error":
            raise Failure("rejected")
        if kind == "UtteranceEnd" and self.utt is not None and self.utt.text(with_partial=True):
            self.utt.endpoint()  # the word-gap signal, for noisy audio where speech_final never comes
            return
        if kind != "Results":
            return  # Metadata, SpeechStarted: nothing to do with turns
        try:
            transcript = message.channel.alternatives[0].transcript if message.channel.alternatives else ""
        except (AttributeError, IndexError, TypeError):
            raise Failure("bad_response") from None
        if not isinstance(transcript, str):
            raise Failure("bad_response")
        utt = self.utt
        if utt is not None:
            utt.result(
                transcript.strip(),
                bool(message.is_final),
                bool(message.from_finalize),
                bool(getattr(message, "speech_final", False)),
            )


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class DeepgramStream:
    provider = "deepgram"

    def __init__(self, provider: DeepgramSTT, link: _Link, utt: _Utterance) -> None:
        self._p = provider
        self._link = link
        self._utt = utt
        self._closed = False

    def _check(self) -> None:
        if self._utt.failure is not None:
            raise self._p.telemetry.error(self._utt.failure)

    async def send(self, pcm: bytes) -> None:
        if self._closed:
            return
        self._check()
        self._utt.audio += pcm
        self._link.wake()

    async def finish(self) -> str:
        if self._closed:
            return ""
        self._utt.finish_requested = True
        self._link.wake()
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._p.policy.timeout_s):
                await self._utt.done.wait()
            self._p.telemetry.observe("finalize", time.monotonic() - started)
        except TimeoutError:
            text = self._utt.text(with_partial=True)
            if not text:
                self._utt.fail(Failure("timeout"))
            else:
                self._closed = True
                self._link.detach()
                self._link.retire = True  # its buffer may still answer late; do not reuse it
                return text
        self._check()
        self._closed = True
        self._link.detach()
        return self._utt.text()

    async def aclose(self) -> None:
        """Abandon: the socket holds audio of this utterance, so it is closed, not reused."""
        if self._closed:
            return
        self._closed = True
        self._p.forget(self._link)
        await self._link.shutdown()
        self._utt.end()


class DeepgramSTT:
    name = "deepgram"
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        client: Any,
        model: str,
        language: str,
        policy: CallPolicy,
        keepalive_s: float = 5.0,
        idle_close_s: float = 60.0,
        endpointing_ms: int = 0,
    ) -> None:
        # > 0: ask Deepgram to endpoint (speech_final after this much silence, plus UtteranceEnd)
        # and end turns on it, ahead of the local VAD's end-of-turn silence.
        self._endpointing_ms = endpointing_ms
        self._client = client
        self._model = model
        self._language = language
        self.policy = policy
        self.keepalive_s = keepalive_s
        self.idle_close_s = idle_close_s
        self.telemetry = Telemetry(self.name, "stt")
        self._links: set[_Link] = set()

    async def start(self) -> None:
        return None

    async def connect(self, stack: contextlib.AsyncExitStack) -> Any:
        """Open a socket (retried per policy); it closes with `stack`."""
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                async with asyncio.timeout(self.policy.timeout_s):
                    socket = await stack.enter_async_context(
                        self._client.listen.v1.connect(
                            model=self._model,
                            language=self._language,
                            encoding="linear16",
                            sample_rate=SAMPLE_RATE,
                            channels=1,
                            interim_results="true",
                            punctuate="true",
                            smart_format="true",
                            **self._endpointing_params(),
                        )
                    )
                self.telemetry.observe("connect", time.monotonic() - started)
                return socket
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failure = classify(exc)
            delay = self.policy.delay(attempt, failure)
            if delay is None:
                raise failure
            self.telemetry.retried()
            attempt += 1
            await asyncio.sleep(delay)

    def _endpointing_params(self) -> dict[str, str]:
        if not self._endpointing_ms:
            return {}
        # utterance_end_ms has a floor of 1000 at Deepgram; it backs speech_final up in noise.
        return {"endpointing": str(self._endpointing_ms), "utterance_end_ms": "1000"}

    def forget(self, link: _Link) -> None:
        self._links.discard(link)

    async def open_stream(
        self, on_interim: InterimCallback, state: dict[str, Any], on_endpoint: EndpointCallback | None = None
    ) -> DeepgramStream:
        link: _Link | None = state.get(STATE_KEY)
        if link is None or link not in self._links or link.busy or link.retire:
            if link is not None and link.busy:
                link.retire = True  # still finalizing the previous utterance; it closes when done
            link = _Link(self)
            self._links.add(link)
            state[STATE_KEY] = link
        utt = _Utterance(on_interim, self.telemetry, on_endpoint if self._endpointing_ms else None)
        link.attach(utt)
        return DeepgramStream(self, link, utt)

    async def release(self, state: dict[str, Any]) -> None:
        link: _Link | None = state.pop(STATE_KEY, None)
        if link is not None:
            self.forget(link)
            await link.close_gracefully(CLOSE_GRACE_S)

    async def close(self) -> None:
        links, self._links = list(self._links), set()
        await asyncio.gather(*(link.shutdown() for link in links), return_exceptions=True)


def deepgram_environment(base_url: str | None) -> Any:
    """The SDK's environment for a base URL given as http(s):// or ws(s)://."""
    from deepgram.environment import DeepgramClientEnvironment

    if not base_url:
        return DeepgramClientEnvironment.PRODUCTION
    base = base_url.rstrip("/")
    scheme, _, rest = base.partition("://")
    secure = scheme in ("https", "wss")
    http = f"{'https' if secure else 'http'}://{rest}"
    ws = f"{'wss' if secure else 'ws'}://{rest}"
    return DeepgramClientEnvironment(base=http, production=ws, agent=ws, agent_rest=http)


def build_deepgram_stt(
    api_key: str,
    base_url: str | None,
    model: str,
    language: str,
    policy: CallPolicy,
    keepalive_s: float,
    idle_close_s: float,
    endpointing_ms: int = 0,
) -> DeepgramSTT:
    from deepgram import AsyncDeepgramClient

    client = AsyncDeepgramClient(api_key=api_key, environment=deepgram_environment(base_url))
    return DeepgramSTT(client, model, language, policy, keepalive_s, idle_close_s, endpointing_ms)
