"""The Python client's speech across a move (docs/deploy.md, "Rolling a pool"): held from the notice,
carried on to the new peer connection's track with the moment before the notice said again; nothing
said twice when only the socket moved or when media is renegotiated without a move."""

from __future__ import annotations

import time

import numpy as np

from voice_agent.media.audio import OUTPUT_RATE
from voice_agent.media.track import AIGeneratedAudioTrack
from voice_agent.protocol.signaling import ErrorCode
from voice_agent.testing.client import MOVE_REPLAY_S, VoiceClient

FRAME_SAMPLES = OUTPUT_RATE // 50


def numbered(first: int, count: int) -> bytes:
    """`count` 20 ms frames, each of one sample value: `first`, `first + 1`, ..."""
    return b"".join(np.full(FRAME_SAMPLES, first + i, dtype="<i2").tobytes() for i in range(count))


async def sent(track: AIGeneratedAudioTrack, frames: int) -> list[int]:
    """The numbers of the next `frames` frames the track sends (0: silence)."""
    return [int(np.frombuffer(await track.recv_pcm(), dtype="<i2")[0]) for _ in range(frames)]


def client() -> VoiceClient:
    return VoiceClient("http://127.0.0.1:9", resume=True, record=False)


def moved(c: VoiceClient, at: float) -> None:
    c._follow({"type": "error", "code": ErrorCode.SESSION_MOVED, "_at": at})


async def test_speech_during_a_move_goes_to_the_new_track_with_the_moment_before_the_notice() -> None:
    c = client()
    first = c.say(numbered(1, 6), OUTPUT_RATE)
    old = c.speaker
    assert await sent(old, 3) == [1, 2, 3]
    moved(c, time.monotonic())  # within MOVE_REPLAY_S of all three
    assert await sent(old, 2) == [0, 0], "held: the old agent no longer listens"
    second = c.say(numbered(7, 2), OUTPUT_RATE)  # said during the move
    assert await sent(old, 1) == [0]
    assert c.speech_started(second) is None

    c._carry_speech()
    new = c.speaker
    assert old.readyState == "ended" and new is not old
    assert await sent(new, 8) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert await sent(new, 1) == [0]
    # Each utterance ended when the agent that took the call heard its last frame.
    ended = [await c.speech_ended(uid, timeout=1) for uid in (first, second)]
    assert ended[0] <= ended[1] <= time.monotonic()


async def test_only_the_moment_before_the_notice_is_said_again() -> None:
    c = client()
    c.say(numbered(1, 6), OUTPUT_RATE)
    assert await sent(c.speaker, 3) == [1, 2, 3]
    # The notice came long after these frames went out: the old agent had them.
    moved(c, time.monotonic() + 10 * MOVE_REPLAY_S)
    c._carry_speech()
    new = c.speaker
    assert await sent(new, 4) == [4, 5, 6, 0]


async def test_an_utterance_sent_in_full_before_the_window_is_not_said_again() -> None:
    c = client()
    uid = c.say(numbered(1, 2), OUTPUT_RATE)
    assert await sent(c.speaker, 3) == [1, 2, 0]
    await c.speech_ended(uid, timeout=1)
    moved(c, time.monotonic() + 10 * MOVE_REPLAY_S)
    c._carry_speech()
    new = c.speaker
    assert not new.speaking
    c.say(numbered(3, 1), OUTPUT_RATE)
    assert await sent(new, 2) == [3, 0]


async def test_when_only_the_socket_moved_the_same_track_plays_on_and_repeats_nothing() -> None:
    """A relayed socket handed off: the agent running the call and its media listened throughout."""
    c = client()
    c.say(numbered(1, 4), OUTPUT_RATE)
    track = c.speaker
    assert await sent(track, 2) == [1, 2]
    moved(c, time.monotonic())
    assert await sent(track, 1) == [0]
    c._release_speech()
    assert c.speaker is track and await sent(track, 3) == [3, 4, 0]


async def test_a_renegotiation_without_a_move_carries_what_was_not_sent() -> None:
    """A stalled media path renegotiated: what was queued goes to the new peer, none of it twice."""
    c = client()
    c.say(numbered(1, 4), OUTPUT_RATE)
    assert await sent(c.speaker, 2) == [1, 2]
    c._carry_speech()
    new = c.speaker
    assert await sent(new, 3) == [3, 4, 0]


async def test_a_1012_close_holds_the_speech_and_a_dropped_socket_does_not() -> None:
    c = client()
    try:
        c._dropped = True
        c._closed(None)  # the client's own drop of a dead socket: no move
        assert c.speaker.held is None
        c._closed(1012)
        assert c.speaker.held is not None
    finally:
        await c.close()


async def test_a_client_that_does_not_follow_the_agent_never_holds() -> None:
    c = VoiceClient("http://127.0.0.1:9", record=False)
    c._closed(1012)
    assert c.speaker.held is None
