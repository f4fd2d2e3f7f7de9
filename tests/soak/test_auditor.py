"""Self-test of the soak's money auditor (tests/soak/auditor.py) on synthetic ledgers: no cluster.

Each planted fault must be flagged (a double payment, a paid POST re-sent after a reset, a FAILED run
counted as success, a repay while a reusable run existed, a leftover deferred task, an unaccounted run,
a failure no outcome-table row explains, a key in a log), and the clean ledgers must pass.
"""

from __future__ import annotations

import datetime as dt

from airflow_monid.testing.emulator import Emulator
from tests.soak.auditor import FaultWindow, PlanItem, audit, render

T0 = 1_800_000_000.0
DAG, RUN = "soak_deferrable", "manual__1"
KEY = "mk_test_LEAKCANARY_unit"


def _ti(task: str = "run", index: int = 0) -> str:
    return f"{DAG}/{RUN}/{task}/{index}"


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def _run(run_id: str, ti: str, created: float, status: str = "COMPLETED", provider: int | None = 200) -> dict:
    terminal = status not in ("RUNNING", "PENDING")
    return {
        "runId": run_id,
        "status": status,
        "input": {"soak_ti": ti, "n": 0},
        "providerResponse": {"httpStatus": provider} if status == "COMPLETED" else None,
        "createdAt": _iso(created),
        "completedAt": _iso(created + 5) if terminal else None,
    }


def _post(ti: str, t: float, status: int = 202, fault: str | None = None) -> dict:
    return {
        "method": "POST",
        "path": "/v1/run",
        "body": {"provider": "soak", "endpoint": "/async/ok", "input": {"soak_ti": ti}},
        "status": status,
        "time": t,
        "fault": fault,
    }


def _tirow(ti: str, state: str, try_number: int = 1, end: float | None = T0 + 60) -> dict:
    dag, run, task, index = ti.split("/")
    return {
        "dag_id": dag,
        "run_id": run,
        "task_id": task,
        "map_index": int(index),
        "state": state,
        "try_number": try_number,
        "end_date": dt.datetime.fromtimestamp(end, dt.UTC) if end else None,
    }


def _hist(ti: str, try_number: int, end: float) -> dict:
    row = _tirow(ti, "failed", try_number, end)
    return row


def _audit(**kw):
    base = {
        "plan": [PlanItem(_ti(), "deferrable", "ok", retries=2)],
        "requests": [_post(_ti(), T0)],
        "monid_runs": [_run("r1", _ti(), T0)],
        "exa_runs": {},
        "task_instances": [_tirow(_ti(), "success")],
    }
    base.update(kw)
    return audit(**base)


def _invariants(result) -> set[str]:
    return {v.invariant.split()[0] for v in result.violations}


def test_one_good_run_per_successful_task_passes():
    result = _audit()
    assert result.ok, render(result)
    assert result.figures["POSTs per paying TI (mean, max)"] == (1.0, 1)


def test_a_retry_that_reuses_its_run_passes():
    # try 1 died after the POST; try 2 reused the run: one run, two tries, success
    result = _audit(task_instances=[_tirow(_ti(), "success", 2)], history=[_hist(_ti(), 1, T0 + 10)])
    assert result.ok, render(result)


def test_pay_again_after_a_failed_run_passes():
    runs = [_run("r1", _ti(), T0, "FAILED"), _run("r2", _ti(), T0 + 20)]
    result = _audit(
        requests=[_post(_ti(), T0), _post(_ti(), T0 + 20)],
        monid_runs=runs,
        task_instances=[_tirow(_ti(), "success", 2)],
        history=[_hist(_ti(), 1, T0 + 10)],
    )
    assert result.ok, render(result)


def test_double_payment_is_flagged():
    runs = [_run("r1", _ti(), T0), _run("r2", _ti(), T0 + 20)]
    result = _audit(
        requests=[_post(_ti(), T0), _post(_ti(), T0 + 20)],
        monid_runs=runs,
        task_instances=[_tirow(_ti(), "success", 2)],
        history=[_hist(_ti(), 1, T0 + 10)],
    )
    assert {"I1", "I3"} <= _invariants(result), render(result)


def test_paid_post_resent_after_a_reset_is_flagged():
    # reset after handling: the run exists; the same try sends the POST again
    runs = [_run("r1", _ti(), T0), _run("r2", _ti(), T0 + 1)]
    result = _audit(
        requests=[_post(_ti(), T0, status=0, fault="reset"), _post(_ti(), T0 + 1)],
        monid_runs=runs,
    )
    assert "I2" in _invariants(result), render(result)
    assert "I3" in _invariants(result)


