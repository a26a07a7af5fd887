"""Barge-in gate, between STT and LLM: whether user sound during a reply interrupts it.

An interruption is an InterruptionFrame for the turn in flight, which overtakes all queued data on
its way to the track (the history keeps what was heard). The client's `interrupt` and typed text are
always one. For speech, `interruption` (docs/configuration.md) picks the policy:

- `immediate`: any speech while a turn is in flight interrupts it.
- `classify`: a cough, a click or an "mm-hmm" should not cost the user the rest of the reply, and
  neither the VAD nor a first hypothesis can tell them from "wait". So sound that starts during a
  turn holds its audio at once (HoldFrame: the track sends silence and keeps its place), and then
  * interrupts, and goes on to be the next turn, when the recognizer hears a word that carries
    something (not a backchannel, filler or hum: `heard_words`) in two hypotheses running, when
    the sound lasts `interruption_min_speech_ms`, or when its final transcript has such a word;
  * lets the reply play on from where it paused (ResumeFrame) once the sound has been quiet for
    QUIET_MS with no such word heard, or its final transcript has none. Such an utterance is a
    false interruption: its final is reported empty and it never becomes a turn.
  A hold never outlasts the sound by more than QUIET_MS unless words wait for their final
  transcript, and then at most `hold_limit_s` from the sound's start: nothing stays held.
  The sound's length and its quiet are counted in audio frames, not on the clock, so a loop that
  stalls while the audio queues up does not turn a cough into a long sound.

STT hands the final transcript of an utterance under classification to the gate (HeldTranscriptFrame,
asked for with an upstream ClassifyUtteranceFrame) instead of reporting it, so a dropped one never
reaches the client or the history. The gate hears the sound and the hypotheses as an observer
(voiced audio frames, interim transcripts); decisions made there are pushed in order with the frames
passing through (one lock, one outbox), so an interruption always precedes the turn that follows it.

A backchannel that overlaps the very end of a reply ("yes" to "shall I go on?") is an answer: once
the reply is over, only an utterance with no word at all (hums, fillers, noise) is dropped.

The user-side frames end here; their facts reached the observers when the VAD pushed them.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from dataclasses import dataclass
from typing import Literal

from voice_agent.media.audio import FRAME_MS
from voice_agent.pipeline.frames import (
    ClassifyUtteranceFrame,
    DataFrame,
    Frame,
    HeldTranscriptFrame,
    HoldFrame,
    InputAudioFrame,
    InterruptionFrame,
    InterruptRequestFrame,
    ResumeFrame,
    SystemFrame,
    TranscriptionFrame,
    TurnEndedFrame,
    UserPausedFrame,
    UserResumedFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from voice_agent.pipeline.processor import DOWNSTREAM, UPSTREAM, Direction, FrameProcessor
from voice_agent.pipeline.turns import TurnTracker
from voice_agent.pipeline.vad import PREROLL_MS
from voice_agent.telemetry import metrics

log = logging.getLogger(__name__)

Policy = Literal["classify", "immediate"]

# --- words ----------------------------------------------------------------------------------------
# Spelled as `_normal` leaves them: lower case, no punctuation or hyphens, repeated letters once
# ("Mm-hmm." -> "mhm", "uh-huh" -> "uhuh", "hmmm" -> "hm", "okaaay" -> "okay").
# Acknowledgements: no request while the agent is mid-reply, but an answer when it has finished.
BACKCHANNELS = frozenset(
    {"mhm", "uhuh", "yeah", "yes", "yep", "yup", "ok", "okay", "alright", "right", "sure"}
)
# Hesitations and hums: never a request.
FILLERS = frozenset({"hm", "m", "uh", "um", "ah", "oh", "er", "erm", "eh"})
# Not a request on their own, and what the offline recognizer makes of a hum or a cough ("an m h
# and m", "ah", "i", "but"): with FILLERS and single letters (its spelling of a hum), they do not
# make an interruption. Matched as heard, not with repeated letters folded ("too" is not "to").
NO_REQUEST = frozenset(
    {"a", "an", "the", "and", "but", "or", "i", "it", "to", "of", "in", "on", "by", "is", "all"}
)

# "uh-uh" is a no, though its letters fold like "uh-huh"'s.
NEGATIVES = frozenset({"uhuh", "nuhuh"})

_NOT_LETTERS = re.compile(r"[^a-z']")
_REPEATS = re.compile(r"(.)\1+")


def _normal(token: str) -> tuple[str, str]:
    """(the word as heard, with repeated letters folded), both lower case without punctuation."""
    word = _NOT_LETTERS.sub("", token.lower().replace("-", "")).strip("'")
    return word, _REPEATS.sub(r"\1", word)


def heard_words(text: str, mid_reply: bool = True) -> list[str]:
    """The words of `text` that carry something the agent should answer: not a filler, a hum or a
    lone function word, and (while the agent is mid-reply) not a backchannel either."""
    quiet = BACKCHANNELS | FILLERS if mid_reply else FILLERS
    out = []
    for token in text.split():
        word, folded = _normal(token)
        if word in NEGATIVES or (len(word) > 1 and word not in NO_REQUEST and folded not in quiet):
            out.append(word)
    return out


# --- the gate -------------------------------------------------------------------------------------
QUIET_MS = 300  # sound this quiet has ended (a backchannel's own gaps are shorter)
_QUIET_FRAMES = QUIET_MS // FRAME_MS
_PREROLL_FRAMES = PREROLL_MS // FRAME_MS  # the VAD sends these ahead of the speech that started
FINAL_WAIT_S = 1.0  # past the sound and QUIET_MS, how long words may hold the reply for their final
_MAX_PENDING = 8  # utterances whose final transcript is awaited (a failed STT never sends one)

_REAL = metrics.INTERRUPTIONS.labels("real")
_FALSE = metrics.INTERRUPTIONS.labels("false")
_RESUMED = metrics.INTERRUPTIONS.labels("resumed")


@dataclass(eq=False)
class _Sound:
    """An utterance that began while `turn` was in flight, from its start to its final transcript."""

    utterance: int
    turn: int
    onset: int  # audio frame where the current stretch of sound began (again after a resume)
    frames: int = 0  # audio frames heard since the VAD's start, its pre-roll included
    quiet_frames: int = 0
    words: frozenset[str] = frozenset()  # heard words of the latest hypothesis
    holding: bool = True
    real: bool = False
    timer: asyncio.TimerHandle | None = None


class BargeInGate(FrameProcessor):
    name = "barge-in"
    frame_types = (InputAudioFrame, TranscriptionFrame, TurnEndedFrame)

    def __init__(
        self,
        turns: TurnTracker,
        policy: Policy = "classify",
        min_speech_ms: int = 700,
        start_ms: int = 60,
        hold_limit_s: float | None = None,
    ) -> None:
        super().__init__()
        self._turns = turns
        self._policy = policy
        self._min_speech_frames = max(1, min_speech_ms // FRAME_MS)
        # The VAD's pre-roll ends with the voiced run that started the speech: that run is sound.
        self._onset = max(0, _PREROLL_FRAMES - max(1, start_ms // FRAME_MS))
        self._hold_limit_s = (
            hold_limit_s if hold_limit_s is not None else (min_speech_ms + QUIET_MS) / 1000 + FINAL_WAIT_S
        )
        self._current: _Sound | None = None  # the utterance the VAD is in, if it began during a turn
        self._pending: dict[int, _Sound] = {}  # by utterance, oldest first, until its final arrives
        self._utterances = 0
        self._paused: int | None = None  # the turn whose audio this gate holds
        self._cut: int | None = None  # the turn an interruption was decided for
        self._outbox: deque[tuple[SystemFrame, Direction]] = deque()
        self._lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None

    # --- frames through the chain -------------------------------------------------------------
    async def queue_frame(self, frame: Frame, direction: Direction = DOWNSTREAM) -> None:
        async with self._lock:
            await self._drain()  # what was decided between frames goes first
            await super().queue_frame(frame, direction)
            await self._drain()

    async def on_system(self, frame: SystemFrame, direction: Direction) -> None:
        if isinstance(frame, UserStartedSpeakingFrame):
            self._started()
        elif isinstance(frame, UserStoppedSpeakingFrame):
            sound, self._current = self._current, None
            if sound is not None:
                self._quiet(sound)  # the VAD's end-of-turn silence is quiet too
        elif isinstance(frame, InterruptRequestFrame):
            turn = self._turns.active_turn
            if turn is not None:
                self._emit(InterruptionFrame(turn))
        elif not isinstance(frame, UserPausedFrame | UserResumedFrame):
            await self.forward(frame, direction)

    async def process(self, frame: DataFrame) -> None:
        if isinstance(frame, HeldTranscriptFrame):
            await self._final(frame)
        else:
            await self.forward(frame)

    async def stop(self) -> None:
        for sound in self._pending.values():
            self._disarm(sound)
        if self._flusher is not None:
            self._flusher.cancel()

    # --- decisions ----------------------------------------------------------------------------
    def _started(self) -> None:
        self._current = None
        turn = self._turns.active_turn
        if turn is None or turn == self._cut:
            return
        if self._policy == "immediate":
            self._interrupt(turn, "speech")
            return
        self._utterances += 1
        sound = _Sound(self._utterances, turn, onset=self._onset)
        self._current = self._pending[sound.utterance] = sound
        if len(self._pending) > _MAX_PENDING:
            self._disarm(self._pending.pop(next(iter(self._pending))))
        self._emit(ClassifyUtteranceFrame(sound.utterance), UPSTREAM)
        self._arm(sound)
        self._update_hold()

    def _heard(self, voiced: bool) -> None:
        sound = self._current
        if sound is None or sound.real:
            return
        sound.frames += 1
        if not voiced:
            sound.quiet_frames += 1
            if sound.quiet_frames == _QUIET_FRAMES:
                self._quiet(sound)
            return
        sound.quiet_frames = 0
        if not sound.holding:
            if self._turns.active_turn != sound.turn:
                return
            sound.onset = sound.frames - 1  # sound again after the reply resumed: hold it, measure afresh
            sound.holding = True
            self._arm(sound)
            self._update_hold()
        if sound.frames - sound.onset >= self._min_speech_frames:
            self._real(sound, "long")

    def _hypothesis(self, text: str) -> None:
        sound = self._current
        if sound is None or sound.real:
            return
        words = frozenset(heard_words(text))
        steady = words & sound.words  # a hypothesis' last word often changes; twice running, it holds
        sound.words = words
        if steady:
            self._real(sound, "words")

    def _quiet(self, sound: _Sound) -> None:
        if sound.holding and not sound.words:  # words wait for their final transcript
            self._release(sound)

    def _expired(self, sound: _Sound) -> None:
        sound.timer = None
        if sound.holding:
            log.info("interruption undecided", extra={"turn": sound.turn, "hold_s": self._hold_limit_s})
            self._release(sound)

    async def _final(self, held: HeldTranscriptFrame) -> None:
        sound = self._pending.pop(held.utterance, None)
        if sound is not None and not sound.real:
            self._disarm(sound)
            sound.holding = False
            mid_reply = self._turns.active_turn == sound.turn
            if not heard_words(held.transcription.text, mid_reply):
                _FALSE.inc()
                log.info("false interruption", extra={"turn": sound.turn, "mid_reply": mid_reply})
                self._update_hold()
                # Reported empty: the client clears the hypotheses it showed, and no turn is made.
                self.report(TranscriptionFrame(text="", final=True, at=held.transcription.at))
                return
            if mid_reply:
                self._real(sound, "final")
            self._update_hold()
            await self._drain()  # the interruption before the turn it makes way for
        self.report(held.transcription)
        if held.turn is not None:
            await self.push(held.turn)

    def _real(self, sound: _Sound, reason: str) -> None:
        sound.real = True
        self._disarm(sound)
        sound.holding = False
        if self._turns.active_turn == sound.turn and sound.turn != self._cut:
            self._interrupt(sound.turn, reason)

    def _interrupt(self, turn: int, reason: str) -> None:
        _REAL.inc()
        self._cut = turn
        self._paused = None  # the interruption empties the track, and its hold goes with it
        for sound in self._pending.values():
            if sound.turn == turn:
                self._disarm(sound)
                sound.holding = False
        log.info("interruption", extra={"turn": turn, "kind": "real", "reason": reason})
        self._emit(InterruptionFrame(turn))

    def _release(self, sound: _Sound) -> None:
        self._disarm(sound)
        sound.holding = False
        self._update_hold()

    def _update_hold(self) -> None:
        """Hold the turn in flight while any sound holds it; resume it when none does."""
        turn = self._turns.active_turn
        want = turn is not None and turn != self._cut
        want = want and any(s.holding and s.turn == turn for s in self._pending.values())
        if want and self._paused is None:
            assert turn is not None
            self._paused = turn
            log.info("interruption held", extra={"turn": turn})
            self._emit(HoldFrame(turn))
        elif not want and self._paused is not None:
            if self._paused == turn:
                _RESUMED.inc()
                log.info("interruption resumed", extra={"turn": turn})
                self._emit(ResumeFrame(turn))
            self._paused = None

    def _arm(self, sound: _Sound) -> None:
        self._disarm(sound)
        sound.timer = asyncio.get_running_loop().call_later(self._hold_limit_s, self._expired, sound)

    @staticmethod
    def _disarm(sound: _Sound) -> None:
        if sound.timer is not None:
            sound.timer.cancel()
            sound.timer = None

    # --- observed facts -----------------------------------------------------------------------
    def on_frame(self, frame: Frame) -> None:
        if isinstance(frame, InputAudioFrame):
            self._heard(frame.voiced)
        elif isinstance(frame, TranscriptionFrame):
            if not frame.final:
                self._hypothesis(frame.text)
        elif isinstance(frame, TurnEndedFrame):
            # The track's floor rose with the turn's end and took any hold with it.
            if self._paused == frame.turn:
                self._paused = None
            for sound in self._pending.values():
                if sound.turn == frame.turn:
                    self._disarm(sound)
                    sound.holding = False

    # --- pushing decisions in order -------------------------------------------------------------
    def _emit(self, frame: SystemFrame, direction: Direction = DOWNSTREAM) -> None:
        """Queue a decision's frame. Inside the chain it goes out before the frame being handled
        returns; from an observer or a timer (no awaiting there), as soon as the loop runs."""
        self._outbox.append((frame, direction))
        if not self._lock.locked() and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.get_running_loop().create_task(self._flush(), name="barge-in-flush")

    async def _flush(self) -> None:
        async with self._lock:
            await self._drain()

    async def _drain(self) -> None:
        while self._outbox:
            frame, direction = self._outbox.popleft()
            await self.push(frame, direction)
