"""Voice activity detection with webrtcvad: turns a stream of 20 ms frames into speech turns.

Start of speech needs `start_ms` of consecutive voiced frames (one VAD decision, ~60 ms), so a
click does not interrupt the agent. The end of a turn is a silence whose length EndOfTurn sets
(end_of_turn.py): fixed, or decided at a short pause from the words so far, which STT sends up in
answer to an EndOfTurnQueryFrame while this frame is still being handled. Audio before the start
decision is kept (pre-roll) and forwarded, so STT hears the first phoneme.

The silence that ends a turn counts from the voice's last loud frame, not webrtcvad's last voiced
one: webrtcvad goes on calling frames voiced for a while after the voice has ended (its hangover,
~100 ms measured in the browser benchmark), and all of it was waited on top of the end-of-turn
silence (docs/performance.md, "In the browser"). A quiet voiced frame neither ends a pause nor
resumes the speech; the frames STT and the barge-in gate receive keep webrtcvad's call.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import numpy as np
import webrtcvad

from voice_agent.media.audio import FRAME_MS, PIPELINE_RATE
from voice_agent.pipeline.end_of_turn import EndOfTurn
from voice_agent.pipeline.frames import (
    DataFrame,
    EndOfTurnQueryFrame,
    EndOfTurnRequestFrame,
    EndOfTurnWordsFrame,
    InputAudioFrame,
    SystemFrame,
    UserPausedFrame,
    UserResumedFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from voice_agent.pipeline.processor import Direction, FrameProcessor

PREROLL_MS = 300
# A voiced frame this far below the utterance's loudest is not the voice itself but the quiet after
# it that webrtcvad's hangover still calls voiced. Room noise within this of the speech keeps every
# voiced frame loud: webrtcvad's call alone then decides, as it did before.
QUIET_BELOW_PEAK_DB = 35.0
_QUIET_RATIO = 10 ** (-QUIET_BELOW_PEAK_DB / 10)


def frame_power(pcm: bytes) -> float:
    """Mean power of s16 PCM (0 for none)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    return float(np.mean(samples * samples)) if samples.size else 0.0


class VADProcessor(FrameProcessor):
    name = "vad"

    def __init__(
        self,
        aggressiveness: int = 3,
        start_ms: int = 60,
        end_of_turn_silence_ms: int = 500,
        max_utterance_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        pause_ms: int = 0,
        end_of_turn: EndOfTurn | None = None,
        end_at_loud: bool = True,
    ) -> None:
        """`end_at_loud`: False lets webrtcvad's last voiced frame end the voice (the VAD before the
        change, for comparisons); the last loud frame is still reported."""
        super().__init__()
        self._end_at_loud = end_at_loud
        self._vad = webrtcvad.Vad(aggressiveness)
        self._start_frames = max(1, start_ms // FRAME_MS)
        self._turn_end = end_of_turn or EndOfTurn("fixed", end_of_turn_silence_ms)
        # 0 = no pause events; a pause is only worth announcing if it may come before the turn ends.
        pause_frames = pause_ms // FRAME_MS
        self._pause_frames = pause_frames if 0 < pause_frames < self._turn_end.limit else 0
        self._max_frames = int(max_utterance_s * 1000 / FRAME_MS)
        self._clock = clock
        self._preroll: deque[bytes] = deque(maxlen=PREROLL_MS // FRAME_MS)
        self.speaking = False
        self._run = 0
        self._silence = 0
        self._utt_frames = 0
        self._last_voiced_at = 0.0  # the voice's last loud frame: where the silence counts from
        self._last_loud_at = 0.0
        self._peak = 0.0  # the loudest voiced frame's power, of the run before speech, then of the utterance
        self._end_requested = False
        self._answer: EndOfTurnWordsFrame | None = None  # STT's, to the last EndOfTurnQueryFrame
        self._asking = False

    async def on_system(self, frame: SystemFrame, direction: Direction) -> None:
        if isinstance(frame, EndOfTurnRequestFrame):
            # The STT provider endpointed: the turn ends on the audio frame being handled. Not
            # speaking: nothing to end, and no stale request is kept for the next turn.
            if self.speaking:
                self._end_requested = True
            return
        if isinstance(frame, EndOfTurnWordsFrame):
            if self._asking:
                self._answer = frame
            elif self.speaking and 0 < self._turn_end.decide_at <= self._silence:
                # Newer words while the pause lasts: judged again, and the end may come sooner.
                self._turn_end.decide(frame.text, self._silence)
            return
        await self.forward(frame, direction)

    def is_speech(self, pcm: bytes) -> bool:
        return bool(self._vad.is_speech(pcm, PIPELINE_RATE))

    async def process(self, frame: DataFrame) -> None:
        if not isinstance(frame, InputAudioFrame):
            await self.push(frame)
            return
        now = self._clock()
        voiced = self.is_speech(frame.pcm)
        power = frame_power(frame.pcm) if voiced else 0.0
        if not self.speaking:
            self._preroll.append(frame.pcm)
            self._run = self._run + 1 if voiced else 0
            self._peak = max(self._peak, power) if voiced else 0.0
            if self._run >= self._start_frames:
                self.speaking = True
                self._silence = 0
                self._utt_frames = len(self._preroll)
                self._last_voiced_at = self._last_loud_at = now
                await self.push(UserStartedSpeakingFrame(at=now - (self._run - 1) * FRAME_MS / 1000))
                for pcm in self._preroll:
                    await self.push(InputAudioFrame(pcm, voiced=True))
                self._preroll.clear()
            return
        self._utt_frames += 1
        self._peak = max(self._peak, power)
        loud = voiced and power >= self._peak * _QUIET_RATIO
        if loud:
            self._last_loud_at = now
        await self.push(InputAudioFrame(frame.pcm, voiced=voiced))
        if loud or (voiced and not self._end_at_loud):
            if self._pause_frames and self._silence >= self._pause_frames:
                await self.push(UserResumedFrame())
            if self._silence:
                self._turn_end.speech()
            self._silence = 0
            self._last_voiced_at = now
        else:
            self._silence += 1
            if self._silence == self._turn_end.decide_at:
                await self._decide()
            if self._silence == self._pause_frames:
                await self.push(UserPausedFrame(at=self._last_voiced_at))
        by_silence = self._silence >= self._turn_end.limit
        if self._end_requested or by_silence or self._utt_frames >= self._max_frames:
            if self._end_requested or by_silence:
                self._turn_end.ended(now - self._last_voiced_at, by_provider=not by_silence)
            else:
                self._turn_end.speech()  # cut at the longest utterance: no end-of-turn decision
            self._end_requested = False
            self.speaking = False
            self._run = 0
            self._peak = 0.0
            await self.push(UserStoppedSpeakingFrame(at=self._last_voiced_at, loud_at=self._last_loud_at))

    async def _decide(self) -> None:
        """Ask STT for the words so far (it answers while this push is under way, or never: no
        stream, no recognizer), before the pause is announced, so a draft starts on them too."""
        started = time.perf_counter()
        self._answer, self._asking = None, True
        try:
            await self.push(EndOfTurnQueryFrame())
        finally:
            self._asking = False
        answer = self._answer or EndOfTurnWordsFrame(None)
        spent_s = time.perf_counter() - started + answer.spent_s
        self._turn_end.decide(answer.text, self._silence, spent_s, answer.at_voice_end)
