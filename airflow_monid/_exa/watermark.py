"""Which monitor runs an :class:`~airflow_monid.triggers.exa.ExaMonitorRunWatcher` has emitted.

Two parts:

* :class:`Watermark` (pure, no I/O): fed the runs listed newest first, it says which runs became
  terminal and must be emitted, oldest first, and what state may be **committed**.
* :class:`StateKeeper`: loads and saves that state in the watcher's ``asset_state_store``
  (Airflow 3.3+), or does nothing when there is none.

**At-least-once.** The triggerer writes a yielded event to the database only after the watcher's
generator has moved on, so state saved around a ``yield`` can claim an event that a SIGKILL then
loses. The ledger therefore commits an emitted run one poll cycle late, and only once
:data:`ACK_GRACE` seconds have passed since its ``yield`` (the triggerer persists an event within
about two of its one-second sync rounds). A crash in between re-emits the run after the restart;
DAG authors remove such repeats by ``run_id`` with :func:`airflow_monid.models.exa_events.exa_runs_from_events`.

State (JSON, one key per monitor, ``{monitor_type}:{monitor_id}``)::

    {"version": 1, "watermark": "<createdAt>", "emitted": ["<run id>", ...]}

Runs created before ``watermark`` are settled. ``emitted`` holds the runs created at or after it
that must not be emitted again: emitted ones, and ones already terminal when the watcher first
looked (the baseline).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from airflow_monid.models.exa import ExaMonitorRun, ExaRunStatus, parse_time

log = logging.getLogger(__name__)

STATE_VERSION = 1
# Seconds between an event's yield and the moment the run may be committed as emitted; see above.
ACK_GRACE = 10.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def state_key(monitor_type: str, monitor_id: str) -> str:
    """Namespaced, because several assets and watchers may share one store."""
    return f"{monitor_type}:{monitor_id}"


class Watermark:
    """Runs emitted or settled, and the watermark below which nothing is listed again.

    :param state: the committed state to resume from, or ``None`` to start from "now": the first
        scan then records every run already terminal without emitting it (runs still in progress
        are emitted when they finish).
    :param statuses: normalised terminal statuses to emit (``ExaRunStatus`` values).
    :param ack_grace: see :data:`ACK_GRACE` (the default).
    """

    def __init__(self, state: dict[str, Any] | None, statuses: Iterable[str], ack_grace: float | None = None) -> None:
        self.statuses = frozenset(statuses)
        self.ack_grace = ACK_GRACE if ack_grace is None else ack_grace
        self.baseline = state is None
        self.watermark: datetime | None = None
        self.done: dict[str, datetime | None] = {}  # run id -> createdAt (None: unknown, from state)
        # Runs to emit or emitted but not committed yet: createdAt, and when the yield returned
        # (``None`` until it has).
        self._pending: dict[str, tuple[datetime, float | None]] = {}
        if state is not None:
            self.watermark = parse_time(state.get("watermark"))
            self.done = {str(run_id): None for run_id in state.get("emitted") or []}

    @staticmethod
    def parse_state(value: Any) -> dict[str, Any] | None:
        """A stored value, or ``None`` when there is none or it cannot be read (logged)."""
        if value is None:
            return None
        if not isinstance(value, dict) or value.get("version") != STATE_VERSION:
            log.warning("Ignoring unreadable Exa watcher state %.200r: starting from now.", value)
            return None
        return value

    def reaches_watermark(self, runs: list[ExaMonitorRun]) -> bool:
        """Whether a page contains a run older than the watermark (listing may stop)."""
        if self.watermark is None:
            return True  # starting from now: the newest page is the present
        return any((created := r.created) is not None and created < self.watermark for r in runs)

    def scan(self, runs: list[ExaMonitorRun]) -> list[ExaMonitorRun]:
        """Runs (listed newest first) that must be emitted now, oldest first; updates the watermark."""
        fresh: list[tuple[datetime, ExaMonitorRun]] = []
        for run in runs:
            created = run.created
            if created is None:
                log.warning("Exa monitor run %s has no readable createdAt (%r): ignored.", run.id, run.created_at)
                continue
            if self.watermark is not None and created < self.watermark:
                continue
            fresh.append((created, run))
        fresh.sort(key=lambda item: item[0])
        emit: list[ExaMonitorRun] = []
        oldest_open: datetime | None = None
        for created, run in fresh:
            if run.id in self.done:
                self.done[run.id] = created
                continue
            if not run.status.is_terminal:
                oldest_open = created if oldest_open is None else min(oldest_open, created)
                continue
            self.done[run.id] = created
            if not self.baseline and run.status.value in self.statuses:
                emit.append(run)
                self._pending[run.id] = (created, None)
        if self.baseline and not fresh:
            # The monitor has no run yet: every run that appears later is new.
            self.watermark = EPOCH
        self.baseline = False
        if oldest_open is not None:
            self.watermark = oldest_open
        elif fresh:
            self.watermark = max(self.watermark or fresh[-1][0], fresh[-1][0])
        self._prune()
        return emit

    def mark_emitted(self, run: ExaMonitorRun) -> None:
        """Call once the event for ``run`` has been yielded (it is committed one cycle later)."""
        if run.id in self._pending:
            self._pending[run.id] = (self._pending[run.id][0], time.monotonic())

    def committed_state(self) -> dict[str, Any] | None:
        """The state that is safe to save now, or ``None`` before the first scan.

        A run to emit counts as emitted once ``ack_grace`` seconds have passed since its yield
        returned; callers save before a cycle's yields, so the earliest commit is the next cycle's.
        """
        if self.watermark is None and not self.done:
            return None
        now = time.monotonic()
        for run_id, (_, yielded) in list(self._pending.items()):
            if yielded is not None and now - yielded >= self.ack_grace:
                del self._pending[run_id]
        watermark = self.watermark
        for created, _ in self._pending.values():
            watermark = created if watermark is None else min(watermark, created)
        emitted = sorted(
            run_id
            for run_id, created in self.done.items()
            if run_id not in self._pending and (created is None or watermark is None or created >= watermark)
        )
        return {
            "version": STATE_VERSION,
            "watermark": watermark.isoformat() if watermark else None,
            "emitted": emitted,
        }

    def _prune(self) -> None:
        floor = self.watermark
        for created, _ in self._pending.values():
            floor = created if floor is None else min(floor, created)
        if floor is None:
            return
        # Ids whose createdAt is unknown came from the stored state; once a scan has listed back to
        # the watermark without seeing them, they are older than it and can go.
        self.done = {k: v for k, v in self.done.items() if v is not None and v >= floor}


def normalise_statuses(statuses: Iterable[Any]) -> list[str]:
    """Terminal statuses in the one vocabulary (``canceled`` -> ``cancelled``); others are refused."""
    result: list[str] = []
    for value in statuses:
        status = ExaRunStatus.parse(value)
        if not status.is_terminal:
            raise ValueError(f"statuses must be terminal run statuses (completed, failed, cancelled), got {value!r}")
        if status.value not in result:
            result.append(status.value)
    if not result:
        raise ValueError("statuses must name at least one terminal run status")
    return result


class StateKeeper:
    """Loads and saves a watcher's :class:`Watermark` state in its ``asset_state_store``, if any.

    :param trigger: the watcher; its ``asset_state_store`` is looked up with ``getattr`` (Airflow
        3.3+ injects it before ``run()``; earlier versions have none).
    :param key: see :func:`state_key`.
    :param label: names the monitor in logs.
    """

    def __init__(self, trigger: Any, key: str, label: str) -> None:
        self.store = getattr(trigger, "asset_state_store", None)
        self.key = key
        self.label = label
        self._saved: dict[str, Any] | None = None

    @property
    def available(self) -> bool:
        return self.store is not None

    async def load(self) -> dict[str, Any] | None:
        """The stored state; ``None`` without a store or stored state. Transient errors propagate."""
        if self.store is None:
            return None
        try:
            value = await self.store.aget(self.key)
        except ValueError as exc:
            # One trigger row serves several assets (watchers with equal kwargs are merged), and the
            # single-asset accessor refuses to choose. Writing to all of them would couple assets
            # that Airflow may later split, so the watcher runs as on Airflow < 3.3.
            log.warning(
                "%s: the watcher's asset state store cannot be used (%s); it starts from now and keeps no "
                "watermark across restarts. Give each monitor exactly one Asset.",
                self.label,
                exc,
            )
            self.store = None
            return None
        state = Watermark.parse_state(value)
        self._saved = state
        return state

    async def save(self, state: dict[str, Any] | None) -> None:
        """Write ``state`` if it changed. Errors propagate: the caller logs them and writes next cycle."""
        if self.store is None or state is None or state == self._saved:
            return
        await self.store.aset(self.key, state)
        self._saved = state
