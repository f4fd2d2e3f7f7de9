"""The one wait policy with a controllable clock: the deadline is exact, in the triggerer and on the worker.

A fake clock advances only when the code sleeps, so the number of polls is exact: a loop that kept
polling past its deadline (by 5 s, or by one interval) makes these tests fail.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from airflow_monid._runtime import waiting as _waiting
from airflow_monid._runtime.waiting import Waiter, await_terminal, wait_on_worker
from airflow_monid.exceptions import PermanentAPIError, TransientAPIError
from airflow_monid.testing import Emulator
from airflow_monid.triggers.monid import MonidRunTrigger
from tests._support import monid_conn

log = logging.getLogger(__name__)


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The waiters' clock (not the standard library's): what a trigger builds inside reads it too."""
    fake = Clock()
    monkeypatch.setattr(_waiting, "SYSTEM_CLOCK", fake)
    return fake


def test_worker_wait_polls_until_exactly_the_deadline(clock: Clock) -> None:
    polls: list[float] = []

    def fetch() -> str:
        polls.append(clock.now)
        return "RUNNING"

    waiter = Waiter(end_time=clock.now + 1.0, poll_interval=0.25, label="run r", log=log, clock=clock)
    assert wait_on_worker(fetch, lambda s: (False, s), waiter) is None
    assert polls == [1000.25, 1000.5, 1000.75, 1001.0]  # the last look is at the deadline, none after
    assert clock.now == 1001.0


async def test_trigger_wait_polls_until_exactly_the_deadline(clock: Clock) -> None:
    polls: list[float] = []

    async def fetch() -> str:
        polls.append(clock.now)
        return "RUNNING"

    waiter = Waiter(end_time=clock.now + 1.0, poll_interval=0.25, label="run r", log=log, clock=clock)
    assert await await_terminal(fetch, lambda s: (False, s), waiter) is None
    assert polls == [1000.0, 1000.25, 1000.5, 1000.75, 1001.0]
    assert "last seen: RUNNING" in waiter.timeout_message()


async def test_transient_errors_back_off_and_name_the_last_one_at_the_deadline(clock: Clock) -> None:
    async def fetch() -> str:
        raise TransientAPIError(api="Monid API", method="GET", path="/v1/runs/r", status_code=503, message="busy")

    waiter = Waiter(end_time=clock.now + 100.0, poll_interval=5.0, label="run r", log=log, clock=clock)
    assert await await_terminal(fetch, lambda s: (False, s), waiter) is None
    assert clock.sleeps[:3] == [10.0, 20.0, 40.0]  # doubling, capped at 60 s, never past the deadline
    assert max(clock.sleeps) <= 60.0 and clock.now == 1100.0
    assert "last error: TransientAPIError" in waiter.timeout_message() and "HTTP 503" in waiter.timeout_message()


async def test_a_permanent_error_ends_the_wait_at_once(clock: Clock) -> None:
    calls = 0

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        raise PermanentAPIError(api="Monid API", method="GET", path="/v1/runs/r", status_code=401, message="no")

    waiter = Waiter(end_time=clock.now + 100.0, poll_interval=5.0, label="run r", log=log, clock=clock)
    with pytest.raises(PermanentAPIError):
        await await_terminal(fetch, lambda s: (False, s), waiter)
    assert calls == 1 and clock.sleeps == []


async def test_trigger_event_at_the_deadline_over_http(
    clock: Clock, connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real trigger polling its run on its own (the Waiter's loop) against the emulator: one GET per
    interval up to the deadline, then one event. The shared poller has its own tests."""
    monkeypatch.setenv("AIRFLOW_CONN_MONID_PER_RUN", monid_conn(connections.url, batch_status_polling=False))
    run_id = connections.monid.add_run(status="RUNNING")["runId"]
    trigger = MonidRunTrigger(run_id, "monid_per_run", poll_interval=0.5, end_time=clock.now + 2.0)
    events: list[Any] = [event async for event in trigger.run()]
    assert [e.payload["status"] for e in events] == ["timeout"]
    assert connections.count("GET", f"/v1/runs/{run_id}") == 5  # at 0, 0.5, 1, 1.5 and 2 s
    assert clock.now == pytest.approx(1002.0)
