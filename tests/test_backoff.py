"""The one back-off (``_http/backoff.py``) that every layer waits with after a failure."""

from __future__ import annotations

import random

import pytest

from airflow_monid._http.backoff import POLL_ERROR_CAP, Backoff, worth_logging
from airflow_monid._http.policy import RetryPolicy


def test_delays_double_from_the_base_up_to_the_cap() -> None:
    assert [Backoff(base=1.0, cap=10.0).delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_a_servers_retry_after_wins_and_is_capped_when_asked() -> None:
    assert Backoff(base=1.0, cap=10.0).delay(1, retry_after=42.0) == 42.0
    assert Backoff(base=1.0, cap=10.0, retry_after_cap=30.0).delay(1, retry_after=42.0) == 30.0


def test_jitter_stays_within_half_and_all_of_the_delay() -> None:
    random.seed(20)
    delays = [Backoff(base=1.0, cap=8.0, jitter=True).delay(4) for _ in range(200)]
    assert min(delays) >= 4.0 and max(delays) <= 8.0 and len(set(delays)) > 100


def test_polling_backs_off_from_twice_the_interval_to_a_minute_never_below_the_interval() -> None:
    assert [Backoff.for_polling(5.0).delay(n) for n in (1, 2, 3, 4)] == [10.0, 20.0, 40.0, POLL_ERROR_CAP]
    assert Backoff.for_polling(120.0).delay(1) == 120.0  # a slow poll is never made faster by a failure


def test_the_request_core_uses_it_with_jitter() -> None:
    random.seed(3)
    policy = RetryPolicy(backoff_base=0.5, backoff_max=30.0)
    assert all(1.0 <= policy.backoff(3) <= 2.0 for _ in range(50))
    assert all(15.0 <= policy.backoff(9) <= 30.0 for _ in range(50))


@pytest.mark.parametrize(("failures", "logged"), [(0, False), (1, True), (2, True), (3, False), (4, True), (6, False)])
def test_only_the_first_second_fourth_eighth_failure_is_logged(failures: int, logged: bool) -> None:
    assert worth_logging(failures) is logged
