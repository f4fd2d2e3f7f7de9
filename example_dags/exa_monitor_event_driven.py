"""Event-driven: run this DAG every time the Exa search monitor completes a run.

Shows ``ExaMonitorRunWatcher`` behind an ``AssetWatcher`` (Airflow 3 event-driven scheduling). The
watcher polls the monitor's runs in the triggerer every ``poll_interval`` seconds; each run that
completes becomes an asset event of ``exa-monitor://mon_funding``, and the asset schedules the DAG.
No sensor guesses a time window and no cron drifts from Exa's own schedule.

Several events can fold into one DAG run, and delivery is at least once (a triggerer crash can
repeat an event), so ``fetch_results`` loops over ``exa_runs_from_events``: the distinct runs, oldest
first, without the ones an earlier asset event already delivered (``inlet_events``, hence the
asset among the task's ``inlets``). It then fetches each run's results through ``ExaHook``: the
events are small and never carry the output.

One Asset per monitor: on Airflow 3.3 the watcher keeps its watermark in that asset's state store,
so a restart misses nothing. Connection ``exa_default``; ``mon_funding`` is seeded by
``python -m airflow_monid.testing --seed-exa``.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_monid.hooks.exa import ExaHook
from airflow_monid.models.exa_events import exa_runs_from_events
from airflow_monid.triggers.exa import ExaMonitorRunWatcher

MONITOR_ID = "mon_funding"

monitor_runs = Asset(
    f"exa-monitor://{MONITOR_ID}",
    watchers=[
        AssetWatcher(
            name=f"exa_{MONITOR_ID}_runs",
            trigger=ExaMonitorRunWatcher(monitor_id=MONITOR_ID, monitor_type="search", poll_interval=60),
        )
    ],
)

with DAG(
    "exa_monitor_event_driven",
    schedule=[monitor_runs],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["exa", "example"],
) as dag:

    @task(inlets=[monitor_runs])
    def fetch_results(triggering_asset_events: Any = None, inlet_events: Any = None) -> list[dict[str, Any]]:
        earlier = inlet_events[monitor_runs][-200:] if triggering_asset_events else []
        runs = exa_runs_from_events(triggering_asset_events, earlier_events=earlier)
        hook = ExaHook("exa_default")
        summaries = []
        for run in runs:
            full = hook.get_run(run.monitor_id, run.run_id, run.monitor_type)
            results = (full.output or {}).get("results") or []
            summaries.append({"run_id": run.run_id, "count": len(results), "urls": [r.get("url") for r in results]})
        return summaries

    fetch_results()


if __name__ == "__main__":
    dag.test()
