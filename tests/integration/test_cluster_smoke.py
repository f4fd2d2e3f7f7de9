"""Smoke tests of the harness itself, on core Airflow only (tests/integration/dags/smoke_dag.py)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.integration import browser as ui
from tests.integration.cluster import AirflowCluster

DAG_ID = "integration_smoke"


@pytest.mark.integration
def test_deferring_run_succeeds_and_xcom_reads_back(airflow_cluster: AirflowCluster) -> None:
    c = airflow_cluster
    # long enough for trigger_rows() (a subprocess that imports Airflow: 3-8 s, 20+ s on a loaded
    # 2-core machine, where 20 s once let the trigger fire first) to see the row
    run_id = c.trigger_dag(DAG_ID, conf={"wait_seconds": 45})

    assert c.wait_task_state(DAG_ID, run_id, "wait", ["deferred"], timeout=120) == "deferred"
    rows = c.trigger_rows()  # rows exist only while deferred
    assert [r.classpath for r in rows] == ["airflow.providers.standard.triggers.temporal.DateTimeTrigger"]
    assert set(rows[0].kwargs) >= {"moment", "end_from_trigger"}
    assert "DateTimeTrigger" in rows[0].repr

    assert c.wait_dag_run(DAG_ID, run_id, timeout=180) == "success", c.observed_states(DAG_ID, run_id)
    assert "deferred" in c.observed_states(DAG_ID, run_id)["wait"]
    assert c.task_states(DAG_ID, run_id) == {"wait": "success", "produce": "success"}
    assert c.xcom(DAG_ID, run_id, "produce") == {"answer": 42, "run_id": run_id, "conf": {"wait_seconds": 45}}

    # worker log + the triggerer's log for the same try, as files under AIRFLOW_HOME/logs
    files = [p.name for p in c.task_log_files(DAG_ID, run_id, "wait")]
    assert files[0] == "attempt=1.log" and any(".trigger." in f for f in files[1:]), files
    assert "DateTimeTrigger" in c.task_log_text(DAG_ID, run_id, "wait")
    assert run_id in c.xcom_table_text()
    assert "produce" in c.all_logs_text()


@pytest.mark.integration
def test_mark_deferred_task_failed_over_rest(airflow_cluster: AirflowCluster) -> None:
    c = airflow_cluster
    run_id = c.trigger_dag(DAG_ID, conf={"wait_seconds": 600})
    c.wait_task_state(DAG_ID, run_id, "wait", ["deferred"], timeout=120)
    c.set_task_state(DAG_ID, run_id, "wait", "failed")
    assert c.wait_dag_run(DAG_ID, run_id, timeout=120) == "failed"
    assert c.task_states(DAG_ID, run_id) == {"wait": "failed", "produce": "upstream_failed"}


@pytest.mark.integration
def test_triggerer_restart_while_deferred(airflow_cluster: AirflowCluster) -> None:
    c = airflow_cluster
    run_id = c.trigger_dag(DAG_ID, conf={"wait_seconds": 25})
    c.wait_task_state(DAG_ID, run_id, "wait", ["deferred"], timeout=120)
    first = c.wait_trigger_running(DAG_ID, run_id, "wait", timeout=60)  # really running in a triggerer
    old = set(c.pids("triggerer"))

    took = c.restart_component("triggerer")  # SIGKILL the process group, start, wait healthy

    assert old and old.isdisjoint(c.pids("triggerer"))
    assert took < 90
    # the new triggerer adopts the orphaned trigger once the old one's heartbeat is older than
    # triggerer_health_check_threshold (10 s) and runs it again from serialize()d kwargs
    assert c.wait_dag_run(DAG_ID, run_id, timeout=180) == "success", c.observed_states(DAG_ID, run_id)
    ids = {p.name.split(".trigger.")[1].split(".")[0] for p in c.task_log_files(DAG_ID, run_id, "wait")[1:]}
    assert str(first) in ids and len(ids) == 2, ids
    assert c.xcom(DAG_ID, run_id, "produce")["conf"] == {"wait_seconds": 25}


@pytest.mark.integration
def test_everything_listens_on_loopback_only(airflow_cluster: AirflowCluster) -> None:
    if shutil.which("ss") is None:
        pytest.skip("`ss` (iproute2) is not installed")
    listeners = airflow_cluster.listening_sockets()
    assert f"127.0.0.1:{airflow_cluster.port}" in [addr for addr, _pid in listeners]
    assert airflow_cluster.non_loopback_listeners() == []


@pytest.mark.integration
def test_connection_endpoints(airflow_cluster: AirflowCluster, tmp_path) -> None:
    c = airflow_cluster
    types = {h["connection_type"] for h in c.hook_meta()}
    assert {"generic", "fs"} <= types
    ok = c.test_connection({"connection_id": "it_fs_probe", "conn_type": "fs", "extra": {"path": str(tmp_path)}})
    assert ok == {"status": True, "message": f"Path {tmp_path} is existing."}
    bad = c.test_connection({"connection_id": "it_fs_probe", "conn_type": "fs", "extra": {"path": "/nonexistent"}})
    assert bad["status"] is False
    assert c.get_connection("it_fs_probe") is None  # testing does not store
    # 3.3 worker-side test: the scheduler dispatches it to the executor
    queued = c.enqueue_connection_test(
        {"connection_id": "it_fs_q", "conn_type": "fs", "extra": {"path": str(tmp_path)}}
    )
    assert (queued["state"], queued["result_message"]) == ("success", f"Path {tmp_path} is existing."), queued


@pytest.mark.integration
@pytest.mark.browser
def test_ui_add_connection_form_save_and_test(airflow_cluster: AirflowCluster, ui_page, tmp_path) -> None:
    c, page = airflow_cluster, ui_page

    dlg = ui.open_add_connection_form(page, c.base_url, "Generic")
    assert {"host", "login", "password", "port", "schema"} <= set(ui.form_fields(page))
    shot = ui.screenshot(dlg, "smoke_add_connection_generic")
    assert shot.stat().st_size > 1000

    # save through the form (an extra field of the fs type), then read it back over REST
    saved = ui.add_connection_via_form(
        page,
        c.base_url,
        "File (path)",
        "it_ui_fs",
        extra={"path": str(tmp_path)},
        screenshot_name="smoke_add_connection_fs_filled",
    )
    assert saved.status == 201, saved
    stored = c.get_connection("it_ui_fs")
    assert stored is not None
    assert stored["conn_type"] == "fs" and json.loads(stored["extra"]) == {"path": str(tmp_path)}

    # "Test Connection" on the list row. A stored connection *with* a port tests fine ...
    c.create_connection(
        {"connection_id": "it_ui_fs_port", "conn_type": "fs", "port": 1, "extra": {"path": str(tmp_path)}}
    )
    res = ui.test_connection_in_ui(page, c.base_url, "it_ui_fs_port")
    assert res.ok and res.title == "Test Connection Successful", res
    assert res.message == f"Path {tmp_path} is existing."
    ui.screenshot(page, "smoke_test_connection_toast")

    # ... one without a port hits the 3.3.2 UI bug (port: Number(null) == 0 -> HTTP 400), fixed
    # upstream by apache/airflow#73298; accept the fixed behaviour too.
    res = ui.test_connection_in_ui(page, c.base_url, "it_ui_fs")
    if res.http_status == 400:
        assert res.request_body["port"] == 0 and "differs from the stored connection" in res.response["detail"]
        assert (res.ok, res.title, res.message) == (False, "Test Connection Failed", "Bad Request")
    else:
        assert res.ok, res
