"""One task instance pays for one run: the run ledger and reconciliation.

The ledger is the task's ``task_state_store`` (Airflow 3.3+), which survives retries and clears.
Reconciliation finds a run the ledger cannot know about (an unclear submit, Airflow < 3.3, or the
gap between ``POST /v1/run`` and writing the ledger) by listing recent runs and matching the exact
input.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from typing import Any

from airflow_monid.exceptions import MonidRunPermanentError
from airflow_monid.hooks.monid import MonidHook
from airflow_monid.models._base import parse_time
from airflow_monid.models.monid import MonidRun

log = logging.getLogger("airflow_monid.exactly_once")

LEDGER_KEY = "monid_run"
RECONCILE_LIMIT = 100


def request_digest(provider: str, endpoint: str, input: dict[str, Any]) -> str:
    canonical = json.dumps([provider, endpoint, input], sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class RunLedger:
    """The run a task instance paid for, kept in ``task_state_store`` when Airflow offers one."""

    def __init__(self, context: Any, enabled: bool = True, key: str = LEDGER_KEY) -> None:
        self.key = key
        self.store = context.get("task_state_store") if enabled else None

    @property
    def available(self) -> bool:
        return self.store is not None

    def load(self) -> dict[str, Any] | None:
        if self.store is None:
            return None
        value = self.store.get(self.key)
        return value if isinstance(value, dict) and isinstance(value.get("run_id"), str) else None

    def remember(self, run_id: str, digest: str) -> None:
        if self.store is not None:
            self.store.set(self.key, {"run_id": run_id, "hash": digest, "delivered": False})

    def mark_delivered(self) -> None:
        if self.store is None:
            return
        value = self.load()
        if value is not None:
            self.store.set(self.key, {**value, "delivered": True})


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


def adopt_one(matches: list[MonidRun]) -> MonidRun | None:
    """The single matching run, ``None`` for no match; several matches fail naming them."""
    if len(matches) > 1:
        ids = ", ".join(m.run_id for m in matches)
        raise MonidRunPermanentError(
            f"Found {len(matches)} Monid runs with this exact provider, endpoint and input ({ids}); cannot "
            "tell which one this task paid for. Inspect them, then clear the task with adopt_existing_run=False "
            "to submit a new run."
        )
    return matches[0] if matches else None
