"""The outbound track's own Opus encoding: speech encoded for real, steady silence reused."""

from __future__ import annotations

import av
import numpy as np
import pytest

from voice_agent.media.track import _SILENCE, FRAME_BYTES, SILENCE_WARMUP_FRAMES, OpusFrameEncoder, OpusPacket

TONE = (np.sin(np.arange(FRAME_BYTES // 2) / 4) * 12000).astype("<i2").tobytes()


def decode_all(packets: list[bytes]) -> np.ndarray:
    dec = av.CodecContext.create("libopus", "r")
    dec.format = "s16"
    dec.layout = "stereo"  # what browsers negotiate (opus/48000/2): mono packets must play
    dec.sample_rate = 48000
    out = []
    for data in packets:
        for frame in dec.decode(av.Packet(data)):  # type: ignore[attr-defined]
            out.append(frame.to_ndarray().reshape(-1))
    return np.concatenate(out)


def test_speech_round_trips_and_idle_silence_skips_the_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    enc = OpusFrameEncoder()
    encoded: list[bytes] = []
    real_encode = enc._encode

    def counting_encode(pcm: bytes, pts: int) -> OpusPacket | None:
        encoded.append(pcm)
        return real_encode(pcm, pts)

    monkeypatch.setattr(enc, "_encode", counting_encode)
    tone = (np.sin(np.arange(FRAME_BYTES // 2) / 4) * 12000).astype("<i2").tobytes()
    packets = [bytes(enc.encode(tone, i * 960)) for i in range(10)]
    assert len(encoded) == 10, "every speech frame goes through the encoder"
    silent = [bytes(enc.encode(_SILENCE, (10 + i) * 960)) for i in range(10)]
    assert encoded[10:] == [_SILENCE] * SILENCE_WARMUP_FRAMES, "only the warm-up silence is encoded"
    assert len(set(silent[SILENCE_WARMUP_FRAMES:])) == 1, "steady silence reuses one packet"
    steady = silent[SILENCE_WARMUP_FRAMES]
    assert silent[0] != steady, "the first silence after speech is encoded for real: the voice fades out"
    pcm = decode_all(packets + silent)
    speech, tail = pcm[: 10 * 1920], pcm[-5 * 1920 :]
    assert np.abs(speech[1920 * 3 :]).max() > 5000, "speech survives encoding"
    assert np.abs(tail).max() < 50, "silence decodes to silence"
    again = bytes(enc.encode(tone, 20 * 960))
    assert again not in silent and encoded[-1] == tone, "speech after silence is encoded for real"


async def test_pacing_holds_an_absolute_clock_and_reanchors_after_a_stall(monkeypatch: object) -> None:
    import voice_agent.media.track as output
    from voice_agent.media.track import AIGeneratedAudioTrack

    now = [100.0]

    async def fake_sleep(delay: float) -> None:
        now[0] += delay

    monkeypatch.setattr(output.asyncio, "sleep", fake_sleep)  # type: ignore[attr-defined]
    track = AIGeneratedAudioTrack("s", clock=lambda: now[0], count_metrics=False)
    for _ in range(251):
        await track.recv_pcm()
    assert abs(now[0] - (100.0 + 250 * 0.02)) < 1e-6, "5 s of frames take exactly 5 s: no drift"

    assert track.stalled_s == 0.0
    track.enqueue(1, 0, TONE * 50)  # a second of speech: a short hiccup in it is caught up
    now[0] += 0.05  # a 50 ms hiccup: the next frames catch up, then pacing resumes on the same grid
    for _ in range(10):
        await track.recv_pcm()
    assert abs(now[0] - (100.0 + 260 * 0.02)) < 1e-6
    assert track.late_resyncs == 0
    # Stalled time counts the hiccup once (about 30 ms past the 20 ms a frame may be late), not once
    # for every frame that came late while catching up.
    assert 0.025 <= track.stalled_s <= 0.05, track.stalled_s

    now[0] += 0.5  # a long stall: no burst of 25 frames, the stream skips to the present instead
    before, stalled, pts = now[0], track.stalled_s, track._pts
    await track.recv_pcm()
    assert track.late_resyncs == 1 and now[0] == before
    assert 0.45 <= track.stalled_s - stalled <= 0.5, "half a second stalled is half a second, not one frame"
    # Stamped with when it is sent (the slot of now), not 20 ms after the last frame: a receiver sees
    # a gap in the stream, not a frame 500 ms late.
    assert track._pts == 285 * 960 and track._pts - pts == 25 * 960
    await track.recv_pcm()
    assert abs(now[0] - (100.0 + 286 * 0.02)) < 1e-6, "after the skip, frames are paced on the same grid"
    assert track._pts == 286 * 960


async def test_silence_skips_to_the_present_at_its_first_late_frame_speech_only_when_far_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Catching up stamps frames late, and the browser's buffer grows to the worst lateness it saw:
    silence (a held reply's too) is never caught up, speech only within RESYNC_AFTER_S."""
    import voice_agent.media.track as output
    from voice_agent.media.track import RESYNC_AFTER_S, AIGeneratedAudioTrack

    now = [100.0]

    async def fake_sleep(delay: float) -> None:
        now[0] += delay

    monkeypatch.setattr(output.asyncio, "sleep", fake_sleep)
    track = AIGeneratedAudioTrack("s", clock=lambda: now[0], count_metrics=False)
    for _ in range(11):
        await track.recv_pcm()

    def late_by(seconds: float) -> None:
        """The next frame comes `seconds` after its slot."""
        now[0] = track._start + (track._pts + 960) / 48000 + seconds  # type: ignore[operator]

    late_by(0.03)  # silence, 30 ms late: the next frame takes the slot of now
    await track.recv_pcm()
    assert track.late_resyncs == 1 and track._pts == 12 * 960, "no silent frame is sent to catch up"

    track.enqueue(1, 0, TONE * 50)
    late_by(0.03)  # speech, as late: caught up, no gap in the words
    await track.recv_pcm()
    assert track.late_resyncs == 1 and track._pts == 13 * 960
    late_by(RESYNC_AFTER_S + 0.01)  # speech further behind than a browser's buffer holds: skipped
    await track.recv_pcm()
    assert track.late_resyncs == 2 and track._pts == 16 * 960

    track.hold(1)  # a held reply sends silence: it skips like silence
    late_by(0.03)
    await track.recv_pcm()
    assert track.late_resyncs == 3 and track._pts == 18 * 960


async def test_a_frame_that_slept_through_a_stall_is_stamped_with_when_it_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stall mostly comes while the track sleeps to its next slot: that frame is late too."""
    import voice_agent.media.track as output
    from voice_agent.media.track import AIGeneratedAudioTrack

    now, overshoot = [100.0], [0.0]

    async def fake_sleep(delay: float) -> None:
        now[0] += delay + overshoot[0]
        overshoot[0] = 0.0

    monkeypatch.setattr(output.asyncio, "sleep", fake_sleep)
    track = AIGeneratedAudioTrack("s", clock=lambda: now[0], count_metrics=False)
    for _ in range(11):
        await track.recv_pcm()
    assert track._pts == 10 * 960 and track.late_frames == 0
    overshoot[0] = 0.07  # the loop held for 70 ms while the next frame slept
    await track.recv_pcm()
    assert track.late_resyncs == 1 and track._pts == 14 * 960, "stamped at its slot of now, 14, not 11"
    assert abs(track.stalled_s - 0.07) < 1e-6


async def test_a_held_reply_resumes_at_the_exact_byte_it_paused_at(monkeypatch: pytest.MonkeyPatch) -> None:
    import voice_agent.media.track as output
    from voice_agent.media.track import AIGeneratedAudioTrack

    async def no_wait(delay: float) -> None:
        pass

    monkeypatch.setattr(output.asyncio, "sleep", no_wait)
    track = AIGeneratedAudioTrack("s", count_metrics=False, encode=False)
    played: list[tuple[int, int, int]] = []
    track.on_played = lambda turn, index, n: played.append((turn, index, n))
    # Samples that never repeat nearby (and are never 0), so a repeated or skipped byte shows; chunks
    # that are not whole frames, so the pause falls inside a chunk and a frame straddles two.
    speech = (np.arange(FRAME_BYTES * 7 // 2) % 30011 + 1).astype("<i2").tobytes()
    first, second = speech[: FRAME_BYTES * 5 + 300], speech[FRAME_BYTES * 5 + 300 :]
    track.enqueue(1, 0, first)
    track.enqueue(1, 1, second)

    heard = b"".join([await track.recv_pcm() for _ in range(3)])
    track.hold(1)
    assert track.held == 1
    before = list(played)
    for _ in range(10):
        assert await track.recv_pcm() == _SILENCE, "nothing of the reply plays while it is held"
    assert played == before, "held time counts as nothing played"
    track.resume(2)  # a resume of another turn changes nothing
    assert track.held == 1
    track.resume(1)
    while track.speaking:
        heard += await track.recv_pcm()
    sent = first + second
    assert heard[: len(sent)] == sent, "the reply plays on from the very byte where it paused"
    assert heard[len(sent) :] == bytes(len(heard) - len(sent)), "then silence pads the last frame"
    assert sum(n for _, _, n in played) == len(sent)


def test_a_rewind_gives_back_what_the_listener_lost_across_chunks_and_only_while_held() -> None:
    from voice_agent.media.track import REWIND_KEEP_BYTES, AIGeneratedAudioTrack

    track = AIGeneratedAudioTrack("s", count_metrics=False, encode=False)
    played: list[tuple[int, int, int]] = []
    track.on_played = lambda turn, index, n: played.append((turn, index, n))
    speech = (np.arange(FRAME_BYTES * 9 // 2) % 30011 + 1).astype("<i2").tobytes()
    cut = FRAME_BYTES * 2 + 300  # a chunk boundary inside the third frame
    track.enqueue(1, 0, speech[:cut])
    track.enqueue(1, 1, speech[cut:])
    sent = b"".join(track._take() for _ in range(4))
    assert sent == speech[: FRAME_BYTES * 4]

    assert track.rewind(1, FRAME_BYTES) == 0, "nothing steps back unless the turn is held"
    track.hold(1)
    assert track.rewind(2, FRAME_BYTES) == 0, "a late answer for another turn changes nothing"
    # 30 ms at 48 kHz: back over the chunk boundary, into the first sentence.
    assert track.rewind_ms(1, 30.0) == 2880
    track.resume(1)
    again = track._take()
    assert again == speech[FRAME_BYTES * 4 - 2880 : FRAME_BYTES * 5 - 2880], "plays on from the heard byte"
    by_index = {i: sum(n for _, j, n in played if j == i) for i in (0, 1)}
    assert by_index == {0: cut, 1: FRAME_BYTES * 5 - 2880 - cut}, "what was heard stays exact"

    track.hold(1)
    assert track.rewind(1, 10 * len(speech)) == FRAME_BYTES * 5 - 2880, "never before the turn's first byte"
    assert track.rewind(1, 3) == 0, "whole samples only, and nothing left to give back"
    track.interrupt(2)
    for index in range(3 * REWIND_KEEP_BYTES // FRAME_BYTES):
        track.enqueue(2, index, speech[:FRAME_BYTES])
    while track.speaking:
        track._take()
    track.hold(2)
    kept = track.rewind(2, REWIND_KEEP_BYTES * 3)
    assert REWIND_KEEP_BYTES <= kept <= REWIND_KEEP_BYTES + FRAME_BYTES, "it keeps about a second, no more"


def test_a_hold_ends_with_its_turn_and_never_pauses_the_next_one() -> None:
    from voice_agent.media.track import AIGeneratedAudioTrack

    track = AIGeneratedAudioTrack("s", count_metrics=False, encode=False)
    track.hold(1)
    track.interrupt(2)  # turn 1 ended (completed or cut)
    assert track.held is None
    track.hold(1)  # a late hold for the ended turn
    assert track.held is None
    track.enqueue(2, 0, b"\x01\x00" * 960)
    assert track._take() != _SILENCE
