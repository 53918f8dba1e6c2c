"""The circuit breaker: per-round-trip counting, cooldown, trial, and a log line each way."""

from __future__ import annotations

import logging

import pytest

from fastapi_authgate.ratelimit.breaker import CircuitBreaker


class Failure(Exception):
    def __init__(self, round_trip: int | None = None) -> None:
        super().__init__("down")
        self.round_trip = round_trip


def test_opens_after_consecutive_round_trips_and_closes_on_success(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    breaker = CircuitBreaker(failures=3, cooldown=2.0, monotonic=lambda: now[0])
    caplog.set_level(logging.WARNING)
    for _ in range(50):  # fifty decisions of one round trip count once
        breaker.failure("S", Failure(round_trip=1), reason="r", action="a")
    breaker.failure("S", Failure(round_trip=2), reason="r", action="a")
    assert not breaker.is_open and breaker.allows()
    breaker.success("S")  # a success in between resets the count
    for trip in (3, 4):
        breaker.failure("S", Failure(round_trip=trip), reason="r", action="a")
    assert not breaker.is_open
    breaker.failure("S", Failure(), reason="timeout", action="enforcing in process")
    assert breaker.is_open and not breaker.allows() and breaker.switches == 1
    assert "after 3 consecutive failed round trips (last: timeout)" in caplog.text
    now[0] += 2.0
    assert breaker.allows()  # the cooldown is over: a trial may go
    breaker.failure("S", Failure(round_trip=9), reason="r", action="a")
    assert breaker.is_open and not breaker.allows()  # the trial failed: another cooldown
    assert breaker.switches == 1
    now[0] += 2.5
    assert breaker.allows()
    breaker.success("S")
    assert not breaker.is_open and breaker.switches == 2
    assert "answers again after 4.5 s" in caplog.text
