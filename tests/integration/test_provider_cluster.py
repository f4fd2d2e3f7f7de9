"""The provider on a real Airflow 3.3 cluster (scheduler, dag-processor, triggerer, API server), driven
over ``/api/v2`` against the session emulator.

- the example DAGs run to success: the Monid async run is seen ``deferred`` (in the triggerer, no
  worker process) then ``success`` with its output as XCom; the sync provider never defers; the
  Exa sensor example defers and takes the monitor run created after the DAG run started;
- a triggerer SIGKILLed while a Monid run is deferred: the new triggerer resumes polling the same
  run, the task gets the right output, and exactly one ``POST /v1/run`` was made;
- a user marking the deferred task failed makes the trigger stop the run (Airflow 3.3 on_kill);
- a run that ends FAILED and one that COMPLETES with provider 500 fail their tasks, and the task
  log names the run and the reason.

Fake runs stay pending until the scheduler has processed the deferral (see
``wait_deferral_processed``), then complete on command: no sleeps, no timing thresholds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_monid.testing.emulator import RecordedRequest
from tests._support import MONID_KEY
from tests.integration.cluster import AirflowCluster, _wait_until
from tests.integration.provider_support import (
    EXA_TRIGGER,
    MONID_TRIGGER,
    ClusterEmulator,
    TriggerRowReader,
    capture_trigger_rows,
    trigger_job_ids,
    wait_deferral_processed,
    wait_emulator_request,
    wait_no_worker_process,
    wait_trigger_adopted,
)

ASYNC_DAG = "monid_async_tweets"
SYNC_DAG = "monid_sync_enrichment"
EXA_DAG = "exa_monitor_sensor"
DEFERRABLE_DAG = "it_monid_deferrable"  # tests/integration/dags/monid_params_dags.py
TWEETS = ("apify", "/apidojo/tweet-scraper")


def _ti_state_now(c: AirflowCluster, dag_id: str, run_id: str, task_id: str) -> str | None:
    """TI state with a client of its own: called from an emulator handler thread."""
    try:
        r = httpx.get(
            f"{c.base_url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}",
            headers={"Authorization": f"Bearer {c.token()}"},
            timeout=30,
            trust_env=False,
        )
        return r.json().get("state") if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


def status_read(monid_run_id: str, since: float) -> Callable[[RecordedRequest], bool]:
    """A read of the run's status by a trigger after ``since`` (the emulator's log holds earlier tests'
    requests too): the shared poller's list page (the default; the run is among the newest) or, for
    runs outside the list, the run's own GET."""
    return lambda r: (
        r.method == "GET" and r.path in ("/v1/runs", f"/v1/runs/{monid_run_id}") and r.status == 200 and r.time > since
    )


def _run_requests(emu: ClusterEmulator, run_id: str, method: str = "GET") -> list[Any]:
    return emu.requests(method, f"/v1/runs/{run_id}")


