"""Hold and resume over real WebRTC, as the listener hears it: a client with a playout buffer goes
silent at the agent's hold, says how much it had not played, and at the resume hears the story go on
from the very sample it last heard (docs/api.md, "Hold and resume")."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tests.support.procs import AgentProcess, running_agent
from tests.support.speech import synth
from tests.support.story import story_under_way
from voice_agent.media.audio import OUTPUT_RATE

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

# A browser-sized playout buffer: without the step back, the resumed story would skip this much.
PLAYOUT_MS = 120
# How far the resumed story may start from the last sample heard. Measured on loopback: it repeats
# about 15 ms, the decoder's fade into the agent's held silence, which the client counts as unheard.
TOLERANCE_MS = 25
LOUD = 1000  # a sample this far from zero is speech, not Opus's decoded silence
TEMPLATE_S = 0.3  # at most this much of the resumed story is compared


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    with running_agent(tmp_path_factory.mktemp("agent")) as proc:
        yield proc


def first_loud(pcm: np.ndarray, start: int) -> int:
    loud = np.flatnonzero(np.abs(pcm[start:].astype(np.int32)) > LOUD)
    assert loud.size, "no speech after the given sample"
    return start + int(loud[0])


def quiet_from(pcm: np.ndarray, start: int) -> int:
    """The first sample from `start` on that begins 40 ms without a loud one: the agent's held silence."""
    loud = np.flatnonzero(np.abs(pcm[start:].astype(np.int32)) > LOUD) + start
    gaps = np.flatnonzero(np.diff(loud) > OUTPUT_RATE // 25)
    return int(loud[gaps[0]] + 1) if gaps.size else int(loud[-1] + 1) if loud.size else start


def best_match(template: np.ndarray, within: np.ndarray) -> tuple[int, float]:
    """Where `template` fits best in `within`, and how well (normalized correlation, 1 = the same)."""
    t = template.astype(np.float64)
    w = within.astype(np.float64)
    n = len(t)
    size = 1 << int(np.ceil(np.log2(len(w) + n)))
    corr = np.fft.irfft(np.fft.rfft(w, size) * np.conj(np.fft.rfft(t, size)), size)[: len(w) - n + 1]
    energy = np.convolve(w * w, np.ones(n), "valid")
    score = corr / (np.sqrt(energy * float(t @ t)) + 1e-9)
    at = int(np.argmax(score))
    return at, float(score[at])


async def test_a_resumed_story_plays_on_from_the_last_sample_the_listener_heard(agent: AgentProcess) -> None:
    async with story_under_way(agent, jitter_frames=0, playout_ms=PLAYOUT_MS) as (client, _):
        client.say(*synth("okay"))
        held = await client.wait_for(lambda e: e["type"] == "playback" and e["state"] == "held", timeout=15)
        resumed = await client.wait_for(
            lambda e: e["type"] == "playback" and e["state"] == "resumed" and e["turn"] == held["turn"],
            timeout=15,
        )
        await client.wait_voiced(40, after=resumed["_at"], timeout=15)

    pcm, times = client.recording.playout()
    heard = client.heard(times)
    muted_at = int(np.searchsorted(times, held["_at"]))
    unmuted_at = int(np.searchsorted(times, resumed["_at"]))
    assert not heard[muted_at:unmuted_at].any(), "nothing plays while the agent holds"
    assert heard[:muted_at].all() and heard[unmuted_at:].all()

    # The listener last heard sample muted_at - 1: the story's next sound after it must come next.
    expected = first_loud(pcm, muted_at)
    # What arrived of the story after the mute, up to the agent's held silence: it was never heard,
    # and the resumed story must start with it (compared on that stretch only: beyond it, the story
    # never arrived before the hold).
    held_silence = quiet_from(pcm, expected)
    assert held_silence < unmuted_at, "the agent went silent during the hold"
    span = min(held_silence - expected, int(TEMPLATE_S * OUTPUT_RATE))
    assert span >= OUTPUT_RATE // 50, "some of the story arrived after the mute (the playout buffer)"
    post = first_loud(pcm, unmuted_at)
    search_from = max(0, muted_at - OUTPUT_RATE)
    at, score = best_match(pcm[post : post + span], pcm[search_from:held_silence])
    assert score > 0.8, f"the resumed audio is the story again (correlation {score:.2f})"
    off_ms = (search_from + at - expected) / OUTPUT_RATE * 1000
    assert abs(off_ms) <= TOLERANCE_MS, (
        f"resumed {off_ms:+.1f} ms from the last sample heard (+ skips, - repeats)"
    )
