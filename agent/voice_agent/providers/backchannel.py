"""A second, small-vocabulary look at a short utterance that began while the agent was speaking:
is it only a backchannel or a hum ("uh-huh", "mm-hmm", "yeah")?

The offline recognizer's language model all but rules these words out ("uh-huh" is about a
thousand times less likely than "ahead", "mm-hmm" is not in it at all), so it hears them as
whatever common words sound closest: "ahead", "got", "the flood", "am among". A cloud recognizer
usually spells them right, and the barge-in gate's word lists (pipeline/barge_in.py) take it from
there; this look is for the offline one. It decodes the same audio again with a grammar and no
language model: any sequence of backchannels, hums, and the words people use to stop a speaker
("wait", "stop", "no", "hold on", questions...), each as likely as the others, so a word that asks
for something competes with the backchannels on its sound alone. A look decodes the sound from its
start, so while the sound is short it is asked only where a decision needs its words: at a pause
(the end of turn's words, and the one hypothesis the barge-in gate sees) and for the final
transcript, which is this look's when it heard no word that asks for anything (no_request), else the
main decoder's (docs/providers.md, "The offline recognizer").

One decoder serves a process: it holds the acoustic model and a vocabulary of a few dozen words
(about 6 MB, made in well under 0.1 s), and each look runs to its end without awaiting, so no two
overlap. It is made at start-up like the main decoders, never mid-call.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)


@runtime_checkable
class BackchannelAware(Protocol):
    """What an STTStream may also offer: told that its utterance began while the agent was speaking,
    it transcribes a short one that is only a backchannel as that backchannel."""

    def during_reply(self) -> None: ...


# Pronunciations in the acoustic model's phones. The backchannels have the variants people (and
# synthesizers) say: "uh-huh" with or without nasal ends, "mm-hmm" closed or open.
BACKCHANNELS: dict[str, tuple[str, ...]] = {
    "uh-huh": ("AH HH AH", "AH N HH AH N"),
    "mm-hmm": ("M HH M", "AH M HH AH M"),
    "yeah": ("Y AE", "Y EH"),
    "yes": ("Y EH S",),
    "yep": ("Y EH P",),
    "okay": ("OW K EY",),
    "right": ("R AY T",),
    "sure": ("SH UH R", "SH ER"),
    "alright": ("AO L R AY T",),
    "hmm": ("HH M",),
    "mm": ("M",),
    "um": ("AH M",),
    "uh": ("AH",),
}
# What a listener says to stop a speaker, and a few question words: the competition a backchannel
# must beat (without it every short sound would be the nearest backchannel). Not "up" or "back":
# short and generic, they matched a backchannel's end in most voices ("uh-huh up"). "okay" has no
# variant without its first vowel, which made "hey" an "okay".
INTERRUPTIONS: dict[str, tuple[str, ...]] = {
    "wait": ("W EY T",),
    "stop": ("S T AA P",),
    "no": ("N OW",),
    "nope": ("N OW P",),
    "not": ("N AA T",),
    "hold": ("HH OW L D",),
    "hang": ("HH AE NG",),
    "on": ("AA N", "AO N"),
    "one": ("W AH N",),
    "moment": ("M OW M AH N T",),
    "what": ("W AH T", "HH W AH T"),
    "that": ("DH AE T", "DH AH T"),
    "why": ("W AY", "HH W AY"),
    "how": ("HH AW",),
    "where": ("W EH R", "HH W EH R"),
    "when": ("W EH N", "HH W EH N"),
    "sorry": ("S AA R IY",),
    "excuse": ("IH K S K Y UW Z", "IH K S K Y UW S"),
    "me": ("M IY",),
    "pardon": ("P AA R D AH N",),
    "hey": ("HH EY",),
    "hello": ("HH AH L OW", "HH EH L OW"),
    "listen": ("L IH S AH N",),
    "cancel": ("K AE N S AH L",),
    "enough": ("IH N AH F", "IY N AH F"),
    "quiet": ("K W AY AH T",),
    "pause": ("P AO Z",),
    "repeat": ("R IH P IY T", "R IY P IY T"),
    "again": ("AH G EH N", "AH G EY N"),
    "help": ("HH EH L P",),
    "never": ("N EH V ER",),
    "mind": ("M AY N D",),
    "go": ("G OW",),
    "shut": ("SH AH T",),
    "thanks": ("TH AE NG K S",),
}
# Words the grammar has only as parts of a phrase that asks ("hold on", "hang on", "one moment",
# "excuse me", "never mind", "what's that"): on their own they ask for nothing, and a backchannel's
# tail or a hum is what a lone one mostly is ("uh-huh" heard as "that", "yeah" as "yeah that"). The
# phrase's other word ("hold", "moment", "excuse", "never", "what") is a request by itself.
PHRASE_PARTS = frozenset({"on", "one", "me", "mind", "that"})
# "uh-huh yeah mm" is a backchannel; five of them in a short sound were a longer word ("tomorrow").
MAX_WORDS = 3
_GRAMMAR = (
    "#JSGF V1.0;\ngrammar short;\npublic <utterance> = <word>+;\n<word> = "
    + " | ".join([*BACKCHANNELS, *INTERRUPTIONS])
    + ";\n"
)


# The beam the look's figures (docs/providers.md) were measured with; the main decoder's wider one
# is for its language model's search, and the grammar's few words have not been measured with it.
LOOK_BEAM = 1e-40


def decoder_config(base: dict[str, Any]) -> dict[str, Any]:
    """The main decoder's front end (same features), its own beam, no language model and no
    dictionary file: the words are added one by one."""
    return {**base, "beam": LOOK_BEAM, "lm": None, "dict": "/dev/null"}


class BackchannelLook:
    """The second look: one pocketsphinx decoder with the grammar above, used synchronously."""

    def __init__(self, decoder: Any) -> None:
        self._decoder = decoder

    @classmethod
    def create(cls, base_config: dict[str, Any]) -> BackchannelLook:
        """Blocking (a decoder's model is read from disk): call it from a thread at start-up."""
        from pocketsphinx import Decoder

        decoder = Decoder(**decoder_config(base_config))
        words = {**BACKCHANNELS, **INTERRUPTIONS}
        entries = [
            (w if i == 0 else f"{w}({i + 1})", p) for w, prons in words.items() for i, p in enumerate(prons)
        ]
        for k, (word, phones) in enumerate(entries):
            decoder.add_word(word, phones, k == len(entries) - 1)  # the search is rebuilt once, at the end
        decoder.add_jsgf_string("short", _GRAMMAR)
        decoder.activate_search("short")
        return cls(decoder)

    def hear(self, pcm: bytes, cmn: str) -> list[str]:
        """The words of the grammar in `pcm` (16 kHz s16, at the recognizer's speech level)."""
        decoder = self._decoder
        decoder.set_cmn(cmn)
        decoder.start_utt()
        try:
            decoder.process_raw(pcm, False, False)
        finally:
            decoder.end_utt()
        hyp = decoder.hyp()
        return hyp.hypstr.split() if hyp is not None else []


def only_backchannels(words: list[str]) -> bool:
    return 0 < len(words) <= MAX_WORDS and all(w in BACKCHANNELS for w in words)


def no_request(words: list[str]) -> bool:
    """A short sound that asks for nothing: a few words, none a request on its own (backchannels,
    hums and PHRASE_PARTS only). Its transcript is what it said: backchannels_of."""
    return 0 < len(words) <= MAX_WORDS and all(w in BACKCHANNELS or w in PHRASE_PARTS for w in words)


def backchannels_of(words: list[str]) -> str:
    """The backchannels and hums of what the look heard, the phrase parts left out: those are a
    backchannel's tail, not words the listener said."""
    return " ".join(w for w in words if w in BACKCHANNELS)
