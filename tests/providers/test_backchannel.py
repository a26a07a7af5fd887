"""The offline recognizer's second look at a short sound over a reply: a backchannel its language
model turned into other words ("uh-huh" -> "the flood") is heard as the backchannel, while a word
that asks for something stays what the recognizer heard; the look runs only where a decision needs
its words. Real speech (flite voices), real decoders."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench import voices
from voice_agent.pipeline.frames import ClassifyUtteranceFrame, UserStartedSpeakingFrame
from voice_agent.pipeline.processor import DOWNSTREAM, UPSTREAM
from voice_agent.pipeline.stt import STTProcessor
from voice_agent.providers import local_stt
from voice_agent.providers.backchannel import (
    BACKCHANNELS,
    INTERRUPTIONS,
    BackchannelAware,
    BackchannelLook,
    backchannels_of,
    no_request,
    only_backchannels,
)
from voice_agent.providers.local_stt import PocketSphinxSTT, apply_gain, slice_powers, speech_level_dbfs

FRAME = 640  # 20 ms at 16 kHz


def said(text: str, voice: str) -> bytes:
    """As the agent decodes it: the pre-roll's quiet first, at the recognizer's speech level."""
    pcm = voices.concat(voices.silence(300), voices.speak(text, voice), voices.silence(300))
    level = speech_level_dbfs(slice_powers(pcm))
    assert level is not None
    return apply_gain(pcm, 10 ** ((local_stt.TARGET_DBFS - level) / 20))


@pytest.fixture(scope="module")
def look() -> BackchannelLook:
    return BackchannelLook.create(local_stt.DECODER_CONFIG)


@pytest.mark.parametrize(
    ("text", "voice"),
    [("uh-huh", "slt"), ("uh-huh", "rms"), ("uh-huh", "awb"), ("yeah", "kal16"), ("okay", "awb")],
)
def test_a_backchannel_is_heard_as_one(look: BackchannelLook, text: str, voice: str) -> None:
    heard = look.hear(said(text, voice), local_stt.CMN_INIT)
    assert only_backchannels(heard), heard


@pytest.mark.parametrize(
    ("text", "voice"),
    [
        ("stop", "slt"),
        ("stop", "rms"),
        ("wait", "kal16"),
        ("no", "awb"),
        ("hold on", "rms"),
        ("excuse me", "slt"),
    ],
)
def test_a_word_that_asks_for_something_is_not_a_backchannel(
    look: BackchannelLook, text: str, voice: str
) -> None:
    heard = look.hear(said(text, voice), local_stt.CMN_INIT)
    assert heard and not only_backchannels(heard), heard


def test_silence_is_no_backchannel(look: BackchannelLook) -> None:
    assert not only_backchannels(look.hear(voices.silence(500), local_stt.CMN_INIT))


async def transcribe(stt: PocketSphinxSTT, pcm: bytes, during_reply: bool) -> tuple[str, list[str]]:
    interims: list[str] = []
    stream = await stt.open_stream(interims.append, {"level_dbfs": local_stt.TARGET_DBFS})
    if during_reply:
        stream.during_reply()
    for i in range(0, len(pcm), FRAME):
        await stream.send(pcm[i : i + FRAME])
        await asyncio.sleep(0)
    return await stream.finish(), interims


@pytest.fixture
async def stt() -> PocketSphinxSTT:
    stt = PocketSphinxSTT(decoders=1)
    await stt.start()
    return stt


async def test_only_an_utterance_during_a_reply_gets_the_second_look(stt: PocketSphinxSTT) -> None:
    pcm = said("uh-huh", "rms")
    alone, _ = await transcribe(stt, pcm, during_reply=False)
    assert alone and not set(alone.split()) <= set(BACKCHANNELS), "the language model's words, as ever"
    over, _ = await transcribe(stt, pcm, during_reply=True)
    assert over and set(over.split()) <= set(BACKCHANNELS), over


async def test_words_and_long_sounds_keep_the_main_transcript(stt: PocketSphinxSTT) -> None:
    for text in ("stop", "what time is it"):
        pcm = said(text, "rms")
        assert (await transcribe(stt, pcm, True))[0] == (await transcribe(stt, pcm, False))[0]
    # Longer than a backchannel: not looked at again, whatever it holds.
    long = voices.concat(*(said("uh-huh", "rms") for _ in range(3)))
    assert local_stt.active_span_ms(slice_powers(long)) > local_stt.BACKCHANNEL_MAX_MS
    assert (await transcribe(stt, long, True))[0] == (await transcribe(stt, long, False))[0]


class Counted:
    """The process's look, counting its decodes."""

    def __init__(self, look: BackchannelLook) -> None:
        self.look = look
        self.decodes = 0

    def hear(self, pcm: bytes, cmn: str) -> list[str]:
        self.decodes += 1
        return self.look.hear(pcm, cmn)


