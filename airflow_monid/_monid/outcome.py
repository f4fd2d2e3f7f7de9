"""The Monid outcome table, applied the same way by every mode (sync run, trigger, worker poll, sensor)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from airflow_monid.exceptions import ProviderError, RunError, RunPermanentError
from airflow_monid.models.monid import MonidRun, MonidRunStatus

log = logging.getLogger("airflow_monid.outcome")

# Provider answers that a new run may fix; other 4xx mean the input must change.
_RETRYABLE_PROVIDER = frozenset({408, 429})
# Run statuses after which a new run may succeed; BLOCKED repeats until a workspace control changes.
_RETRYABLE_STATUSES = frozenset({MonidRunStatus.FAILED, MonidRunStatus.TIMED_OUT, MonidRunStatus.STOPPED})


def _text(value: Any) -> str | None:
    if value in (None, "", {}, []):
        return None
    if isinstance(value, dict):
        for key in ("message", "error", "detail", "reason"):
            if isinstance(value.get(key), str) and value[key]:
                return value[key]
    return str(value)[:500]


def reason_of(run: MonidRun) -> str:
    """Whatever explanation the API gave: ``reason``, ``error`` or the provider's error body."""
    provider_error = run.provider_response.error if run.provider_response else None
    for value in (run.reason, run.error, provider_error, getattr(run, "message", None)):
        text = _text(value)
        if text:
            return text
    return "no reason given"


def provider_status(run: MonidRun) -> int:
    """The provider's HTTP status of a COMPLETED run.

    Missing counts as 200 (the docs' own example does so), with a warning. A value that is not an
    integer raises: a run we cannot classify is never a success.
    """
    value = run.provider_response.http_status if run.provider_response else None
    if value is None:
        log.warning("Monid run %s is COMPLETED without providerResponse.httpStatus: counted as 200.", run.run_id)
        return 200
    if isinstance(value, bool) or not isinstance(value, int):
        raise RunPermanentError(
            f"Monid run {run.run_id} is COMPLETED but providerResponse.httpStatus is {value!r}, not an "
            "integer: the outcome cannot be trusted.",
            run_id=run.run_id,
            status=str(run.raw_status),
        )
    return value


class Verdict(str, Enum):
    """What the outcome table decides for one run; the one answer every caller asks."""

    IN_PROGRESS = "in_progress"  # not terminal (unknown statuses included): keep waiting
    SUCCESS = "success"  # COMPLETED + provider 2xx (or missing): the output is the result
    NO_DATA = "no_data"  # COMPLETED + a provider status in allowed_provider_statuses: result None
    RETRY = "retry"  # a new run may succeed: fail the try, Airflow may retry
    FAIL = "fail"  # a new run cannot succeed: fail without retry

    @property
    def is_good(self) -> bool:
        return self in (Verdict.SUCCESS, Verdict.NO_DATA)


@dataclass(frozen=True)
class Outcome:
    """A :class:`Verdict` with the run's result or the error that says why."""

    verdict: Verdict
    value: Any = None
    error: ProviderError | None = None

    def result(self) -> Any:
        """The value on success; otherwise raise the error the table prescribes."""
        if self.error is not None:
            raise self.error
        return self.value


def judge(run: MonidRun, allowed_provider_statuses: Iterable[int] = ()) -> Outcome:
    """The outcome table (README "Outcome table"), in one place for every mode and for reuse."""
    status = run.status
    label = f"Monid run {run.run_id} ({run.provider} {run.endpoint})"
    if not status.is_terminal:
        error = RunError(f"{label} is still {run.raw_status!r}: no outcome yet.", run_id=run.run_id)
        return Outcome(Verdict.IN_PROGRESS, error=error)
    if status.is_completed:
        try:
            http = provider_status(run)
        except RunPermanentError as exc:
            return Outcome(Verdict.FAIL, error=exc)
        if 200 <= http < 300:
            return Outcome(Verdict.SUCCESS, value=run.output)
        if http in set(allowed_provider_statuses):
            return Outcome(Verdict.NO_DATA)
        message = f"{label} COMPLETED but the provider answered HTTP {http}: {reason_of(run)}"
        if http in _RETRYABLE_PROVIDER or http >= 500:
            text = message + " (not charged; a new run may succeed)"
            return Outcome(Verdict.RETRY, error=RunError(text, run_id=run.run_id, status="COMPLETED"))
        return Outcome(Verdict.FAIL, error=RunPermanentError(message, run_id=run.run_id, status="COMPLETED"))
    message = f"{label} ended {run.raw_status}: {reason_of(run)}"
    if status in _RETRYABLE_STATUSES:
        return Outcome(Verdict.RETRY, error=RunError(message, run_id=run.run_id, status=status.value))
    return Outcome(Verdict.FAIL, error=RunPermanentError(message, run_id=run.run_id, status=status.value))


def apply_outcome(run: MonidRun, allowed_provider_statuses: Iterable[int] = ()) -> Any:
    """Return the run's output on success, or raise the failure the outcome table prescribes.

    An in-progress run raises (it never counts as success).
    """
    outcome = judge(run, allowed_provider_statuses)
    if outcome.verdict is Verdict.NO_DATA:
        log.info("Monid run %s: provider status allowed by allowed_provider_statuses: no data.", run.run_id)
    return outcome.result()


def is_reusable(run: MonidRun, allowed_provider_statuses: Iterable[int] = ()) -> bool:
    """A stored run a later try may adopt instead of paying: in progress (not being stopped), or one
    the outcome table calls a success. The same table decides both, so they cannot disagree."""
    if run.status is MonidRunStatus.STOPPING:
        return False
    verdict = judge(run, allowed_provider_statuses).verdict
    return verdict is Verdict.IN_PROGRESS or verdict.is_good