def test_a_try_without_a_history_row_still_owns_the_run_it_made():
    # Try 1 deferred on r1, then failed while queued (Airflow wrote no history row); try 2 started at
    # T0 + 30, found r1 BLOCKED and paid r2, as the table says. Only the last try's start tells them apart.
    runs = [_run("r1", _ti(), T0, status="BLOCKED"), _run("r2", _ti(), T0 + 40, status="BLOCKED")]
    ti = _tirow(_ti(), "failed", 2, end=T0 + 60) | {"start_date": dt.datetime.fromtimestamp(T0 + 30, dt.UTC)}
    result = _audit(requests=[_post(_ti(), T0), _post(_ti(), T0 + 40)], monid_runs=runs, task_instances=[ti])
    assert "I2" not in _invariants(result) and "I3" not in _invariants(result), render(result)
    # the same ledger with both POSTs after try 2 started is one try paying twice
    late = [_run("r1", _ti(), T0 + 35, status="BLOCKED"), runs[1]]
    result = _audit(requests=[_post(_ti(), T0 + 35), _post(_ti(), T0 + 40)], monid_runs=late, task_instances=[ti])
    assert "I2" in _invariants(result), render(result)


def test_repay_while_the_lost_run_was_hidden_is_reported_not_flagged():
    runs = [_run("r1", _ti(), T0), _run("r2", _ti(), T0 + 20)]
    result = _audit(
        requests=[_post(_ti(), T0, status=0, fault="reset"), _post(_ti(), T0 + 20)],
        monid_runs=[runs[0] | {"status": "COMPLETED"}, runs[1]],
        task_instances=[_tirow(_ti(), "success", 2)],
        history=[_hist(_ti(), 1, T0 + 10)],
        fault_windows=[FaultWindow("list_hide_new", T0 - 5, T0 + 60, seconds=30)],
    )
    assert "I3" not in _invariants(result), render(result)
    assert len(result.lost_post_window) == 1 and "r1" in result.lost_post_window[0]
    # r1 and r2 both completed well: r2 is the reported window's run, so I1 does not count it twice
    assert "I1" not in _invariants(result)


def test_two_good_runs_with_the_list_hiding_nothing_are_flagged():
    # the same ledger as above without the list fault: the retry could have found r1
    runs = [_run("r1", _ti(), T0), _run("r2", _ti(), T0 + 20)]
    result = _audit(
        requests=[_post(_ti(), T0, status=0, fault="reset"), _post(_ti(), T0 + 20)],
        monid_runs=runs,
        task_instances=[_tirow(_ti(), "success", 2)],
        history=[_hist(_ti(), 1, T0 + 10)],
    )
    assert {"I1", "I3"} <= _invariants(result), render(result)
    assert result.lost_post_window == []


def test_failed_run_counted_as_success_is_flagged():
    result = _audit(
        plan=[PlanItem(_ti(), "deferrable", "failed", retries=0)],
        monid_runs=[_run("r1", _ti(), T0, "FAILED")],
    )
    assert _invariants(result) == {"I1"}, render(result)


def test_provider_5xx_counted_as_success_is_flagged_but_allowed_404_is_not():
    bad = _audit(monid_runs=[_run("r1", _ti(), T0, provider=503)])
    assert "I1" in _invariants(bad)
    ok = _audit(
        plan=[PlanItem(_ti(), "deferrable", "p404ok", allowed=(404,))],
        monid_runs=[_run("r1", _ti(), T0, provider=404)],
    )
    assert ok.ok, render(ok)


def test_leftover_deferred_task_is_flagged():
    result = _audit(task_instances=[_tirow(_ti(), "deferred", end=None)])
    assert _invariants(result) == {"I6"}, render(result)


def test_missing_task_instance_is_flagged():
    result = _audit(task_instances=[])
    assert "I6" in _invariants(result)


def test_unaccounted_run_is_flagged():
    stray = _run("r9", "other_dag/x/run/0", T0)
    result = _audit(monid_runs=[_run("r1", _ti(), T0), stray])
    assert _invariants(result) == {"I4"}, render(result)


def test_failure_with_a_good_run_and_no_fault_is_flagged():
    result = _audit(task_instances=[_tirow(_ti(), "failed")])
    assert _invariants(result) == {"I5"}, render(result)


def test_failure_named_by_the_outcome_table_passes():
    failed = _audit(
        plan=[PlanItem(_ti(), "deferrable", "failed")],
        monid_runs=[_run("r1", _ti(), T0, "FAILED")],
        task_instances=[_tirow(_ti(), "failed")],
    )
    assert failed.ok, render(failed)
    provider = _audit(monid_runs=[_run("r1", _ti(), T0, provider=404)], task_instances=[_tirow(_ti(), "failed")])
    assert provider.ok, render(provider)
    process = _audit(task_instances=[_tirow(_ti(), "failed")], process_faults=[(T0 + 30, "kill_worker")])
    assert process.ok, render(process)


