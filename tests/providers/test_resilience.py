"""Retry policy and failure classification shared by the three adapters (pure functions)."""

from __future__ import annotations

import email.utils

import pytest

from voice_agent.providers.resilience import CallPolicy, Failure, failure_from_status, parse_retry_after


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, "auth"), (403, "auth"), (429, "rate_limited"), (500, "unavailable"), (503, "unavailable"),
     (408, "unavailable"), (400, "rejected"), (404, "rejected"), (422, "rejected")],
)  # fmt: skip
def test_status_kinds(status: int, kind: str) -> None:
    assert failure_from_status(status).kind == kind


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == pytest.approx(30.0)


def test_policy_honours_retry_after_with_jitter_on_top() -> None:
    policy = CallPolicy(max_retries=2, max_wait_s=4.0, base_s=0.2)
    limited = Failure("rate_limited", 429, retry_after=1.0)
    assert policy.delay(0, limited, rand=lambda: 0.0) == 1.0
    assert policy.delay(0, limited, rand=lambda: 1.0) == pytest.approx(1.2)


def test_policy_backoff_is_jittered_and_capped() -> None:
    policy = CallPolicy(max_retries=10, max_wait_s=1.0, base_s=0.2)
    down = Failure("unavailable", 503)
    assert policy.delay(0, down, rand=lambda: 0.0) == pytest.approx(0.1)
    assert policy.delay(0, down, rand=lambda: 1.0) == pytest.approx(0.2)
    assert policy.delay(8, down, rand=lambda: 1.0) == pytest.approx(1.0)


def test_policy_gives_up() -> None:
    policy = CallPolicy(max_retries=2, max_wait_s=4.0)
    assert policy.delay(2, Failure("unavailable")) is None  # bounded
    assert policy.delay(0, Failure("rate_limited", 429, retry_after=30)) is None  # too long to wait
    for kind in ("auth", "timeout", "rejected", "dropped", "bad_response"):
        assert policy.delay(0, Failure(kind)) is None  # type: ignore[arg-type]
