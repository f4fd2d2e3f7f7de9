"""The chaos soak's workload (tests/soak/driver.py): one DAG per path, driven by run conf.

Every paying task sends an input that names its task instance, ``{"soak_ti":
"<dag_id>/<run_id>/<task_id>/<map_index>", ...}``, so the auditor attributes each ``POST /v1/run`` and each
run to a task instance without reading anything the provider keeps. Exa tasks get one monitor each
(``conf["monitors"]``), the monitor attributes the trigger.

conf: ``{"items": [{"endpoint": "/async/ok", "allowed": [404]}, ...]}`` for the mapped Monid DAGs,
``{"endpoint": ...}`` for submit-then-sensor, ``{"monitors": [...], "after": ISO}`` for the Exa DAGs.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, get_current_context, task

from airflow_monid.operators.exa import ExaTriggerMonitorOperator
from airflow_monid.operators.monid import MonidRunOperator
from airflow_monid.sensors.exa import ExaMonitorRunSensor
from airflow_monid.sensors.monid import MonidRunSensor

PROVIDER = "soak"
START = pendulum.datetime(2026, 1, 1, tz="UTC")
OUTPUT_DIR = os.path.join(os.environ.get("AIRFLOW_HOME") or "/tmp", "soak-output")
COMMON: dict[str, Any] = {
    "poll_interval": 2,
    "timeout": 300,
    "validate_input": False,
    "retry_delay": timedelta(seconds=1),
}


HELPER = {"retries": 3, "retry_delay": timedelta(seconds=1)}  # a lost worker must not fail the whole DAG run


@task(**HELPER)
def items(task_id: str = "run") -> list[dict[str, Any]]:
    ctx = get_current_context()
    ti, conf = ctx["ti"], ctx["dag_run"].conf or {}
    return [
        {
            "endpoint": item["endpoint"],
            "input": {"soak_ti": f"{ti.dag_id}/{ti.run_id}/{task_id}/{i}", "n": i},
            "allowed_provider_statuses": item.get("allowed", []),
        }
        for i, item in enumerate(conf.get("items", []))
    ]


@task(**HELPER)
def monitors() -> list[str]:
    return list(get_current_context()["dag_run"].conf.get("monitors", []))


def _dag(dag_id: str) -> DAG:
    return DAG(dag_id, schedule=None, start_date=START, catchup=False, max_active_tasks=64, tags=["soak"])


for dag_id, extra in (
    ("soak_sync", {"deferrable": False}),
    ("soak_deferrable", {"deferrable": True}),
    ("soak_worker_poll", {"deferrable": False}),
    (
        "soak_output_path",
        {
            "deferrable": True,
            "output_path": f"file://{OUTPUT_DIR}/{{{{ ti.run_id }}}}/{{{{ ti.map_index }}}}/{{monid_run_id}}.json",
        },
    ),
):
    with _dag(dag_id) as dag:
        MonidRunOperator.partial(task_id="run", provider=PROVIDER, retries=2, **COMMON, **extra).expand_kwargs(items())
    globals()[dag_id] = dag

with _dag("soak_timeout") as soak_timeout:
    # runs that never finish: the try's execution_timeout stops them, the retry pays again (M6)
    for mode, deferrable in (("run", True), ("poll", False)):
        MonidRunOperator.partial(
            task_id=mode,
            provider=PROVIDER,
            retries=1,
            execution_timeout=timedelta(seconds=15),
            deferrable=deferrable,
            **COMMON,
        ).expand_kwargs(items.override(task_id=f"items_{mode}")(task_id=mode))

with _dag("soak_submit_sensor") as soak_submit_sensor:
    submit = MonidRunOperator(
        task_id="submit",
        provider=PROVIDER,
        endpoint="{{ dag_run.conf['endpoint'] }}",
        input={"soak_ti": "{{ ti.dag_id }}/{{ ti.run_id }}/submit/-1"},
        wait_for_completion=False,
        retries=2,
        **COMMON,
    )
    wait = MonidRunSensor(
        task_id="wait",
        run_id="{{ ti.xcom_pull(task_ids='submit', key='run_id') }}",
        deferrable=True,
        poke_interval=2,
        timeout=240,
        retries=1,
        retry_delay=timedelta(seconds=1),
    )
    submit >> wait


@task.monid(provider=PROVIDER, endpoint="/async/ok", deferrable=True, retries=2, **COMMON)
def run(n: int) -> dict[str, Any]:
    ti = get_current_context()["ti"]
    return {"soak_ti": f"{ti.dag_id}/{ti.run_id}/run/{ti.map_index}", "n": n}


@task(**HELPER)
def numbers() -> list[int]:
    return list(range(len(get_current_context()["dag_run"].conf.get("items", []))))


with _dag("soak_taskflow") as soak_taskflow:
    run.expand(n=numbers())

with _dag("soak_exa_trigger") as soak_exa_trigger:
    ExaTriggerMonitorOperator.partial(
        task_id="run",
        deferrable=True,
        poll_interval=2,
        timeout=240,
        retries=2,
        retry_delay=timedelta(seconds=1),
        unclear_grace=30,
    ).expand(monitor_id=monitors())

with _dag("soak_exa_sensor") as soak_exa_sensor:
    ExaMonitorRunSensor.partial(
        task_id="run",
        deferrable=True,
        poke_interval=2,
        timeout=240,
        retries=1,
        retry_delay=timedelta(seconds=1),
        created_after="{{ dag_run.conf['after'] }}",
    ).expand(monitor_id=monitors())
