"""For DAG authors: the Exa monitor runs that triggered a DAG run, from ``triggering_asset_events``.

An :class:`~airflow_monid.triggers.exa.ExaMonitorRunWatcher` event becomes an asset event whose
``extra`` is ``{"from_trigger": True, "payload": {...}}``. Several events can fold into one DAG run,
and delivery is at least once, so a task should loop over :func:`exa_runs_from_events`::

    @task
    def handle(triggering_asset_events=None, inlet_events=None):
        for run in exa_runs_from_events(triggering_asset_events, earlier_events=inlet_events[ASSET][-200:]):
            ...
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airflow_monid.models._base import parse_time

_PAYLOAD_KEYS = ("monitor_id", "monitor_type", "run_id", "status")


@dataclass(frozen=True)
class ExaMonitorRunEvent:
    """One monitor run named by a watcher event (Exa's own status and timestamp strings).

    :param monitor_id: the monitor's id.
    :param monitor_type: ``search`` or ``websets``.
    :param run_id: the run's id.
    :param status: the run's terminal status as Exa wrote it (``completed``, ``failed``, ``cancelled``...).
    :param created_at: when the run was created (Exa's ``createdAt``).
    :param completed_at: when the run ended (``completedAt``; ``failedAt``/``cancelledAt`` for those).
    """

    monitor_id: str
    monitor_type: str
    run_id: str
    status: str
    created_at: str | None
    completed_at: str | None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.monitor_type, self.monitor_id, self.run_id)

    @classmethod
    def from_asset_event(cls, event: Any) -> ExaMonitorRunEvent | None:
        """The run an asset event names, or ``None`` when it is not a watcher event of this provider."""
        extra = event.get("extra") if isinstance(event, Mapping) else getattr(event, "extra", None)
        payload = extra.get("payload") if isinstance(extra, Mapping) else None
        if not isinstance(payload, Mapping) or not all(isinstance(payload.get(k), str) for k in _PAYLOAD_KEYS):
            return None
        return cls(
            monitor_id=payload["monitor_id"],
            monitor_type=payload["monitor_type"],
            run_id=payload["run_id"],
            status=payload["status"],
            created_at=_text(payload.get("created_at")),
            completed_at=_text(payload.get("completed_at")),
        )


def exa_runs_from_events(
    triggering_asset_events: Any,
    *,
    earlier_events: Iterable[Any] | None = None,
    monitor_id: str | None = None,
) -> list[ExaMonitorRunEvent]:
    """The distinct monitor runs that triggered this DAG run, oldest first.

    Repeats are removed by ``(monitor_type, monitor_id, run_id)``: within this DAG run's events, and,
    with ``earlier_events``, runs an earlier asset event already named (a repeat the watcher
    emitted after a triggerer crash, which may land in a later DAG run than the first event).

    :param triggering_asset_events: the task context's ``triggering_asset_events`` (a mapping of
        asset to events), or any iterable of asset events.
    :param earlier_events: asset events of the same asset(s) to compare with, e.g.
        ``inlet_events[asset][-200:]`` with the asset among the task's ``inlets``. Only those older
        than this DAG run's first triggering event count.
    :param monitor_id: keep only this monitor's runs (one DAG scheduled on several monitors).
    """
    events = list(_flatten(triggering_asset_events))
    own_first = min((t for t in (_timestamp(e) for e in events) if t is not None), default=None)
    seen: set[tuple[str, str, str]] = set()
    if earlier_events is not None and own_first is not None:
        for event in earlier_events:
            stamp = _timestamp(event)
            run = ExaMonitorRunEvent.from_asset_event(event)
            if run is not None and stamp is not None and stamp < own_first:
                seen.add(run.key)
    runs: list[ExaMonitorRunEvent] = []
    for event in events:
        run = ExaMonitorRunEvent.from_asset_event(event)
        if run is None or run.key in seen or (monitor_id is not None and run.monitor_id != monitor_id):
            continue
        seen.add(run.key)
        runs.append(run)
    # Oldest first by the run's own creation time, as the watcher emits them; unreadable times last.
    far = datetime.max.replace(tzinfo=UTC)
    runs.sort(key=lambda r: parse_time(r.created_at) or far)
    return runs


def _flatten(value: Any) -> Iterable[Any]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [event for events in value.values() for event in (events or [])]
    return list(value)


def _timestamp(event: Any) -> datetime | None:
    value = event.get("timestamp") if isinstance(event, Mapping) else getattr(event, "timestamp", None)
    return parse_time(value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
