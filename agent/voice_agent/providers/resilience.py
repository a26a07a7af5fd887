"""What every cloud adapter shares: failure kinds, bounded retry with jitter, per-chunk timeouts
and per-provider metrics.

Each adapter translates its SDK's exceptions into a `Failure` in one place; what happens next
(retry or not, the error code the client sees, the metrics) is decided here, so the three
providers behave alike. Client-facing messages are built from the failure kind only, never from
SDK exception text: some SDK errors carry the request headers, and those hold the API key. For the
same reason SDK exceptions are never chained (`from None`) into what may be logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from voice_agent.providers.base import ProviderError
from voice_agent.telemetry import metrics

T = TypeVar("T")

FailureKind = Literal["auth", "rate_limited", "timeout", "unavailable", "rejected", "dropped", "bad_response"]

_MESSAGES: dict[str, str] = {
    "auth": "rejected the API key",
    "rate_limited": "is rate limiting requests",
    "timeout": "did not answer in time",
    "unavailable": "is unreachable or failing",
    "rejected": "rejected the request",
    "dropped": "dropped the connection mid-stream",
    "bad_response": "sent a malformed response",
}
RETRYABLE: frozenset[str] = frozenset({"rate_limited", "unavailable"})

# httpx drops idle connections after 5 s by default; turns of a conversation are further apart
# than that, so every reply would pay a new TCP + TLS handshake (50-150 ms to a cloud API). A
# connection the server closed meanwhile is noticed before reuse, or fails fast and is retried.
KEEPALIVE_EXPIRY_S = 120.0


def http_limits() -> Any:
    import httpx

    return httpx.Limits(
        max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEPALIVE_EXPIRY_S
    )


class Failure(Exception):
    """An upstream failure, already classified; carries nothing from the request."""

    def __init__(
        self, kind: FailureKind, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(kind if status is None else f"{kind} (HTTP {status})")
        self.kind: FailureKind = kind
        self.status = status
        self.retry_after = retry_after


def failure_from_status(status: int, retry_after: str | None = None) -> Failure:
    if status in (401, 403):
        return Failure("auth", status)
    if status == 429:
        return Failure("rate_limited", status, parse_retry_after(retry_after))
    if status >= 500 or status == 408:
        return Failure("unavailable", status, parse_retry_after(retry_after))
    return Failure("rejected", status)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class CallPolicy:
    """How every provider request is bounded: the wait for each next result, and retries.

    Retries are for rate limits and outages, before the first result only. A Retry-After longer
    than `max_wait_s` is not waited for: a caller on a live call is better served by an error (or
    the offline fallback) now than by an answer in half a minute.
    """

    max_retries: int = 2
    max_wait_s: float = 4.0
    base_s: float = 0.2
    timeout_s: float = 10.0

    def delay(
        self, attempt: int, failure: Failure, rand: Callable[[], float] = random.random
    ) -> float | None:
        """Seconds to wait before retry number `attempt + 1`, or None to give up."""
        if failure.kind not in RETRYABLE or attempt >= self.max_retries:
            return None
        if failure.retry_after is not None:
            if failure.retry_after > self.max_wait_s:
                return None
            # Jitter on top, so clients told the same Retry-After do not come back in lockstep.
            return failure.retry_after + rand() * self.base_s
        backoff: float = min(self.max_wait_s, self.base_s * 2.0**attempt)
        return backoff * (0.5 + rand() / 2)


class Request:
    """One upstream request: in-flight gauge, first-result and total latency."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._t = telemetry
        self.started = time.monotonic()
        self._first_seen = False

    def first_result(self) -> None:
        if not self._first_seen:
            self._first_seen = True
            self._t.observe("first", time.monotonic() - self.started)


class Telemetry:
    """Metrics and error construction for one provider in one stage (labels fixed at build)."""

    def __init__(self, provider: str, stage: str) -> None:
        self.provider = provider
        self.stage = stage
        self._in_flight = metrics.PROVIDER_IN_FLIGHT.labels(provider, stage)
        self._retries = metrics.PROVIDER_RETRIES.labels(provider, stage)

    def observe(self, phase: str, seconds: float) -> None:
        metrics.PROVIDER_LATENCY.labels(self.provider, self.stage, phase).observe(seconds)

    @contextlib.contextmanager
    def request(self) -> Iterator[Request]:
        req = Request(self)
        self._in_flight.inc()
        try:
            yield req
        finally:
            self._in_flight.dec()
            self.observe("total", time.monotonic() - req.started)

    def retried(self) -> None:
        self._retries.inc()

    def error(self, failure: Failure) -> ProviderError:
        metrics.PROVIDER_ERRORS.labels(self.provider, self.stage, failure.kind).inc()
        status = f" (HTTP {failure.status})" if failure.status else ""
        message = f"{self.provider} {_MESSAGES[failure.kind]}{status}"
        return ProviderError(self.provider, f"{self.stage}_{failure.kind}", message)


Classifier = Callable[[Exception], Failure]


async def next_item(upstream: AsyncIterator[T], timeout_s: float, classify: Classifier, started: bool) -> T:
    """The next item within `timeout_s`; a failure after the first item counts as a drop."""
    try:
        async with asyncio.timeout(timeout_s):
            return await anext(upstream)
    except (StopAsyncIteration, asyncio.CancelledError, Failure):
        raise
    except TimeoutError:
        raise Failure("timeout") from None
    except Exception as exc:
        failure = classify(exc)
        if started and failure.kind == "unavailable":
            failure = Failure("dropped", failure.status)
        raise failure from None


async def close_quietly(upstream: AsyncIterator[T]) -> None:
    aclose = getattr(upstream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


async def resilient_stream(
    telemetry: Telemetry,
    policy: CallPolicy,
    open_upstream: Callable[[], AsyncIterator[T]],
    classify: Classifier,
) -> AsyncGenerator[T, None]:
    """Items of `open_upstream()`, retried (per policy) until the first item arrives.

    Closing this generator closes the upstream one at once, which is what makes barge-in free
    the HTTP stream instead of letting the provider run the request to its end.
    """
    with telemetry.request() as req:
        attempt = 0
        while True:
            upstream = open_upstream()
            try:
                first = await next_item(upstream, policy.timeout_s, classify, started=False)
                break
            except StopAsyncIteration:
                await close_quietly(upstream)
                return
            except Failure as failure:
                await close_quietly(upstream)
                delay = policy.delay(attempt, failure)
                if delay is None:
                    raise telemetry.error(failure) from None
                telemetry.retried()
                attempt += 1
                await asyncio.sleep(delay)
            except BaseException:
                await close_quietly(upstream)
                raise
        req.first_result()
        try:
            yield first
            while True:
                try:
                    item = await next_item(upstream, policy.timeout_s, classify, started=True)
                except StopAsyncIteration:
                    return
                except Failure as failure:
                    raise telemetry.error(failure) from None
                yield item
        finally:
            await close_quietly(upstream)