def test_key_in_a_log_is_flagged():
    result = _audit(texts={"worker-1.log": f"token {KEY} leaked", "xcom": "clean"}, secrets=[KEY])
    assert _invariants(result) == {"I7"}
    assert result.violations[0].ti == "worker-1.log"


def test_exa_trigger_reuse_and_double_trigger():
    ti = f"soak_exa_trigger/{RUN}/run/0"
    plan = [PlanItem(ti, "exa_trigger", "exa", pays="exa", monitor="m0")]
    one = [{"id": "e1", "status": "completed", "createdAt": _iso(T0)}]
    ok = _audit(plan=plan, requests=[], monid_runs=[], exa_runs={"m0": one}, task_instances=[_tirow(ti, "success")])
    assert ok.ok, render(ok)
    two = [*one, {"id": "e2", "status": "completed", "createdAt": _iso(T0 + 1)}]
    bad = _audit(plan=plan, requests=[], monid_runs=[], exa_runs={"m0": two}, task_instances=[_tirow(ti, "success")])
    assert {"I1", "I2", "I3"} <= _invariants(bad), render(bad)


def test_sensor_success_on_a_failed_submitted_run_is_flagged():
    submit, sensor = _ti("submit", -1), _ti("wait", -1)
    plan = [
        PlanItem(submit, "submit", "failed", wait=False),
        PlanItem(sensor, "sensor", "failed", pays=None, linked=submit),
    ]
    result = _audit(
        plan=plan,
        requests=[_post(submit, T0)],
        monid_runs=[_run("r1", submit, T0, "FAILED")],
        task_instances=[_tirow(submit, "success"), _tirow(sensor, "success")],
    )
    assert _invariants(result) == {"I1"} and result.violations[0].ti == sensor, render(result)


def test_render_names_the_seed_and_the_request_history():
    result = _audit(monid_runs=[_run("r1", _ti(), T0, "FAILED")])
    text = render(result, seed=42)
    assert "FAIL" in text and "(seed 42)" in text and "POST /v1/run" in text


def test_emulator_list_hides_new_runs_and_lags_behind_a_run():
    import httpx

    with Emulator(monid_api_key="k") as emu:
        emu.monid.set_endpoint("soak", "/sync/ok", mode="sync")
        emu.monid.list_hide_new_seconds = 3600
        client = httpx.Client(base_url=emu.url, headers={"Authorization": "Bearer k"}, trust_env=False)
        run = client.post("/v1/run", json={"provider": "soak", "endpoint": "/sync/ok", "input": {}}).json()
        assert client.get("/v1/runs").json()["items"] == []
        assert client.get(f"/v1/runs/{run['runId']}").json()["status"] == "COMPLETED"
        emu.monid.list_hide_new_seconds = 0
        emu.monid.list_lag_seconds = 3600
        (listed,) = client.get("/v1/runs").json()["items"]
        assert listed["status"] == "RUNNING" and listed["cost"] is None
        control = client.post("/_emulator/monid/settings", json={"list_lag_seconds": 0}).json()
        assert control["list_lag_seconds"] == 0
        assert client.get("/v1/runs").json()["items"][0]["status"] == "COMPLETED"
        emu.exa.add_monitor("m1")
        emu.exa.add_run("m1")
        assert len(client.get("/_emulator/exa/runs/m1").json()) == 1
        client.close()


def test_mapped_task_not_expanded_after_its_upstream_failed_is_counted_not_flagged():
    unexpanded = _tirow(f"{DAG}/{RUN}/run/-1", "upstream_failed")
    result = _audit(requests=[], monid_runs=[], task_instances=[unexpanded])
    assert result.ok, render(result)
    assert ("deferrable", "not expanded (upstream_failed)", 1) in result.tables["tasks by path and outcome"]


def test_a_process_fault_long_before_the_last_try_explains_nothing():
    row = _tirow(_ti(), "failed") | {"start_date": dt.datetime.fromtimestamp(T0 + 50, dt.UTC)}
    far = _audit(task_instances=[row], process_faults=[(T0 - 300, "kill_worker")])
    assert _invariants(far) == {"I5"}, render(far)
    near = _audit(task_instances=[row], process_faults=[(T0 + 55, "restart_redis")])
    assert near.ok and near.figures["failure reasons"]["process fault during its last try (restart_redis)"] == 1
