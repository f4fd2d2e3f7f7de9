"""One task lifecycle for every operator and sensor of this provider.

obtain the run (reuse, adopt, pay, or select) → publish its id → wait (on the worker or in the
triggerer, one deadline) → resume (validate the event, read the run again) → judge the outcome.

Each task type plugs in its API's calls and outcome table (:class:`RunLifecycle`'s abstract
methods); the order of the steps, the deadline, what a trigger event means and which error ends a
wait are decided here once. Retry-or-not is decided by the exceptions' types
(:mod:`airflow_monid.exceptions`), never here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, NoReturn, Protocol, TypeVar

from airflow_monid._runtime.deferral import Deadline
from airflow_monid._runtime.waiting import Waiter, wait_on_worker
from airflow_monid.exceptions import PermanentError, ProviderError
from airflow_monid.models.events import RunEvent, parse_event

if TYPE_CHECKING:
    from airflow.triggers.base import BaseTrigger


class _Status(Protocol):
    @property
    def is_terminal(self) -> bool: ...


class _Run(Protocol):
    """What the lifecycle reads of a run: both APIs' run models answer the same way."""

    @property
    def identifier(self) -> str: ...

    @property
    def status(self) -> _Status: ...

    raw_status: Any


R = TypeVar("R", bound=_Run)


def status_of(run: _Run) -> tuple[bool, str]:
    """(is terminal, the status as the API spelled it): both APIs' run models answer the same way."""
    return run.status.is_terminal, str(run.raw_status)


class RunLifecycle(ABC, Generic[R]):
    """Base of every operator and sensor here that waits for one run of an API.

    A subclass is also a ``BaseOperator`` (whose ``log``, ``defer`` and ``execute`` it uses, declared
    below), sets :attr:`deferrable`, and implements the abstract methods: the API's calls and outcome
    table. The order of the steps, the deadline and what a trigger event means are decided here once.
    """

    deferrable: bool
    log: Any
    defer: Callable[..., NoReturn]
    execute: Callable[[Any], Any]
    #: the run the task last read (OpenLineage names it when the task fails too)
    current_run_id: str | None = None

    # --- what each task type implements -----------------------------------------------------------

    @abstractmethod
    def _label(self) -> str:
        """Names the task's API object in messages, e.g. ``Monid`` or ``Exa search monitor m``."""

    @abstractmethod
    def _fetch(self, run_id: str) -> R:
        """Read the run again (following whatever the API's rules say to follow)."""

    @abstractmethod
    def _poll_interval(self) -> float:
        """Seconds between polls."""

    @abstractmethod
    def _trigger(self, run_id: str | None, deadline: Deadline) -> BaseTrigger:
        """The trigger that waits for ``run_id`` in the triggerer until ``deadline``."""

    @abstractmethod
    def _complete(self, context: Any, run: R) -> Any:
        """Judge a terminal run: the task's return value, or the error its outcome table prescribes."""

    @abstractmethod
    def _expire(self, context: Any, run_id: str | None, deadline: Deadline, why: str) -> Any:
        """The deadline passed with the run not terminal (stop it, or time the sensor out)."""

    # --- what a task type may change ---------------------------------------------------------------

    def _fail(self, message: str) -> NoReturn:
        """A failure no retry can fix (sensors turn it into a skip with ``soft_fail``)."""
        raise PermanentError(message)

    def _unreadable(self, context: Any, event: RunEvent, exc: PermanentError) -> Any:
        """The run could not be read on resume for a reason no retry fixes (401, 404...)."""
        self._fail(str(exc))

    def _seen(self, context: Any, run: R) -> None:
        """Called with every run read while waiting (publish a run that replaced the one awaited)."""

    # --- the lifecycle --------------------------------------------------------------------------

    def _await(self, context: Any, run: R, deadline: Deadline) -> Any:
        """Wait for ``run`` until ``deadline``: judge it now, defer, or poll on the worker."""
        run_id = self.current_run_id = run.identifier
        if status_of(run)[0]:
            return self._complete(context, run)
        if self.deferrable:
            self._defer_until(context, run_id, deadline)
        waiter = Waiter(
            end_time=deadline.end_time,
            poll_interval=self._poll_interval(),
            label=self._describe(run_id),
            log=self.log,
        )
        final = wait_on_worker(lambda: self._fetched(context, run_id), status_of, waiter, current=run)
        if final is None:
            return self._expire(context, run_id, deadline, waiter.timeout_message())
        return self._complete(context, final)

    def _fetched(self, context: Any, run_id: str) -> R:
        run = self._fetch(run_id)
        self.current_run_id = run.identifier
        self._seen(context, run)
        return run

    def _describe(self, run_id: str | None) -> str:
        return f"{self._label()} run {run_id}" if run_id else self._label()

    def _defer_until(self, context: Any, run_id: str | None, deadline: Deadline) -> NoReturn:
        deadline.record(context)
        self.log.info(
            "Deferring until %s is terminal (deadline in %.0f s, %s).",
            self._describe(run_id),
            deadline.remaining(),
            deadline.describe(),
        )
        self.defer(
            trigger=self._trigger(run_id, deadline),
            method_name="execute_complete",
            # Airflow's own defer timeout would fail the task without execute_complete and leave the
            # run going; the trigger carries the absolute deadline and reports it instead.
            timeout=None,
        )
        raise AssertionError("defer() returned")  # pragma: no cover

    def _resume(self, context: Any, event: Any) -> Any:
        """``execute_complete``: the one way every task type reads its trigger's event."""
        deadline = Deadline.recorded(context)
        if deadline is None:
            return self._resume_stale(context, event)
        parsed = parse_event(event)
        run_id = parsed.run_id or None
        if parsed.status == "error":
            status = parsed.run_status or "not read"
            self._fail(f"Waiting for {self._describe(run_id)} (last status: {status}) failed: {parsed.message}")
        run: R | None = None
        if run_id:
            try:
                run = self._fetched(context, run_id)
            except PermanentError as exc:
                return self._unreadable(context, parsed, exc)
            except ProviderError as exc:
                if parsed.status != "timeout" and not deadline.passed():
                    # One bad answer on resume must not cost a retry (or skip a soft_fail sensor).
                    self.log.warning(
                        "Reading %s on resume failed (%s): waiting again until the same deadline.",
                        self._describe(run_id),
                        exc,
                    )
                    self._defer_until(context, run_id, deadline)
                parsed.message = f"{parsed.message} The last read failed too: {exc}".strip()
        if run is not None and status_of(run)[0]:
            # Terminal when read again: judge it, even when the event said "timeout" (it finished at the deadline).
            return self._complete(context, run)
        if parsed.status == "timeout" or deadline.passed():
            why = parsed.message or f"{self._describe(run_id)} was not terminal at the deadline."
            return self._expire(context, run.identifier if run is not None else run_id, deadline, why)
        # Reported terminal, but not terminal now (a list and the run disagreed, or a newer run
        # replaced it): wait again, same deadline. Never counted as success.
        self.log.warning(
            "%s was reported %s but is %s now: waiting again until the same deadline.",
            self._describe(run_id),
            parsed.run_status,
            status_of(run)[1] if run is not None else "not found",
        )
        self._defer_until(context, run.identifier if run is not None else run_id, deadline)

    def _resume_stale(self, context: Any, event: Any) -> Any:
        """Resumed with an earlier try's event (Airflow 3.0 ``dag.test()``): start this try afresh."""
        self.log.warning("Resumed with the event of an earlier try: starting this try afresh.")
        return self.execute(context)
