"""Fault injection through real DAG runs: every case states the task outcome and the request counts.

Outcome rules checked throughout: no double charge (POST /v1/run count), no lost run (a run created
by a POST whose answer was lost is adopted), no success on a failed or unknown outcome, no wait past
the deadline.
"""

from __future__ import annotations

import email.utils
import time

import pytest

from airflow_monid.testing import Emulator
from tests._support import TEST_DAGS, load_dag, monid_conn, task_states, xcoms

pytestmark = pytest.mark.usefixtures("dag_env")
TWEETS = "/apidojo/tweet-scraper"
RUN_PATH = r"/v1/runs/[^/]+"


def _run(mode: str, suffix: str = "") -> tuple[str, dict]:
    dag = load_dag(TEST_DAGS / "monid_scenarios.py", f"monid_scenario_{mode}{suffix}")
    dr = dag.test()
    return task_states(dag.dag_id, dr.run_id)[("run", -1)], xcoms(dag.dag_id, dr.run_id)


def _http_date(seconds_ahead: float) -> str:
    return email.utils.formatdate(time.time() + seconds_ahead, usegmt=True)


@pytest.mark.parametrize("mode", ["deferrable", "poll"])
@pytest.mark.parametrize("retry_after", ["1", "http-date"])
def test_429_storm_on_post_and_get(dag_env: Emulator, mode: str, retry_after: str) -> None:
    """429 without a run means nothing ran: the POST is re-sent after Retry-After; GETs retry too."""
    value = retry_after if retry_after != "http-date" else _http_date(1)
    dag_env.add_fault("POST", "/v1/run", action="respond", status=429, headers={"Retry-After": value}, times=2)
    dag_env.add_fault("GET", RUN_PATH, action="respond", status=429, headers={"Retry-After": value}, times=2)
    state, values = _run(mode)
    assert state == "success"
    assert dag_env.count("POST", "/v1/run") == 3  # two throttled, one accepted: one run paid for
    assert len(dag_env.monid.runs()) == 1
    assert values[("run", "return_value", -1)][0]["searchTerm"] == "x"


@pytest.mark.parametrize("mode", ["deferrable", "poll"])
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_burst_while_waiting_ends(dag_env: Emulator, mode: str, status: int) -> None:
    dag_env.monid.set_endpoint("apify", TWEETS, mode="async", polls_to_finish=2)
    dag_env.add_fault("GET", RUN_PATH, action="respond", status=status, times=6)
    state, _ = _run(mode)
    assert state == "success"
    assert dag_env.count("POST", "/v1/run") == 1


@pytest.mark.parametrize("mode", ["deferrable", "poll"])
def test_5xx_that_never_ends_stops_at_the_deadline(dag_env: Emulator, mode: str) -> None:
    dag_env.monid.set_endpoint("apify", TWEETS, mode="async", polls_to_finish=None)
    dag_env.add_fault("GET", RUN_PATH, action="respond", status=503, times=None)
    state, values = _run(mode, "_short")
    assert state == "failed"  # the wait ended at its deadline instead of hanging
    assert dag_env.count("POST", "/v1/run") == 1
    run_id = values[("run", "run_id", -1)]
    assert dag_env.count("POST", f"/v1/runs/{run_id}/stop") == 1  # the run is not left going


@pytest.mark.parametrize("mode", ["deferrable", "poll"])
@pytest.mark.parametrize("action", ["reset", "truncate"])
def test_lost_submit_answer_adopts_the_created_run(dag_env: Emulator, mode: str, action: str) -> None:
    """The POST reached Monid (a run exists) but the answer was lost: adopt, never re-send."""
    dag_env.add_fault("POST", "/v1/run", action=action, after_handling=True)
    state, values = _run(mode)
    assert state == "success"
    assert dag_env.count("POST", "/v1/run") == 1
    (run,) = dag_env.monid.runs()
    assert values[("run", "run_id", -1)] == run["runId"]


def test_hung_submit_past_client_timeout_adopts(dag_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MONID_DEFAULT", monid_conn(dag_env.url, timeout=1))
    dag_env.add_fault("POST", "/v1/run", action="hang", after_handling=True, hang_seconds=30)
    state, values = _run("poll")
    assert state == "success"
    assert dag_env.count("POST", "/v1/run") == 1
    assert values[("run", "run_id", -1)] == dag_env.monid.runs()[0]["runId"]


@pytest.mark.parametrize(
    ("fault", "why"),
    [
        ({"action": "html", "status": 502}, "HTML error page"),
        ({"action": "respond", "status": 500}, "5xx without a run"),
        ({"action": "respond", "status": 200, "body": {"hello": "not a run"}}, "200 that is not a run"),
    ],
)
def test_unclear_submit_without_a_run_fails_without_resending(dag_env: Emulator, fault: dict, why: str) -> None:
    dag_env.add_fault("POST", "/v1/run", **fault)
    state, values = _run("deferrable")
    assert state == "failed", why
    assert dag_env.count("POST", "/v1/run") == 1
    assert ("run", "return_value", -1) not in values


def test_run_flipping_running_completed_cached(dag_env: Emulator) -> None:
    dag_env.monid.set_endpoint("apify", TWEETS, mode="async", final_status=["RUNNING", "COMPLETED", "COMPLETED"])
    state, values = _run("deferrable")
    assert state == "success"
    run_gets = [r for r in dag_env.requests("GET") if r.path.startswith("/v1/runs/")]
    assert run_gets and all(r.status == 200 for r in run_gets)
    assert values[("run", "run", -1)]["status"] == "COMPLETED"


@pytest.mark.parametrize("mode", ["deferrable", "poll"])
def test_unknown_status_never_succeeds(dag_env: Emulator, mode: str) -> None:
    dag_env.monid.set_endpoint("apify", TWEETS, mode="async", final_status="PAUSED_FOR_REVIEW")
    state, values = _run(mode, "_short")
    assert state == "failed"
    assert ("run", "return_value", -1) not in values
    assert dag_env.count("POST", "/v1/run") == 1