async def test_a_short_sound_over_a_reply_is_looked_at_only_when_its_words_are_asked_for(
    stt: PocketSphinxSTT,
) -> None:
    """No hypotheses while it is short (the language model's would be "the flood", and the barge-in
    gate cuts on a word heard in two running); at the pause the look's words, and the final
    transcript of the same audio is that look's, not a second decode."""
    assert stt._look is not None
    counted = Counted(stt._look)
    stt._look = counted  # type: ignore[assignment]
    interims: list[str] = []
    stream = await stt.open_stream(interims.append, {"level_dbfs": local_stt.TARGET_DBFS})
    stream.during_reply()
    pcm = voices.concat(said("uh-huh", "rms"), voices.silence(400))
    for i in range(0, len(pcm), FRAME):
        await stream.send(pcm[i : i + FRAME])
        await asyncio.sleep(0)
    assert interims == [] and counted.decodes == 0
    at_pause = stream.partial()
    assert at_pause is not None and only_backchannels(at_pause.split()), at_pause
    assert await stream.finish() == at_pause
    assert counted.decodes == 1


async def test_a_long_sound_over_a_reply_has_the_main_decoders_hypotheses(stt: PocketSphinxSTT) -> None:
    long = voices.concat(said("what time is it", "rms"), said("what time is it", "slt"))
    _, interims = await transcribe(stt, long, during_reply=True)
    assert interims and "time" in interims[-1].split(), interims


@pytest.mark.parametrize(
    ("heard", "asks"),
    [
        (["that"], False),  # a lone phrase part: "uh-huh" as one voice said it
        (["yeah", "that"], False),  # a backchannel's tail
        (["uh-huh", "on", "mm"], False),
        (["hold", "on"], True),
        (["excuse", "me"], True),
        (["what", "that"], True),
        (["one", "moment"], True),
        (["wait"], True),
        (["uh", "stop"], True),
        ([], True),  # nothing heard: no sound to drop, the main decoder says what it was
        (["yeah", "uh", "mm", "that"], True),  # too many for a backchannel: a longer word
    ],
)
def test_no_request_is_backchannels_hums_and_phrase_parts_alone(heard: list[str], asks: bool) -> None:
    assert no_request(heard) is not asks
    assert set(INTERRUPTIONS) >= {w for w in heard if w not in BACKCHANNELS}, "words of the grammar"


def test_the_transcript_of_no_request_is_its_backchannels() -> None:
    assert backchannels_of(["yeah", "that"]) == "yeah"
    assert backchannels_of(["that"]) == ""


async def test_a_backchannel_heard_with_a_phrase_parts_tail_is_no_turn(stt: PocketSphinxSTT) -> None:
    """rms's "yeah" ends in what the grammar hears as "that": still a backchannel, not the main
    decoder's "you have"."""
    heard, _ = await transcribe(stt, said("yeah", "rms"), during_reply=True)
    assert heard and set(heard.split()) <= set(BACKCHANNELS), heard


class Stream:
    """A stream that can be told its utterance began during a reply."""

    def __init__(self) -> None:
        self.told = False

    def during_reply(self) -> None:
        self.told = True

    async def aclose(self) -> None:
        return None


class Provider:
    name = "fake"
    sample_rate = 16000

    def __init__(self) -> None:
        self.streams: list[Stream] = []

    async def open_stream(self, on_interim: Any, state: dict[str, Any], on_endpoint: Any = None) -> Stream:
        self.streams.append(Stream())
        return self.streams[-1]

    async def release(self, state: dict[str, Any]) -> None:
        return None


async def test_the_stt_stage_tells_the_stream_when_the_gate_classifies_its_utterance() -> None:
    provider = Provider()
    stage = STTProcessor(provider)  # type: ignore[arg-type]
    await stage.on_system(UserStartedSpeakingFrame(at=0.0), DOWNSTREAM)
    await stage.on_system(UserStartedSpeakingFrame(at=1.0), DOWNSTREAM)
    assert isinstance(provider.streams[1], BackchannelAware)
    await stage.on_system(ClassifyUtteranceFrame(2), UPSTREAM)
    assert [s.told for s in provider.streams] == [False, True], "only the utterance under way"


async def test_the_look_hears_the_sound_at_its_own_level_not_the_sessions(stt: PocketSphinxSTT) -> None:
    """The session's level is its last speaker's: a quieter listener's backchannel is still one."""
    quieter = apply_gain(said("uh-huh", "rms"), 10 ** (-8 / 20))
    heard, _ = await transcribe(stt, quieter, during_reply=True)
    assert heard and set(heard.split()) <= set(BACKCHANNELS), heard
