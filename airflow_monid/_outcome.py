"""The Monid outcome table, applied the same way by every mode (sync run, trigger, worker poll, sensor)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from airflow_monid.exceptions import MonidRunError, MonidRunPermanentError
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


def provider_status(run: MonidRun) -> int | None:
    """The provider's HTTP status of a COMPLETED run.

    Missing counts as 200 (the docs' own example does so), with a warning. A value that is not an
    integer raises: a run we cannot classify is never a success.
    """
    value = run.provider_response.http_status if run.provider_response else None
    if value is None:
        log.warning("Monid run %s is COMPLETED without providerResponse.httpStatus: counted as 200.", run.run_id)
        return 200
    if isinstance(value, bool) or not isinstance(value, int):
        raise MonidRunPermanentError(
            f"Monid run {run.run_id} is COMPLETED but providerResponse.httpStatus is {value!r}, not an "
            "integer: the outcome cannot be trusted.",
            run_id=run.run_id,
            status=str(run.status_text),
        )
    return value


def apply_outcome(run: MonidRun, allowed_provider_statuses: Iterable[int] = ()) -> Any:
    """Return the run's output on success, or raise the failure the outcome table prescribes.

    The caller must only pass terminal runs; an in-progress run raises (never counts as success).
    """
    status = run.status
    label = f"Monid run {run.run_id} ({run.provider} {run.endpoint})"
    if not status.is_terminal:
        raise MonidRunError(
            f"{label} is still {run.status_text!r}: no outcome yet.",
            run_id=run.run_id,
            status=str(run.status_text),
        )
    if status.is_success:
        http = provider_status(run)
        assert http is not None
        if 200 <= http < 300:
            return run.output
        if http in set(allowed_provider_statuses):
            log.info("%s: provider answered HTTP %s, allowed by allowed_provider_statuses: no data.", label, http)
            return None
        message = f"{label} COMPLETED but the provider answered HTTP {http}: {reason_of(run)}"
        if http in _RETRYABLE_PROVIDER or http >= 500:
            raise MonidRunError(
                message + " (not charged; a new run may succeed)", run_id=run.run_id, status="COMPLETED"
            )
        raise MonidRunPermanentError(message, run_id=run.run_id, status="COMPLETED")
    message = f"{label} ended {run.status_text}: {reason_of(run)}"
    if status in _RETRYABLE_STATUSES:
        raise MonidRunError(message, run_id=run.run_id, status=status.value)
    raise MonidRunPermanentError(message, run_id=run.run_id, status=status.value)


def is_reusable(run: MonidRun) -> bool:
    """A stored run a retry may adopt: in progress (not being stopped), or completed with usable data."""
    status = run.status
    if status is MonidRunStatus.STOPPING:
        return False
    if not status.is_terminal:
        return True
    if not status.is_success:
        return False
    value = run.provider_response.http_status if run.provider_response else 200
    return isinstance(value, int) and not isinstance(value, bool) and value < 500 and value not in _RETRYABLE_PROVIDER
