"""Exa DAGs the tests drive with run_conf.

Sensors: one DAG per waiting mode x monitor kind (search on /monitors, search on the older
/search-monitors path, Websets) x variant (soft_fail, 1-second timeout). Every sensor has one retry,
so a test can tell a failure that is final (tries == 1) from one Airflow would retry.
Operators: one DAG per waiting mode, with and without a retry, with a normal or a 1-second timeout.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_monid.operators.exa import ExaTriggerMonitorOperator
from airflow_monid.sensors.exa import ExaMonitorRunSensor

SENSOR_PARAMS = {"monitor_id": "mon_x", "run_id": None, "created_after": None, "created_before": None}
KINDS = {"search": ("search", None), "legacy": ("search", "/search-monitors"), "websets": ("websets", None)}
VARIANTS = {"": (30, False), "_soft": (30, True), "_short": (1, False), "_short_soft": (1, True)}
START = pendulum.datetime(2026, 1, 1, tz="UTC")

for mode in ("deferrable", "poke", "reschedule"):
    for kind, (monitor_type, path) in KINDS.items():
        for variant, (timeout, soft_fail) in VARIANTS.items():
            if mode == "reschedule" and (kind != "search" or variant):
                continue
            with DAG(
                f"exa_sensor_{mode}_{kind}{variant}",
                schedule=None,
                start_date=START,
                catchup=False,
                render_template_as_native_obj=True,
                params=SENSOR_PARAMS,
            ) as dag:
                ExaMonitorRunSensor(
                    task_id="wait",
                    monitor_id="{{ params.monitor_id }}",
                    run_id="{{ params.run_id }}",
                    created_after="{{ params.created_after }}",
                    created_before="{{ params.created_before }}",
                    monitor_type=monitor_type,
                    search_monitors_path=path,
                    deferrable=mode == "deferrable",
                    mode="reschedule" if mode == "reschedule" else "poke",
                    poke_interval=0.2,
                    timeout=timeout,
                    soft_fail=soft_fail,
                    retries=1,
                    retry_delay=timedelta(0),
                )
            globals()[dag.dag_id] = dag

for mode in ("deferrable", "poll"):
    for retries in (0, 1):
        for timeout in (30, 1):
            suffix = ("_retry" if retries else "") + ("_short" if timeout == 1 else "")
            with DAG(
                f"exa_trigger_{mode}{suffix}",
                schedule=None,
                start_date=START,
                catchup=False,
                params={"monitor_id": "mon_x"},
            ) as dag:
                ExaTriggerMonitorOperator(
                    task_id="trigger",
                    monitor_id="{{ params.monitor_id }}",
                    deferrable=mode == "deferrable",
                    poll_interval=0.2,
                    timeout=timeout,
                    unclear_grace=1,  # the default (120 s) is for real APIs; the emulator creates runs at once
                    retries=retries,
                    retry_delay=timedelta(0),
                )
            globals()[dag.dag_id] = dag

del dag  # each DAG is reachable once, under its own id
