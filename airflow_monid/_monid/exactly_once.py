"""One task instance pays for one Monid run: what the run ledger records, and reconciliation.

The ledger itself (``task_state_store``, Airflow 3.3+) is :mod:`airflow_monid._runtime.ledger`.
Reconciliation finds a run the ledger cannot know about (an unclear submit, Airflow < 3.3, or the
gap between ``POST /v1/run`` and writing the ledger) by listing recent runs and matching the exact
input.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from airflow_monid._monid.outcome import is_reusable
from airflow_monid.exceptions import RunPermanentError
from airflow_monid.hooks.monid import MonidHook
from airflow_monid.models._base import parse_time
from airflow_monid.models.monid import MonidRun

log = logging.getLogger("airflow_monid.exactly_once")

LEDGER_KEY = "monid_run"  # the task_state_store key of a Monid task's ledger entry
RECONCILE_LIMIT = 100


def request_digest(provider: str, endpoint: str, input: dict[str, Any]) -> str:
    canonical = json.dumps([provider, endpoint, input], sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def find_matching_runs(
    hook: MonidHook, provider: str, endpoint: str, input: dict[str, Any], since: datetime | None
) -> list[MonidRun]:
    """Runs created since ``since`` (newest first, at most 100) with this provider, endpoint and input.

    List items carry no input, so each same-endpoint candidate is fetched. Limits: a run older
    than ``since`` or beyond the 100 newest is not found, and two tasks sending the same input to the
    same endpoint in the window are indistinguishable (the caller then fails rather than guess).
    """
    matches: list[MonidRun] = []
    for item in hook.iter_runs(page_size=RECONCILE_LIMIT, max_items=RECONCILE_LIMIT):
        created = parse_time(item.created_at)
        if since is not None and created is not None and created < since:
            break
        if item.provider != provider or item.endpoint != endpoint:
            continue
        full = hook.get_run(item.run_id)
        if full.input == input:
            matches.append(full)
    return matches


def adopt_one(matches: list[MonidRun], allowed_provider_statuses: Iterable[int] = ()) -> MonidRun | None:
    """The single *reusable* matching run, ``None`` when none is; several reusable ones fail naming them.

    Runs that ended badly are set aside first: two failed tries leave two failed runs with the same
    input, and neither decides anything (the next try pays for a new run).
    """
    reusable = [m for m in matches if is_reusable(m, allowed_provider_statuses)]
    if len(reusable) > 1:
        ids = ", ".join(m.run_id for m in reusable)
        raise RunPermanentError(
            f"Found {len(reusable)} reusable Monid runs with this exact provider, endpoint and input ({ids}); "
            "cannot tell which one this task paid for. Inspect them, then clear the task with "
            "adopt_existing_run=False to submit a new run."
        )
    return reusable[0] if reusable else None
