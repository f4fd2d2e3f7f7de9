"""The Exa outcome table: what a terminal monitor run means for the task (README "Exa monitor runs", Outcome)."""

from __future__ import annotations

from typing import Any

from airflow_monid.exceptions import ExaRunError, ExaRunPermanentError
from airflow_monid.models.exa import ExaMonitorRun, ExaRunStatus

# failReason values after which a new run may succeed (API.md 3.3); the set is open, so anything
# else, including reasons Exa adds later, counts as permanent rather than paying for a blind retry.
RETRYABLE_FAIL_REASONS = frozenset({"rate_limited", "search_unavailable", "search_failed", "internal_error"})
# The reasons that need a person, listed so that classifying one is a decision and not a default:
# a bad or revoked key, no credits, invalid monitor parameters, and the two exa-py 2.28 added —
# ``forbidden`` (the key's plan or policy does not allow the search; a 403 does not heal by itself)
# and ``source_not_available`` (a source the monitor depends on cannot be read: retrying the same
# monitor at once would pay for the same failure; it is re-checked on the monitor's next run anyway).
PERMANENT_FAIL_REASONS = frozenset(
    {"api_key_invalid", "insufficient_credits", "invalid_params", "forbidden", "source_not_available"}
)


def run_outcome(run: ExaMonitorRun, label: str) -> dict[str, Any]:
    """The run's JSON as received when it completed; otherwise the failure the status calls for.

    :param label: names the monitor in messages, e.g. ``Exa search monitor mon_x``.
    :raises ExaRunError: a failure a new run may fix (``failReason`` like ``rate_limited``).
    :raises ExaRunPermanentError: any other failure or cancellation.
    """
    status = run.status
    if not status.is_terminal:
        raise ExaRunError(f"{label} run {run.id} is still {run.raw_status!r}: no outcome yet.", run_id=run.id)
    if status.is_success:
        return run.raw
    message = f"{label} run {run.id} ended {run.raw_status}: {run.reason or 'no reason given'}"
    if status is ExaRunStatus.FAILED and run.reason in RETRYABLE_FAIL_REASONS:
        raise ExaRunError(message + " (a new run may succeed)", run_id=run.id, status=str(run.raw_status))
    raise ExaRunPermanentError(message, run_id=run.id, status=str(run.raw_status))
