"""Event-driven by Exa's webhook: this DAG starts within about a second of a monitor run completing.

Exa posts a signed ``monitor.run.completed`` to the provider's receiver on the API server,
``{AIRFLOW}/monid/api/v1/exa/webhooks/exa_webhooks``; the receiver checks the signature with the
``webhook_secret`` kept in connection ``exa_webhooks`` and registers the asset event that the
watcher below would have emitted. The watcher stays as the safety net: because the connection
holds a webhook secret it polls only every ``webhook_poll_interval`` seconds (default 900), and
catches a run whose delivery was lost. Each monitor run starts one DAG run, whichever path delivers
it first (on Airflow 3.3+; README "Webhooks" says what 3.0-3.2 do).

Set-up (README "Webhooks"): create the monitor with ``webhook.url`` pointing at the URL above, and
store the ``webhookSecret`` Exa returns once in the connection's **Webhook secret** field.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_monid.hooks.exa import ExaHook
from airflow_monid.models.exa_events import exa_runs_from_events
from airflow_monid.triggers.exa import ExaMonitorRunWatcher

MONITOR_ID = "mon_funding"
CONN_ID = "exa_webhooks"  # an Exa connection with the API key and the monitor's webhook secret

monitor_runs = Asset(
    f"exa-monitor://{MONITOR_ID}/webhook",
    watchers=[
        AssetWatcher(
            name=f"exa_{MONITOR_ID}_webhook",
            trigger=ExaMonitorRunWatcher(monitor_id=MONITOR_ID, exa_conn_id=CONN_ID, poll_interval=60),
        )
    ],
)

with DAG(
    "exa_monitor_webhook",
    schedule=[monitor_runs],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["exa", "example"],
) as dag:

    @task(inlets=[monitor_runs])
    def fetch_results(triggering_asset_events: Any = None, inlet_events: Any = None) -> list[dict[str, Any]]:
        earlier = inlet_events[monitor_runs][-200:] if triggering_asset_events else []
        summaries = []
        hook = ExaHook(CONN_ID)
        for run in exa_runs_from_events(triggering_asset_events, earlier_events=earlier):
            full = hook.get_run(run.monitor_id, run.run_id, run.monitor_type)
            results = (full.output or {}).get("results") or []
            summaries.append({"run_id": run.run_id, "count": len(results), "urls": [r.get("url") for r in results]})
        return summaries

    fetch_results()


if __name__ == "__main__":
    dag.test()
