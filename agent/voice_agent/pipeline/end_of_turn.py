"""Has the user finished? The end-of-turn decision and how much silence each turn waits.

A fixed silence is a blunt rule: long enough not to cut off a speaker who pauses mid-sentence is
far too long for one who has finished. The adaptive detector (docs/architecture.md, "End of turn")
decides at a short pause instead, from the words heard so far: a phrase that ends in "the", "to",
"my", "and" or a filler is unfinished; almost anything else is complete.

The rule has to hold up under a poor recognizer (the offline one often gets a word wrong), so it
calls a phrase unfinished only on a clear continuation word and otherwise complete: a misheard
ending costs at worst the longer wait, and a false "complete" needs a continuation word misheard
as something else. It knows nothing of the voice, and a decision costs microseconds. (The pitch
contour of the last voiced audio was measured as a second cue: it went different ways for different
voices, so it is not used.)
"""

from __future__ import annotations

import enum
import logging
import re
import time
from typing import Literal

from voice_agent.media.audio import FRAME_MS
from voice_agent.providers.base import PartialHypothesis, STTStream
from voice_agent.telemetry import metrics

log = logging.getLogger(__name__)

Detector = Literal["adaptive", "fixed"]


class Verdict(enum.Enum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    UNKNOWN = "unknown"  # nothing to judge by: the fixed silence decides


# Words a sentence does not end on: what follows them is still to come.
ARTICLES = frozenset({"a", "an", "the"})
POSSESSIVES = frozenset({"my", "your", "our", "their", "its"})
CONJUNCTIONS = frozenset({"and", "or", "but", "because", "if", "nor", "whether", "unless", "although"})
PREPOSITIONS = frozenset(
    {"to", "of", "for", "with", "from", "at", "about", "by", "into", "onto", "than", "between", "without"}
)
AUXILIARIES = frozenset(
    {"is", "are", "was", "were", "am", "been", "can", "could", "will", "would", "shall", "should", "must"}
)
FILLERS = frozenset({"um", "umm", "uh", "uhm", "er", "erm", "ah", "hmm", "mm"})
# A question may end on its preposition when a wh-word is its object ("where are you from", "what are
# you looking for"); the preposition then follows a pronoun or a verb, not a noun ("the capital of").
WH_WORDS = frozenset({"what", "who", "whom", "which", "where", "whose"})
PRONOUNS = frozenset({"i", "you", "he", "she", "it", "we", "they", "that", "this", "there", "here", "me"})
# "to" after these starts an infinitive, never ends a question: "what would you like to" is unfinished.
TAKES_INFINITIVE = frozenset(
    {"like", "want", "wants", "wanted", "need", "needs", "going", "have", "has", "had", "trying", "able"}
)
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def words_of(text: str) -> list[str]:
    """Lower-case words; a cloud recognizer's punctuation and capitals are dropped."""
    return _WORD.findall(text.lower())


def judge_pause(now: str | None, at_voice_end: str | None = None) -> Verdict:
    """The verdict on the words at the pause, and on the same recognizer's words as the voice ended
    when it can tell them: a continuation word in either is reason to wait (see PauseWords)."""
    verdict = judge(now)
    if verdict is not Verdict.UNKNOWN and at_voice_end and judge(at_voice_end) is Verdict.INCOMPLETE:
        return Verdict.INCOMPLETE
    return verdict


def judge(text: str | None) -> Verdict:
    """The verdict on the words heard so far (`None`: no recognizer could say)."""
    if text is None:
        return Verdict.UNKNOWN
    said = words_of(text)
    if not said:
        return Verdict.UNKNOWN
    if said[-1] in FILLERS:
        return Verdict.INCOMPLETE  # "um": someone is thinking
    words = [w for w in said if w not in FILLERS]
    last = words[-1]
    before = words[-2] if len(words) > 1 else ""
    if last == "a":
        # The offline recognizer ends many a finished question on a stray "a", its language
        # model's favourite short word ("what time is it" heard as "what time is a"): too weak a
        # sign to wait the longest silence for, so the fixed silence decides.
        return Verdict.UNKNOWN
    if last in ARTICLES or last in POSSESSIVES or last in CONJUNCTIONS:
        return Verdict.INCOMPLETE
    if last in PREPOSITIONS:
        infinitive = last == "to" and before in TAKES_INFINITIVE
        stranded = words[0] in WH_WORDS and (before in PRONOUNS or before.endswith("ing")) and not infinitive
        return Verdict.COMPLETE if stranded else Verdict.INCOMPLETE
    if last in AUXILIARIES:
        # After a pronoun it ends the clause ("yes I can", "do you know what time it is"); after
        # anything else its complement is still to come ("my name is", "what is").
        return Verdict.COMPLETE if not before or before in PRONOUNS else Verdict.INCOMPLETE
    if last == "like" and before in {"would", "i'd", "you'd", "we'd", "they'd"} and words[0] not in WH_WORDS:
        return Verdict.INCOMPLETE  # "I would like": like what? ("what would you like" is asked)
    return Verdict.COMPLETE


class EndOfTurn:
    """One call's end-of-turn state, for the VAD: how much silence ends the turn in progress.

    Fixed: `fixed_silence_ms`. Adaptive: at `min_silence_ms` the VAD asks for a decision; complete
    ends the turn there, incomplete waits up to `max_silence_ms`, and a failed or impossible
    decision falls back to the fixed silence, never past the maximum. Every limit is counted in
    20 ms frames of silence, the VAD's unit, and reset when the user speaks again."""

    def __init__(
        self,
        detector: Detector = "fixed",
        fixed_silence_ms: int = 500,
        min_silence_ms: int = 200,
        max_silence_ms: int = 1600,
    ) -> None:
        if detector == "adaptive" and not 0 < min_silence_ms < max_silence_ms:
            raise ValueError(f"need 0 < min silence < max silence, not {min_silence_ms}, {max_silence_ms}")
        self.detector = detector
        fixed = max(1, fixed_silence_ms // FRAME_MS)
        if detector == "adaptive":
            self.decide_at = max(1, min_silence_ms // FRAME_MS)
            self._longest = max(self.decide_at + 1, max_silence_ms // FRAME_MS)
            self._fallback = min(fixed, self._longest)
        else:
            self.decide_at = 0  # never: a silence of 0 frames is never counted
            self._longest = self._fallback = fixed
        self.limit = self._longest
        self._outcome = "timeout"

    def speech(self) -> None:
        """The user spoke: the next pause is judged afresh."""
        self.limit = self._longest
        self._outcome = "timeout"

    def decide(
        self, words: str | None, silence: int, spent_s: float = 0.0, at_voice_end: str | None = None
    ) -> Verdict:
        """Judge `words` (and `at_voice_end`, judge_pause) at `silence` frames into a pause, and set
        the limit from the verdict. `spent_s`: time already spent getting the words, counted in the
        decision's time."""
        started = time.perf_counter()
        try:
            verdict = judge_pause(words, at_voice_end)
        except Exception:  # a decision must never cost the call: the fixed silence takes over
            log.exception("end-of-turn decision failed")
            verdict = Verdict.UNKNOWN
        if verdict is Verdict.COMPLETE:
            self.limit = silence
            self._outcome = "complete"
        elif verdict is Verdict.INCOMPLETE:
            self.limit = self._longest
            self._outcome = "timeout"
        else:
            self.limit = max(silence, self._fallback)
            self._outcome = "fallback"
        outcome = "fallback" if verdict is Verdict.UNKNOWN else verdict.value
        metrics.TURN_DECISIONS.labels(self.detector, outcome).inc()
        metrics.TURN_DECISION_TIME.labels(self.detector).observe(spent_s + time.perf_counter() - started)
        return verdict

    def ended(self, silence_s: float, by_provider: bool) -> None:
        """The turn was taken after `silence_s` of silence: by the provider's endpoint, or by the
        limit (a pause judged complete or failed was counted when decided, the rest here)."""
        if by_provider:
            metrics.TURN_DECISIONS.labels(self.detector, "provider").inc()
        elif self._outcome == "timeout":
            metrics.TURN_DECISIONS.labels(self.detector, "timeout").inc()
        metrics.TURN_END_SILENCE.labels(self.detector).observe(silence_s)
        self.speech()


class PauseWords:
    """STT's side of the decision: which words answer the VAD at a pause, and which come later.

    A stream that can tell its hypothesis at once (PartialHypothesis) is asked at the pause, and
    also as the voice ends, before it hears the silence: the offline decoder's best path moves in
    that silence both ways. It may decode the last word only then ("what time is" becomes "what
    time is it"), or drift towards a word that ends a sentence ("tell me about the" becomes "tell
    me about that"; with the decoder before its speech-level normalization that took 17 of 40
    hesitations of the turn-taking evaluation for finished, the words at the voice's end 5). Both
    looks go to the VAD, which waits if either ends on a continuation word. A stream is not asked
    before it has shown words (an interim): until then it may still be waiting to begin decoding,
    and asking would make it begin early. A stream that cannot tell its hypothesis is answered
    for by its last interim, which trails the audio (a cloud recognizer's results come after it),
    so newer interims while the pause lasts go up too."""

    def __init__(self, at_voice_end: bool = True) -> None:
        self._watch = at_voice_end  # off for the fixed detector, which never asks
        self.reset()

    def reset(self) -> None:
        """A new utterance."""
        self._at_voice_end: str | None = None
        self._voiced = False
        self._shown = False  # the stream has shown words: it is decoding
        self._spent_s = 0.0  # on hypotheses since the last answer: part of the decision's cost
        self._lagging = False  # the last answer was an interim: newer ones are news
        self.newer = False

    def heard(self, stream: STTStream | None, voiced: bool) -> None:
        """Before a frame goes to the stream: the first silent frame after voice takes the words."""
        voice_ended = self._watch and self._shown and self._voiced and not voiced
        if voice_ended and isinstance(stream, PartialHypothesis):
            started = time.perf_counter()
            self._at_voice_end = _ask(stream)[1]
            self._spent_s += time.perf_counter() - started
        self._voiced = voiced
        if voiced:
            self._lagging = self.newer = False  # speech again: the next pause is asked anew

    def interim(self) -> None:
        """The stream reported new words."""
        self._shown = True
        self.newer = self._lagging

    def fresh(self, stream: STTStream | None) -> str | None:
        """The stream's own hypothesis now, if it can tell one and has shown words (see above); else
        None. At a pause the last interim may be up to 200 ms of audio behind; at the end of the
        utterance this is the final transcript (STTProcessor)."""
        if not isinstance(stream, PartialHypothesis) or not self._shown:
            return None
        ok, now = _ask(stream)
        return now if ok else None

    def answer(self, stream: STTStream | None, last_interim: str) -> tuple[str | None, str | None, float]:
        """(the words now, the words as the voice ended, time spent on words before this answer);
        no words now when there is no stream or it failed to tell: the fixed silence decides."""
        spent, self._spent_s = self._spent_s, 0.0
        self.newer = self._lagging = False
        if stream is None:
            return None, None, spent
        if isinstance(stream, PartialHypothesis):
            ok, now = _ask(stream)
            if not ok:
                return None, None, spent
            if now is not None:
                return now, self._at_voice_end, spent
        self._lagging = True
        return last_interim, None, spent


def _ask(stream: PartialHypothesis) -> tuple[bool, str | None]:
    try:
        return True, stream.partial()
    except Exception:
        log.exception("the STT stream failed to tell its hypothesis")
        return False, None
