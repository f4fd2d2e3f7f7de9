"""Waiting for a run: one policy (:class:`Waiter`, no I/O) driven by a worker loop and a triggerer loop.

Transient failures (transport errors, 429/5xx after the request core's retries, unreadable bodies,
a slow answer) are tolerated with backoff until the deadline: one bad answer never ends a long wait.
A :class:`~airflow_monid.exceptions.PermanentError` ends it at once. Only state changes and the first
failures of an outage are logged, never every poll: a triggerer holds thousands of these.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from airflow_monid._http.backoff import Backoff, worth_logging
from airflow_monid._http.policy import DEADLINE_MARGIN, deadline_scope
from airflow_monid.exceptions import APIError, PermanentError, ProviderError, TransportError

R = TypeVar("R")
T = TypeVar("T")
StatusOf = Callable[[R], tuple[bool, str]]


class Clock(Protocol):
    """What a wait reads and sleeps on: the wall clock (deadlines are absolute epoch seconds)."""

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    async def asleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: ``time.time``, ``time.sleep`` and ``asyncio.sleep``."""

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


#: The clock a :class:`Waiter` uses unless it is given one (tests give theirs, or replace this one).
SYSTEM_CLOCK: Clock = SystemClock()


class Waiter:
    """The decisions of one wait, shared by :func:`wait_on_worker` and :func:`await_terminal`.

    :param end_time: absolute deadline, epoch seconds.
    :param poll_interval: seconds between polls while all goes well.
    :param label: names the run in log lines and messages.
    :param log: where state changes and failures go.
    :param clock: what it reads the time from and sleeps on (default :data:`SYSTEM_CLOCK`).
    """

    def __init__(
        self,
        *,
        end_time: float,
        poll_interval: float,
        label: str,
        log: logging.Logger | Any,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or SYSTEM_CLOCK
        self.end_time = end_time
        self.poll_interval = poll_interval
        self.label = label
        self.log = log
        self.errors = 0
        self.last_error: str | None = None
        self.last_status: str | None = None
        #: what the failures in a row were: ``unreachable`` (transport), ``api`` (error answers) or ``other``.
        self.failure_kind: str | None = None
        #: the base URL (or URL) the last failed poll tried, when the error says.
        self.failure_where: str | None = None
        self.failure_api = "API"

    def on_result(self, status: str) -> None:
        if self.errors:
            self.log.info("%s: polling works again after %d failure(s).", self.label, self.errors)
        self.errors = 0
        if status != self.last_status:
            self.log.info("%s is %s.", self.label, status)
            self.last_status = status

    def is_terminal(self, run: R, status_of: StatusOf[R]) -> bool:
        """Note the status just read (logged when it changed) and say whether the wait is over."""
        terminal, status = status_of(run)
        self.on_result(status)
        return terminal

    def on_error(self, exc: BaseException) -> None:
        """Remember a failed poll; a permanent error re-raises (no retry can fix it)."""
        if isinstance(exc, PermanentError):
            raise exc
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self.failure_api = getattr(exc, "api", None) or "API"
        if isinstance(exc, TransportError):
            self.failure_kind, self.failure_where = "unreachable", exc.base_url or exc.url
        elif isinstance(exc, APIError):
            self.failure_kind, self.failure_where = "api", exc.url
        elif isinstance(exc, TimeoutError):
            self.failure_kind, self.failure_where = "slow", None
        else:
            self.failure_kind, self.failure_where = "other", None
        if worth_logging(self.errors):
            self.log.warning("%s: poll failed %d time(s) in a row; last: %s", self.label, self.errors, self.last_error)

    def next_delay(self, now: float | None = None) -> float | None:
        """Seconds until the next poll, or ``None`` once the deadline has passed."""
        remaining = self.end_time - (self.clock.time() if now is None else now)
        if remaining <= 0:
            return None
        wait = self.poll_interval
        if self.errors:
            wait = Backoff.for_polling(self.poll_interval).delay(self.errors)
        return min(wait, remaining)

    def failure_text(self) -> str | None:
        """Why the latest polls failed (``None`` when the last poll worked): the API could not be reached,
        or answered errors, at which URL, and the last error."""
        if not self.errors:
            return None
        where = f" at {self.failure_where}" if self.failure_where else ""
        polls = f"{self.errors} poll(s) in a row failed"
        if self.failure_kind == "unreachable":
            head = f"could not reach the {self.failure_api}{where} ({polls})"
        elif self.failure_kind == "api":
            head = f"the {self.failure_api}{where} answered with errors ({polls})"
        elif self.failure_kind == "slow":
            head = f"the {self.failure_api} did not answer in time ({polls})"
        else:
            head = polls
        return f"{head}; last error: {(self.last_error or '').rstrip('.')}"

    def timeout_message(self) -> str:
        """What the deadline found: the last status, or why the last polls could not read it."""
        seen = self.last_status or "never read"
        failure = self.failure_text()
        if failure:
            return f"{self.label}: its state at the deadline is unknown: {failure} (last seen: {seen})."
        text = f"{self.label} was not terminal at the deadline (last seen: {seen})"
        if self.last_error:
            text += f"; an earlier poll failed: {self.last_error}"
        return text + "."

    def remaining(self, now: float | None = None) -> float:
        """Time budget of one poll in the triggerer: the time left, at least ``DEADLINE_MARGIN`` (the last
        poll at the deadline still gets a chance, and ends at most that long after it)."""
        return max(self.end_time - (self.clock.time() if now is None else now), DEADLINE_MARGIN)


def wait_on_worker(
    fetch: Callable[[], R], status_of: StatusOf[R], waiter: Waiter, current: R | None = None
) -> R | None:
    """Poll on the worker until terminal (returns the run) or the deadline (returns ``None``).

    ``current``, when given, is looked at before the first poll. The run is looked at once more at
    the deadline.
    """
    while True:
        if current is not None and waiter.is_terminal(current, status_of):
            return current
        delay = waiter.next_delay()
        if delay is None:
            return None
        waiter.clock.sleep(delay)
        try:
            with deadline_scope(waiter.end_time):  # no request outlives the deadline by more than the margin
                current = fetch()
        except ProviderError as exc:
            waiter.on_error(exc)
            current = None


async def await_terminal(fetch: Callable[[], Awaitable[R]], status_of: StatusOf[R], waiter: Waiter) -> R | None:
    """The triggerer's loop: poll with GETs until terminal (returns the run) or the deadline (``None``)."""
    while True:
        try:
            with deadline_scope(waiter.end_time):  # each request's timeouts are capped by the time left
                current = await bounded(fetch(), waiter.remaining())
        except (TimeoutError, ProviderError) as exc:
            waiter.on_error(exc)
        else:
            if waiter.is_terminal(current, status_of):
                return current
        delay = waiter.next_delay()
        if delay is None:
            return None
        await waiter.clock.asleep(delay)


async def bounded(awaitable: Awaitable[T], seconds: float) -> T:
    """Await with a time limit without ever swallowing a cancellation.

    On Python < 3.12, ``asyncio.wait_for`` can swallow the task's cancellation when the awaited call
    finishes at the same moment, and a triggerer's cancel (restart, user kill) would then be ignored;
    ``asyncio.timeout`` (3.11+) does not.
    """
    async with asyncio.timeout(seconds):
        return await awaitable
