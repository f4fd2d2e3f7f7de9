"""Exactly-once on a real cluster: the worker dies after the run id was stored, the retry reuses it.

A non-deferrable ``MonidRunOperator`` (``retries=1``, no retry delay) submits a run and polls it on
the worker. On the emulator's first ``GET /v1/runs/{id}`` (so after ``POST /v1/run`` and after the
run ledger was written to ``task_state_store``), the test SIGKILLs the task's LocalExecutor worker
(its supervisor) and the task process it forked, while that GET is still unanswered. Nothing
reports the task's end; the scheduler's heartbeat timeout (10 s in the harness) puts it up for
retry, and try 2 must find the stored run and reuse it: one ``POST /v1/run`` in total.

The triggerer side of the same guarantee ("triggerer killed while polling, restarted: exactly one
POST, right output") is ``test_triggerer_sigkill_while_deferred_resumes_the_same_run`` in
test_provider_cluster.py.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from tests.integration.cluster import AirflowCluster, _wait_until
from tests.integration.provider_support import (
    ClusterEmulator,
    processes_of_ti,
    sigkill_worker_of_ti,
    wait_emulator_request,
)

POLL_DAG = "it_monid_poll_retry"  # tests/integration/dags/monid_params_dags.py
TWEETS = ("apify", "/apidojo/tweet-scraper")


def _ledger(c: AirflowCluster, run_id: str) -> dict[str, Any] | None:
    rows = c.sql(
        "SELECT value FROM task_state_store WHERE dag_id = ? AND run_id = ? AND task_id = 'run' AND key = 'monid_run'",
        (POLL_DAG, run_id),
    )
    return json.loads(rows[0]["value"]) if rows else None


@pytest.mark.integration
def test_worker_sigkill_after_the_run_was_stored_retries_without_paying_again(
    airflow_cluster: AirflowCluster, cluster_emulator: ClusterEmulator
) -> None:
    c, emu = airflow_cluster, cluster_emulator
    out = [{"id": "7", "text": "paid for once"}]
    emu.monid.set_endpoint(*TWEETS, polls_to_finish=None)  # RUNNING until the test completes it

    first_poll = threading.Event()
    killed = threading.Event()
    first_path: list[str] = []

    def on_request(record: Any) -> None:
        # Runs in the emulator's handler thread before the answer is sent: the first poll of the run
        # waits here, unanswered, until the main thread has killed the process that sent it.
        if record.method == "GET" and record.path.startswith("/v1/runs/") and not first_poll.is_set():
            first_path.append(record.path)
            first_poll.set()
            killed.wait(120)

    emu.on_request(on_request)
    run = c.trigger_dag(POLL_DAG, conf={"input": {"searchTerms": ["exactly-once"]}})
    try:
        assert first_poll.wait(120), "the task never polled its run"
        monid_run_id = first_path[0].rsplit("/", 1)[1]
        ti = c.task_instance(POLL_DAG, run, "run")
        assert (ti["state"], ti["try_number"]) == ("running", 1)
        # the run id was persisted before the first poll
        ledger = _ledger(c, run)
        assert ledger is not None and (ledger["run_id"], ledger["delivered"]) == (monid_run_id, False), ledger
        assert len(emu.run_posts()) == 1
        killed_procs = sigkill_worker_of_ti(c, ti["id"])
        killed_at = time.time()
    finally:
        killed.set()
    assert len(killed_procs) == 2 and processes_of_ti(ti["id"]) == []

    # no one reported the end of try 1: the scheduler's heartbeat timeout puts the task up for retry
    def try_two_running() -> bool:
        now = c.task_instance(POLL_DAG, run, "run")
        return now["try_number"] == 2 and now["state"] == "running"

    _wait_until(try_two_running, 120, "try 2 to run", lambda: str(c.observed_states(POLL_DAG, run)))
    # up_for_retry may last less than one 0.5 s REST poll (retry_delay=0); a re-queue after running
    # is what proves the scheduler started a new try.
    states = c.observed_states(POLL_DAG, run)["run"]
    first_running = states.index("running")
    assert {"up_for_retry", "queued", "scheduled"} & set(states[first_running + 1 :]), states
    wait_emulator_request(
        emu,
        lambda r: r.method == "GET" and r.path == f"/v1/runs/{monid_run_id}" and r.time > killed_at,
        60,
        "try 2 reading the stored run",
    )
    emu.monid.complete_run(monid_run_id, output=out)

    assert c.wait_dag_run(POLL_DAG, run, timeout=120) == "success", c.observed_states(POLL_DAG, run)
    final = c.task_instance(POLL_DAG, run, "run")
    assert (final["state"], final["try_number"]) == ("success", 2)
    assert final["id"] != ti["id"]  # a new try
    assert c.xcom(POLL_DAG, run, "run") == out
    posts = emu.run_posts()
    assert len(posts) == 1 and posts[0].body["input"] == {"searchTerms": ["exactly-once"]}
    assert emu.count("POST", f"/v1/runs/{monid_run_id}/stop") == 0
    # delivered, and listed among the delivered runs that are never adopted again
    assert _ledger(c, run) == {**ledger, "delivered": True, "delivered_runs": [monid_run_id]}

    events = c.sql(
        "SELECT event, try_number FROM log WHERE dag_id = ? AND run_id = ? AND event = 'heartbeat timeout'",
        (POLL_DAG, run),
    )
    assert events == [{"event": "heartbeat timeout", "try_number": 1}]
    assert f"Submitted Monid run {monid_run_id}" in c.task_log_text(POLL_DAG, run, "run", try_number=1)
    try2 = c.task_log_text(POLL_DAG, run, "run", try_number=2)
    assert f"Reusing Monid run {monid_run_id} from an earlier try" in try2
    assert "Submitted Monid run" not in try2