def _error_messages(c: AirflowCluster, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> list[str]:
    """``exc_value`` of every exception logged by the worker for that try (JSON log lines)."""
    out = []
    for path in c.task_log_files(dag_id, run_id, task_id, try_number)[:1]:  # the worker's own log
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            for detail in record.get("error_detail") or []:
                out.append(str(detail.get("exc_value")))
    return out


# ---------------------------------------------------------------------------------------------- 1
@pytest.mark.integration
def test_example_dags_run_to_success_over_the_rest_api(
    airflow_cluster: AirflowCluster, cluster_emulator: ClusterEmulator, trigger_row_reader: TriggerRowReader
) -> None:
    c, emu = airflow_cluster, cluster_emulator
    tweets_out = [{"id": "1", "text": "Airflow on a real cluster"}, {"id": "2", "text": "Deferred, not blocking"}]
    emu.monid.set_endpoint(*TWEETS, polls_to_finish=None)  # RUNNING until the test completes it
    emu.exa.add_monitor("mon_funding", name="Startup funding rounds")
    earlier = emu.exa.add_run("mon_funding", status="completed", created_at=time.time() - 3600)

    # the three DAG runs progress side by side
    async_run = c.trigger_dag(ASYNC_DAG)
    sync_run = c.trigger_dag(SYNC_DAG)
    exa_run = c.trigger_dag(EXA_DAG)
    # The sensor itself (task running) finds no run created since the DAG run started, and defers.
    # The example's trigger looks every 60 s, so its *first* look at the runs (task deferred) is held
    # until the next monitor run exists.
    exa_first_look = emu.hold(
        "GET",
        "/monitors/mon_funding/runs",
        predicate=lambda req: _ti_state_now(c, EXA_DAG, exa_run, "wait_for_monitor_run") == "deferred",
    )

    # Monid async: deferred, running in a triggerer, no worker process left for the task
    async_ti = wait_deferral_processed(c, ASYNC_DAG, async_run, "scrape_tweets")
    assert c.wait_trigger_running(ASYNC_DAG, async_run, "scrape_tweets") > 0
    wait_no_worker_process(async_ti)
    monid_run_id = c.xcom(ASYNC_DAG, async_run, "scrape_tweets", key="run_id")
    assert emu.monid.get_run(monid_run_id)["status"] == "RUNNING"

    # Exa: deferred too, and its trigger is at the door
    wait_deferral_processed(c, EXA_DAG, exa_run, "wait_for_monitor_run")
    assert exa_first_look.wait_arrived(timeout=60) == "/monitors/mon_funding/runs"
    rows = capture_trigger_rows(trigger_row_reader)  # both triggers exist right now
    (monid_row,) = [r for r in rows if r.classpath == MONID_TRIGGER and r.kwargs.get("run_id") == monid_run_id]
    assert monid_row.kwargs["monid_conn_id"] == "monid_default" and monid_row.kwargs["poll_interval"] == 1.0
    (exa_row,) = [r for r in rows if r.classpath == EXA_TRIGGER and r.kwargs.get("monitor_id") == "mon_funding"]
    assert exa_row.kwargs["run_id"] is None and exa_row.kwargs["created_after"], exa_row.kwargs

    nxt = emu.exa.add_run("mon_funding", polls_to_finish=1)  # pending; completed when the trigger reads it
    exa_first_look.release()
    emu.monid.complete_run(monid_run_id, output=tweets_out)

    # --- monid_async_tweets: seen deferred, then success; output readable as XCom over the API
    assert c.wait_dag_run(ASYNC_DAG, async_run, timeout=180) == "success", c.observed_states(ASYNC_DAG, async_run)
    seen = c.observed_states(ASYNC_DAG, async_run)["scrape_tweets"]
    assert "deferred" in seen and seen[-1] == "success", seen
    assert c.task_states(ASYNC_DAG, async_run) == {"scrape_tweets": "success", "count": "success"}
    assert c.xcom(ASYNC_DAG, async_run, "scrape_tweets") == tweets_out
    assert c.xcom(ASYNC_DAG, async_run, "count") == len(tweets_out)
    assert c.xcom(ASYNC_DAG, async_run, "scrape_tweets", key="run")["status"] == "COMPLETED"
    assert [r.body["provider"] for r in emu.run_posts()].count("apify") == 1
    assert len(trigger_job_ids(c, ASYNC_DAG, async_run, "scrape_tweets")) == 1

    # --- monid_sync_enrichment: finished without ever deferring
    assert c.wait_dag_run(SYNC_DAG, sync_run, timeout=180) == "success", c.observed_states(SYNC_DAG, sync_run)
    tasks = ("enrich_known_person", "enrich_unknown_person")
    assert c.task_states(SYNC_DAG, sync_run) == dict.fromkeys(tasks, "success")
    for task_id in tasks:
        assert "deferred" not in c.observed_states(SYNC_DAG, sync_run)[task_id]
        assert trigger_job_ids(c, SYNC_DAG, sync_run, task_id) == set()  # no trigger ever ran for it
        assert "Deferring" not in c.task_log_text(SYNC_DAG, sync_run, task_id)
        pdl_run = c.xcom(SYNC_DAG, sync_run, task_id, key="run_id")
        assert _run_requests(emu, pdl_run) == []  # answered finished by POST /v1/run: never polled
    known = c.xcom(SYNC_DAG, sync_run, "enrich_known_person")
    assert known["work_email"] == "jane.doe@example.com" and known["full_name"] == "John Doe"
    # "no match" (provider 404, allowed) succeeds with {} (row M26: a value Airflow stores, never None)
    unknown_keys = {x["key"] for x in c.xcom_entries(SYNC_DAG, sync_run, "enrich_unknown_person")}
    assert {"return_value", "run", "run_id", "run_url"} <= unknown_keys
    assert c.xcom(SYNC_DAG, sync_run, "enrich_unknown_person") == {}
    assert c.xcom(SYNC_DAG, sync_run, "enrich_unknown_person", key="run")["providerResponse"]["httpStatus"] == 404
    assert [r.body["provider"] for r in emu.run_posts()].count("pdl") == 2

    # --- exa_monitor_sensor: deferred, then took the run created after the DAG run started
    assert c.wait_dag_run(EXA_DAG, exa_run, timeout=180) == "success", c.observed_states(EXA_DAG, exa_run)
    assert "deferred" in c.observed_states(EXA_DAG, exa_run)["wait_for_monitor_run"]
    assert nxt["id"] != earlier["id"]
    assert c.xcom(EXA_DAG, exa_run, "wait_for_monitor_run")["id"] == nxt["id"]
    assert c.xcom(EXA_DAG, exa_run, "summarise") == {
        "run_id": nxt["id"],
        "count": 2,
        "urls": [f"https://news.example.com/mon_funding/{i}" for i in (1, 2)],
    }
    assert len(trigger_job_ids(c, EXA_DAG, exa_run, "wait_for_monitor_run")) == 1
    assert emu.count("POST", path_prefix="/monitors") == 0  # a sensor never triggers a (billed) run


# ---------------------------------------------------------------------------------------------- 2
@pytest.mark.integration
def test_triggerer_sigkill_while_deferred_resumes_the_same_run(
    airflow_cluster: AirflowCluster, cluster_emulator: ClusterEmulator, trigger_row_reader: TriggerRowReader
) -> None:
    c, emu = airflow_cluster, cluster_emulator
    out = [{"id": "42", "text": "survived a triggerer SIGKILL"}]
    emu.monid.set_endpoint(*TWEETS, polls_to_finish=None)
    run = c.trigger_dag(DEFERRABLE_DAG, conf={"input": {"searchTerms": ["triggerer-restart"]}})

    wait_deferral_processed(c, DEFERRABLE_DAG, run, "run")
    first = c.wait_trigger_running(DEFERRABLE_DAG, run, "run", timeout=60)
    running_at = time.time()
    monid_run_id = c.xcom(DEFERRABLE_DAG, run, "run", key="run_id")
    wait_emulator_request(emu, status_read(monid_run_id, since=running_at), 60, "poll by the first triggerer")
    (row,) = capture_trigger_rows(trigger_row_reader, MONID_TRIGGER)
    assert row.kwargs["run_id"] == monid_run_id

    old = set(c.pids("triggerer"))
    c.restart_component("triggerer")  # SIGKILL the process group, start again, wait until healthy
    restarted_at = time.time()
    assert old and old.isdisjoint(c.pids("triggerer"))
    assert emu.monid.get_run(monid_run_id)["status"] == "RUNNING"

    second = wait_trigger_adopted(c, DEFERRABLE_DAG, run, "run", first)
    wait_emulator_request(
        emu,
        status_read(monid_run_id, since=restarted_at),
        90,
        "poll of the same run by the new triggerer",
    )
    emu.monid.complete_run(monid_run_id, output=out)

    assert c.wait_dag_run(DEFERRABLE_DAG, run, timeout=180) == "success", c.observed_states(DEFERRABLE_DAG, run)
    assert c.xcom(DEFERRABLE_DAG, run, "run") == out
    assert trigger_job_ids(c, DEFERRABLE_DAG, run, "run") == {first, second} and first != second
    assert c.task_instance(DEFERRABLE_DAG, run, "run")["try_number"] == 1
    posts = emu.run_posts()
    assert len(posts) == 1 and posts[0].body["input"] == {"searchTerms": ["triggerer-restart"]}
    assert _run_requests(emu, monid_run_id + "/stop", "POST") == []  # a restart is not a user kill


# ---------------------------------------------------------------------------------------------- 3
@pytest.mark.integration
def test_marking_a_deferred_task_failed_stops_the_monid_run(
    airflow_cluster: AirflowCluster, cluster_emulator: ClusterEmulator, trigger_row_reader: TriggerRowReader
) -> None:
    c, emu = airflow_cluster, cluster_emulator
    emu.monid.set_endpoint(*TWEETS, polls_to_finish=None)
    run = c.trigger_dag(DEFERRABLE_DAG, conf={"input": {"searchTerms": ["user-kill"]}})

    wait_deferral_processed(c, DEFERRABLE_DAG, run, "run")
    c.wait_trigger_running(DEFERRABLE_DAG, run, "run", timeout=60)
    running_at = time.time()
    monid_run_id = c.xcom(DEFERRABLE_DAG, run, "run", key="run_id")
    wait_emulator_request(emu, status_read(monid_run_id, since=running_at), 60, "poll by the trigger")
    (row,) = capture_trigger_rows(trigger_row_reader, MONID_TRIGGER)
    # The operator's own trigger class (it owns the run; the sensor's MonidRunSensorTrigger never stops).
    assert row.kwargs["run_id"] == monid_run_id
    assert set(row.kwargs) == {"run_id", "monid_conn_id", "poll_interval", "end_time", "created_at"}
    assert row.kwargs["created_at"] == emu.monid.get_run(monid_run_id)["createdAt"]  # bounds the poller's paging
    assert _run_requests(emu, monid_run_id + "/stop", "POST") == []

    c.set_task_state(DEFERRABLE_DAG, run, "run", "failed")  # the user's "mark failed"

    stop = wait_emulator_request(
        emu,
        lambda r: r.method == "POST" and r.path == f"/v1/runs/{monid_run_id}/stop",
        60,
        f"POST /v1/runs/{monid_run_id}/stop",
    )
    assert stop.status == 202
    assert emu.monid.get_run(monid_run_id)["status"] in ("STOPPING", "STOPPED")
    assert emu.http_get_run(monid_run_id, MONID_KEY)["status"] == "STOPPED"  # STOPPING -> STOPPED on a GET

    assert c.wait_dag_run(DEFERRABLE_DAG, run, timeout=120) == "failed"
    assert c.task_states(DEFERRABLE_DAG, run) == {"run": "failed"}
    assert len(emu.run_posts()) == 1
    assert len(_run_requests(emu, monid_run_id + "/stop", "POST")) == 1
    line = f"Stop requested for Monid run {monid_run_id} (task failed)"  # on_kill read the task's state
    _wait_until(
        lambda: line in c.task_log_text(DEFERRABLE_DAG, run, "run"),
        30,
        "the trigger's on_kill log line",
    )


# ---------------------------------------------------------------------------------------------- 4
@pytest.mark.integration
def test_failed_and_provider_500_runs_fail_the_task_with_the_reason_in_its_log(
    airflow_cluster: AirflowCluster, cluster_emulator: ClusterEmulator
) -> None:
    c, emu = airflow_cluster, cluster_emulator
    provider_message = "Upstream scraper crashed (emulated)"
    failed_reason = "Actor run failed: out of memory (emulated)"
    emu.monid.set_endpoint(*TWEETS, polls_to_finish=None, provider_error={"status": 500, "message": provider_message})
    failed_run = c.trigger_dag(DEFERRABLE_DAG, conf={"input": {"searchTerms": ["ends-failed"]}})
    p500_run = c.trigger_dag(DEFERRABLE_DAG, conf={"input": {"searchTerms": ["provider-500"]}})

    ids = {}
    for run in (failed_run, p500_run):
        wait_deferral_processed(c, DEFERRABLE_DAG, run, "run")
        ids[run] = c.xcom(DEFERRABLE_DAG, run, "run", key="run_id")
    assert len(set(ids.values())) == 2
    emu.monid.fail_run(ids[failed_run], reason=failed_reason)
    emu.monid.complete_run(ids[p500_run], provider_status=500)

    for run in (failed_run, p500_run):
        assert c.wait_dag_run(DEFERRABLE_DAG, run, timeout=180) == "failed", c.observed_states(DEFERRABLE_DAG, run)
        assert c.task_states(DEFERRABLE_DAG, run) == {"run": "failed"}
        assert "deferred" in c.observed_states(DEFERRABLE_DAG, run)["run"]

    # what the user reads in the task log: the run id and the reason
    (failed_msg,) = _error_messages(c, DEFERRABLE_DAG, failed_run, "run")
    assert ids[failed_run] in failed_msg and "ended FAILED" in failed_msg and failed_reason in failed_msg, failed_msg
    (p500_msg,) = _error_messages(c, DEFERRABLE_DAG, p500_run, "run")
    assert ids[p500_run] in p500_msg and "HTTP 500" in p500_msg and provider_message in p500_msg, p500_msg
    assert "COMPLETED" in p500_msg

    # the terminal run JSON is in XCom before the failure is decided
    assert c.xcom(DEFERRABLE_DAG, failed_run, "run", key="run")["status"] == "FAILED"
    p500 = c.xcom(DEFERRABLE_DAG, p500_run, "run", key="run")
    assert p500["status"] == "COMPLETED" and p500["providerResponse"]["httpStatus"] == 500
    assert len(emu.run_posts()) == 2
    assert emu.count("POST", path_prefix="/v1/runs/") == 0  # terminal runs are not stopped
