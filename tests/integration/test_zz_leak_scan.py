"""Leak scan at the end of the integration session (this file's name makes it run last).

The cluster's connections carry distinctive keys (tests/_support.MONID_KEY / EXA_KEY). After every
other integration test has run, neither may appear in:

- the logs of any process (component logs, task and trigger logs, DAG-processor logs);
- the ``xcom`` table, the ``rendered_task_instance_fields`` table, the ``task_state_store`` table;
- the trigger rows: decrypted ``Trigger.kwargs`` and ``repr()`` of the rebuilt trigger. Rows exist
  only while a task is deferred, so the tests capture them then (provider_support.CAPTURED_TRIGGER_ROWS).

The scan must have scanned something: non-empty texts that show the provider ran, and captured
Monid and Exa trigger rows. Run on its own, it first defers one Monid run to capture a row.
"""

from __future__ import annotations

import json

import pytest

from tests._support import EXA_KEY, MONID_KEY
from tests.integration.cluster import AirflowCluster
from tests.integration.provider_support import (
    CAPTURED_TRIGGER_ROWS,
    EXA_TRIGGER,
    MONID_TRIGGER,
    ClusterEmulator,
    TriggerRowReader,
    capture_trigger_rows,
    wait_deferral_processed,
)

SECRETS = {
    "MONID_KEY": MONID_KEY,
    "EXA_KEY": EXA_KEY,
    # fragments too: a truncated or partly masked key is still a leak
    "MONID_KEY head": MONID_KEY[:24],
    "MONID_KEY tail": MONID_KEY[-24:],
    "EXA_KEY head": EXA_KEY[:24],
    "EXA_KEY tail": EXA_KEY[-24:],
}


def _defer_one_monid_run(c: AirflowCluster, emu: ClusterEmulator, reader: TriggerRowReader) -> None:
    """Only when this file runs alone: produce a deferred Monid task and capture its trigger row."""
    emu.monid.set_endpoint("apify", "/apidojo/tweet-scraper", polls_to_finish=None)
    run = c.trigger_dag("it_monid_deferrable", conf={"input": {"searchTerms": ["leak-scan"]}})
    wait_deferral_processed(c, "it_monid_deferrable", run, "run")
    capture_trigger_rows(reader)
    emu.monid.complete_run(c.xcom("it_monid_deferrable", run, "run", key="run_id"))
    assert c.wait_dag_run("it_monid_deferrable", run, timeout=180) == "success"


@pytest.mark.integration
def test_no_api_key_anywhere_after_the_session(
    airflow_cluster: AirflowCluster, cluster_emulator: ClusterEmulator, trigger_row_reader: TriggerRowReader
) -> None:
    c = airflow_cluster
    if not any(r.classpath == MONID_TRIGGER for r in CAPTURED_TRIGGER_ROWS):
        _defer_one_monid_run(c, cluster_emulator, trigger_row_reader)

    trigger_text = "\n".join(
        json.dumps({"id": r.id, "classpath": r.classpath, "kwargs": r.kwargs, "repr": r.repr}, sort_keys=True)
        for r in CAPTURED_TRIGGER_ROWS
    )
    texts = {
        "logs of every process": c.all_logs_text(),
        "xcom table": c.xcom_table_text(),
        "rendered_task_instance_fields table": c.table_text("rendered_task_instance_fields"),
        "task_state_store table": c.table_text("task_state_store"),
        "trigger rows (decrypted kwargs + repr)": trigger_text,
    }

    # it scanned something real
    assert "Submitted Monid run" in texts["logs of every process"]
    assert any(".trigger." in p.name for p in c.log_files()), "no trigger log was scanned"
    assert '"key": "run_id"' in texts["xcom table"]
    assert "apify" in texts["rendered_task_instance_fields table"]
    assert '"monid_run"' in texts["task_state_store table"]
    classes = {r.classpath for r in CAPTURED_TRIGGER_ROWS}
    assert MONID_TRIGGER in classes, classes
    for r in CAPTURED_TRIGGER_ROWS:
        assert r.kwargs and not r.repr.startswith("<rebuild failed"), r
    if c.sql("SELECT 1 FROM dag_run WHERE dag_id = 'exa_monitor_sensor'"):  # the example test ran
        assert EXA_TRIGGER in classes, classes

    leaks = [f"{name} in the {where}" for where, text in texts.items() for name, key in SECRETS.items() if key in text]
    assert leaks == []
