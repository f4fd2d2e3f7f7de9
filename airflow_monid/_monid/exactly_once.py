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
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from airflow_monid._monid.outcome import is_reusable
from airflow_monid.exceptions import RunPermanentError
from airflow_monid.hooks.monid import MonidHook
from airflow_monid.models._base import parse_time
from airflow_monid.models.monid import MonidRun

log = logging.getLogger("airflow_monid.exactly_once")

LEDGER_KEY = "monid_run"
RECONCILE_LIMIT = 100
MAX_DELIVERED = 20  # delivered run ids kept in the ledger (reconciliation only looks at 100 runs anyway)


def request_digest(provider: str, endpoint: str, input: dict[str, Any]) -> str:
    canonical = json.dumps([provider, endpoint, input], sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class RunLedger:
    """The run a task instance paid for, kept in ``task_state_store`` when Airflow offers one (3.3+).

    An entry is ``{run_id, hash, delivered, cycle}`` (the Exa operator adds its trigger intent;
    ``@task.monid`` adds ``input``/``input_cycle``, the input its function returned, recorded before paying).
    ``cycle`` is the first try number of the cycle that wrote it (:func:`~airflow_monid._runtime.deferral.cycle_of`):
    retries share a cycle, a clear starts a new one.

    :param context: the task's context.
    :param enabled: ``False`` keeps nothing (``durable=False``).
    :param key: the store key (one per task type).
    :param cycle: the current cycle.
    """

    def __init__(self, context: Any, enabled: bool = True, key: str = LEDGER_KEY, cycle: int = 1) -> None:
        self.key = key
        self.cycle = cycle
        self.store = context.get("task_state_store") if enabled else None

    @property
    def available(self) -> bool:
        return self.store is not None

    def load(self) -> dict[str, Any] | None:
        if self.store is None:
            return None
        value = self.store.get(self.key)
        return value if isinstance(value, dict) else None

    def write(self, value: dict[str, Any]) -> None:
        if self.store is None:
            return
        # Runs delivered by any earlier try travel with every entry, so none is ever adopted again.
        old = self.load() or {}
        delivered = old.get("delivered_runs") or []
        entry = {**value, "cycle": self.cycle}
        if delivered and "delivered_runs" not in value:
            entry["delivered_runs"] = delivered
        if "input" not in value and old.get("input_cycle") == self.cycle and "input" in old:
            entry["input"], entry["input_cycle"] = old["input"], self.cycle
        self.store.set(self.key, entry)

    def record_input(self, payload: dict[str, Any]) -> None:
        """Keep the input a decorated task's function returned, before anything is paid for it.

        A retry of this cycle sends it again instead of calling the function (whose result may change:
        timestamps, randomness), so the run it paid for matches and is reused. Written next to the
        run fields without touching them: an input alone is no run record (``has_cycle_entry``).
        """
        if self.store is not None:
            self.store.set(self.key, {**(self.load() or {}), "input": payload, "input_cycle": self.cycle})

    def recorded_input(self) -> dict[str, Any] | None:
        """The input recorded by an earlier try of this cycle (a clear calls the function anew)."""
        entry = self.load() or {}
        value = entry.get("input")
        return value if isinstance(value, dict) and entry.get("input_cycle") == self.cycle else None

    def remember(self, run_id: str, digest: str, **extra: Any) -> None:
        self.write({"run_id": run_id, "hash": digest, "delivered": False, **extra})

    def mark_delivered(self) -> None:
        value = self.load()
        if value is not None and isinstance(value.get("run_id"), str):
            delivered = [r for r in value.get("delivered_runs") or [] if r != value["run_id"]]
            self.write({**value, "delivered": True, "delivered_runs": [*delivered, value["run_id"]][-MAX_DELIVERED:]})

    def has_cycle_entry(self) -> bool:
        entry = self.load()
        return entry is not None and entry.get("cycle") == self.cycle

    def delivered_ids(self) -> set[str]:
        """Runs already delivered by an earlier try or cycle: never adopted again."""
        entry = self.load() or {}
        ids = {r for r in entry.get("delivered_runs") or [] if isinstance(r, str)}
        if entry.get("delivered") and isinstance(entry.get("run_id"), str):
            ids.add(entry["run_id"])
        return ids

    def candidate(self, digest: str) -> tuple[str | None, str]:
        """The stored run a try may reuse (``None`` when it must not), and why, for the log.

        The decision table's ledger rows: another input → new run; delivered in an earlier cycle
        (a clear after success) → fresh data; delivered in this cycle (the worker died before Airflow
        recorded the success) or not delivered → reuse when the run itself is reusable.
        """
        entry = self.load()
        run_id = entry.get("run_id") if entry else None
        if entry is None or not isinstance(run_id, str):
            return None, "the run ledger is empty"
        if entry.get("hash") != digest:
            return None, f"stored run {run_id} was for a different input"
        if entry.get("delivered") and entry.get("cycle") != self.cycle:
            return None, f"stored run {run_id} was delivered before the task was cleared: fresh data"
        return run_id, f"stored run {run_id}"


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
