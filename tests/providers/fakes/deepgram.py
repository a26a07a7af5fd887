"""Deepgram live transcription: WebSocket /v1/listen?model=...&encoding=linear16&sample_rate=...

Client -> server: binary audio, and JSON control messages {"type": "KeepAlive" | "Finalize" |
"CloseStream"}. Server -> client: "Results" (interim, then is_final; the one answering a Finalize
carries from_finalize=true), "Metadata" when the stream closes. With `endpointing=<ms>` in the
query, an utterance whose audio ends in that much silence gets its final result at once with
speech_final=true, as Deepgram's endpointing does. Auth: `Authorization: Token <key>`
checked at the handshake, which is refused with an HTTP status (401, 429 + Retry-After).

It does not recognize speech: each utterance (audio up to a Finalize) is answered with the next
scripted transcript, words revealed in interim results as audio arrives, but only if the audio
was not silence.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.providers.fakes.base import FakeBase, Record

INTERIM_EVERY_S = 0.3
SPEECH_RMS = 300


def rms(pcm: bytes) -> float:
    samples = array.array("h", pcm[: len(pcm) // 2 * 2])
    if not samples:
        return 0.0
    return float((sum(s * s for s in samples[::8]) / len(samples[::8])) ** 0.5)


class FakeDeepgram(FakeBase):
    def __init__(self, api_key: str, transcripts: list[str] | None = None) -> None:
        super().__init__(api_key)
        self.transcripts = list(transcripts or [])
        self.default_transcript = "hello there"
        self.segment_words = 0  # > 0: like Deepgram's own endpointing, finalize words mid-utterance
        self.keepalives = 0
        self.finalizes = 0
        self.endpoints = 0  # utterances answered by endpointing (speech_final) before any Finalize
        self.utterances: list[dict[str, Any]] = []  # {"bytes", "rms", "transcript"} per Finalize
        self._server: Server | None = None
        self._connections: set[ServerConnection] = set()

    async def start(self) -> None:
        self._server = await serve(
            self._handle, "127.0.0.1", self.port, process_request=self._handshake, max_size=2**22
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def _handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        rec = Record(parts.path, dict(request.headers.raw_items()), dict(parse_qsl(parts.query)))
        self.records.append(rec)
        status, headers = 0, Headers()
        if parts.path != "/v1/listen":
            status = 404
        elif request.headers.get("Authorization") != f"Token {self.api_key}":
            status = 401
        else:
            fault = self.take_fault()
            if fault is not None and fault.mode == "status":
                status = fault.status
                for k, v in fault.headers.items():
                    headers[k] = v
            elif fault is not None:
                self.faults.insert(0, fault)  # stream faults apply once the socket is open
        if not status:
            return None
        rec.status, rec.outcome, rec.ended = status, "fault", time.monotonic()
        response = connection.respond(status, json.dumps({"err_code": "fake", "err_msg": "refused"}))
        for k, v in headers.raw_items():
            response.headers[k] = v
        return response

    async def _handle(self, ws: ServerConnection) -> None:
        rec = self.records[-1]
        self._connections.add(ws)
        fault = self.take_fault()
        rate = int(rec.query.get("sample_rate", "16000"))
        utt = bytearray()
        sent_audio = 0.0  # seconds of audio before the current utterance
        interims = 0
        committed = 0  # words of this utterance already sent in is_final results
        endpointing_s = int(rec.query.get("endpointing", "0")) / 1000
        endpointed = False
        request_id = str(uuid.uuid4())
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    utt += message
                    rec.audio_bytes += len(message)
                    if fault is not None and rec.audio_bytes >= fault.after * 640:
                        if fault.mode == "drop":
                            ws.transport.abort()
                            return
                        if fault.mode == "malformed":
                            bad = {
                                "type": "Results",
                                "channel": {"alternatives": [{"transcript": 7}]},
                                "is_final": True,
                            }
                            await ws.send(json.dumps(bad))
                            fault = None
                            continue
                        if fault.mode == "stall":  # keep reading, answer nothing
                            async for _ in ws:
                                pass
                            return
                    seconds = len(utt) / (2 * rate)
                    tail = int(endpointing_s * rate) * 2
                    if (
                        endpointing_s
                        and not endpointed
                        and interims
                        and len(utt) > tail
                        and rms(utt[-tail:]) < SPEECH_RMS
                    ):
                        endpointed = True
                        self.endpoints += 1
                        rest = " ".join(self._peek().split()[committed:])
                        committed = len(self._peek().split())
                        await ws.send(self._results(rest, sent_audio, seconds, True, False, request_id, True))
                        continue
                    if seconds >= (interims + 1) * INTERIM_EVERY_S and rms(utt) >= SPEECH_RMS:
                        interims += 1
                        words = self._peek().split()
                        shown = min(interims, max(len(words) - 1, 1))
                        is_final = bool(self.segment_words) and shown - committed >= self.segment_words
                        text = " ".join(words[committed:shown])
                        committed = shown if is_final else committed
                        await ws.send(self._results(text, sent_audio, seconds, is_final, False, request_id))
                    continue
                msg = json.loads(message)
                rec.messages.append(msg)
                kind = msg.get("type")
                if kind == "KeepAlive":
                    self.keepalives += 1
                elif kind == "Finalize":
                    finalize_at = time.monotonic()
                    self.finalizes += 1
                    level = rms(utt)
                    text = self._take() if level >= SPEECH_RMS else ""
                    seconds = len(utt) / (2 * rate)
                    rest = " ".join(text.split()[committed:])
                    result = self._results(rest, sent_audio, seconds, True, True, request_id)
                    self.utterances.append(
                        {
                            "bytes": len(utt),
                            "rms": level,
                            "transcript": text,
                            "finalize_at": finalize_at,
                            "result_ready_at": time.monotonic(),
                        }
                    )
                    await ws.send(result)
                    sent_audio += seconds
                    utt.clear()
                    interims = committed = 0
                    endpointed = False
                elif kind == "CloseStream":
                    await ws.send(self._metadata(request_id, sent_audio + len(utt) / (2 * rate)))
                    await ws.close()
                    rec.outcome = "complete"
                    return
            rec.outcome = "client_closed"
        except ConnectionClosed:
            rec.outcome = "client_closed"
        finally:
            rec.ended = time.monotonic()
            self._connections.discard(ws)

    def _peek(self) -> str:
        return self.transcripts[0] if self.transcripts else self.default_transcript

    def _take(self) -> str:
        return self.transcripts.pop(0) if self.transcripts else self.default_transcript

    def _results(
        self,
        text: str,
        start: float,
        duration: float,
        is_final: bool,
        from_finalize: bool,
        request_id: str,
        speech_final: bool = False,
    ) -> str:
        words = text.split()
        step = duration / max(len(words), 1)
        return json.dumps(
            {
                "type": "Results",
                "channel_index": [0, 1],
                "duration": round(duration, 3),
                "start": round(start, 3),
                "is_final": is_final,
                "speech_final": speech_final,
                "from_finalize": from_finalize,
                "channel": {
                    "alternatives": [
                        {
                            "transcript": text,
                            "confidence": 0.99 if text else 0.0,
                            "words": [
                                {
                                    "word": w.lower().strip(".,?!"),
                                    "start": round(start + i * step, 3),
                                    "end": round(start + (i + 1) * step, 3),
                                    "confidence": 0.99,
                                    "punctuated_word": w,
                                }
                                for i, w in enumerate(words)
                            ],
                        }
                    ]
                },
                "metadata": {
                    "request_id": request_id,
                    "model_info": {"name": "2-general-nova", "version": "2024-01-09.29447", "arch": "nova-3"},
                    "model_uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, "nova-3")),
                },
            }
        )

    def _metadata(self, request_id: str, duration: float) -> str:
        return json.dumps(
            {
                "type": "Metadata",
                "transaction_key": "deprecated",
                "request_id": request_id,
                "sha256": "0" * 64,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "duration": round(duration, 3),
                "channels": 1,
                "models": [str(uuid.uuid5(uuid.NAMESPACE_DNS, "nova-3"))],
                "model_info": {},
            }
        )
