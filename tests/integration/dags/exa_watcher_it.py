"""``exa_watcher_it``: scheduled by an ExaMonitorRunWatcher; used by tests/integration/test_exa_watcher_cluster.py.

Defined only while ``$AIRFLOW_HOME/exa_watcher_it.json`` exists (the test writes it, then removes
it): its watcher polls the session emulator every 2 s, and other cluster tests must not see those
requests. The task records, per DAG run, the run ids its triggering asset events name (``raw``) and
what ``exa_runs_from_events`` keeps of them (``runs``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_monid.models.exa_events import ExaMonitorRunEvent, exa_runs_from_events
from airflow_monid.triggers.exa import ExaMonitorRunWatcher

_FLAG = Path(os.environ.get("AIRFLOW_HOME", "/nonexistent")) / "exa_watcher_it.json"

if _FLAG.exists():
    _cfg = json.loads(_FLAG.read_text())
    runs_asset = Asset(
        f"exa-monitor://{_cfg['monitor_id']}",
        watchers=[
            AssetWatcher(
                name="exa_watcher_it",
                trigger=ExaMonitorRunWatcher(monitor_id=_cfg["monitor_id"], poll_interval=_cfg["poll_interval"]),
            )
        ],
    )

    with DAG(
        "exa_watcher_it",
        schedule=[runs_asset],
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        tags=["integration"],
    ):

        @task(inlets=[runs_asset], multiple_outputs=False)
        def record(triggering_asset_events: Any = None, inlet_events: Any = None) -> dict[str, Any]:
            events = [e for evs in triggering_asset_events.values() for e in evs]
            raw = [r.run_id for r in map(ExaMonitorRunEvent.from_asset_event, events) if r is not None]
            kept = exa_runs_from_events(triggering_asset_events, earlier_events=inlet_events[runs_asset][-500:])
            return {"raw": raw, "runs": [r.run_id for r in kept]}

        record()
