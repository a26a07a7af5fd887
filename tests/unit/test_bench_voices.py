"""The evaluations' test speech: every voice speaks, the cache returns the same audio, noises are
the shapes the turn-taking evaluation relies on, and bad requests are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import webrtcvad

from bench import voices


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(voices, "CACHE", tmp_path / "cache")


@pytest.mark.parametrize("voice", ["slt", "awb", "joe"])
def test_each_voice_speaks_16k_and_is_cached(voice: str) -> None:
    pcm = voices.speak("what time is it", voice)
    seconds = len(pcm) / (2 * voices.RATE)
    assert 0.6 < seconds < 3.0
    assert voices.speak("what time is it", voice) == pcm
    assert len(list((voices.CACHE / voice).glob("*.pcm"))) == 1
    assert (voices.CACHE / ".gitignore").read_text() == "*\n"


def test_bad_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown voice"):
        voices.speak("hello", "nobody")
    with pytest.raises(ValueError, match="empty"):
        voices.speak("  ", "slt")
    with pytest.raises(ValueError):
        voices.silence(-1)
    with pytest.raises(ValueError, match="odd"):
        voices.concat(b"\0\0", b"\0")
    with pytest.raises(ValueError):
        voices.cough(10)
    with pytest.raises(ValueError):
        voices.click(100)


def test_silence_and_concat_keep_the_timeline() -> None:
    assert voices.silence(20) == bytes(640)
    assert voices.concat(voices.silence(20), voices.click(8), voices.silence(10)) == (
        bytes(640) + voices.click(8) + bytes(320)
    )


def voiced_frames(pcm: bytes) -> int:
    vad = webrtcvad.Vad(3)
    return sum(vad.is_speech(pcm[i : i + 640], voices.RATE) for i in range(0, len(pcm) - 639, 640))


def test_cough_is_a_loud_voiced_looking_burst() -> None:
    burst = voices.cough(300)
    assert len(burst) == 300 * 32
    assert voiced_frames(burst) >= 5  # the VAD takes it for sound worth a look
    assert voices.cough(300, seed=1) != burst
    assert voices.cough(300) == burst  # deterministic per seed


def test_click_is_short_and_decays() -> None:
    tick = np.frombuffer(voices.click(8), "<i2").astype(np.float64)
    assert tick.size == 8 * 16
    head, tail = np.abs(tick[:16]).max(), np.abs(tick[-16:]).max()
    assert tail < head / 10
