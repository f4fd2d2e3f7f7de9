"""Example and scenario DAGs run with dag.test() against the emulator over real HTTP."""

from __future__ import annotations

import pytest

from airflow_monid.testing import Emulator
from tests._support import EXAMPLE_DAGS, TEST_DAGS, load_dag, task_states, task_tries, xcoms

pytestmark = pytest.mark.usefixtures("dag_env")

TWEETS = "/apidojo/tweet-scraper"


def _run(path, dag_id=None, **kwargs):
    dag = load_dag(path, dag_id)
    dr = dag.test(**kwargs)
    return dag.dag_id, dr


def test_async_tweets_defers_and_returns_output(dag_env: Emulator) -> None:
    dag_id, dr = _run(EXAMPLE_DAGS / "monid_async_tweets.py")
    assert dr.state == "success"
    values = xcoms(dag_id, dr.run_id)
    run_id = values[("scrape_tweets", "run_id", -1)]
    assert len(values[("scrape_tweets", "return_value", -1)]) == 3
    assert values[("count", "return_value", -1)] == 3
    run = values[("scrape_tweets", "run", -1)]
    assert run["runId"] == run_id and run["status"] == "COMPLETED"
    assert "output" not in run and "input" not in run
    assert values[("scrape_tweets", "run_url", -1)].endswith(f"/runs/{run_id}")
    assert dag_env.count("POST", "/v1/run") == 1
    # Only GETs after the submission: the trigger polls, execute_complete fetches once.
    assert {r.method for r in dag_env.requests(path=f"/v1/runs/{run_id}")} == {"GET"}


def test_sync_enrichment_finishes_without_polling(dag_env: Emulator) -> None:
    dag_id, dr = _run(EXAMPLE_DAGS / "monid_sync_enrichment.py")
    assert dr.state == "success"
    values = xcoms(dag_id, dr.run_id)
    assert isinstance(values[("enrich_known_person", "return_value", -1)], dict)
    assert values.get(("enrich_unknown_person", "return_value", -1)) == {}  # no match: {} (row M26), stored
    assert values[("enrich_unknown_person", "run", -1)]["providerResponse"]["httpStatus"] == 404
    assert dag_env.count("POST", "/v1/run") == 2
    assert dag_env.count("GET", path_prefix="/v1/runs") == 0


def test_dynamic_mapping_pays_once_per_input(dag_env: Emulator) -> None:
    dag_id, dr = _run(EXAMPLE_DAGS / "monid_dynamic_mapping.py")
    assert dr.state == "success"
    values = xcoms(dag_id, dr.run_id)
    assert values[("summarise", "return_value", -1)] == {"runs": 3, "items": 9}
    assert dag_env.count("POST", "/v1/run") == 3
    terms = sorted(r.body["input"]["searchTerms"][0] for r in dag_env.requests("POST", "/v1/run"))
    assert terms == ["airflow", "dbt", "duckdb"]


def test_submit_then_sensor(dag_env: Emulator) -> None:
    dag_id, dr = _run(EXAMPLE_DAGS / "monid_submit_then_sensor.py")
    assert dr.state == "success"
    values = xcoms(dag_id, dr.run_id)
    run_id = values[("submit", "return_value", -1)]
    assert run_id == values[("submit", "run_id", -1)]
    assert {t["searchTerm"] for t in values[("wait_for_run", "return_value", -1)]} == {"lakehouse"}
    assert values[("wait_for_run", "run", -1)]["runId"] == run_id
    assert dag_env.count("POST", path_prefix="/v1/runs/") == 0  # a sensor never stops a run


MODES = ["deferrable", "poll"]


def _scenario(mode: str, suffix: str = "", **conf):
    return _run(TEST_DAGS / "monid_scenarios.py", f"monid_scenario_{mode}{suffix}", run_conf=conf or None)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("script", "expected_state"),
    [
        ({"final_status": "FAILED", "reason": "pipeline crashed"}, "failed"),
        ({"provider_status": 500, "provider_error": {"message": "upstream down"}, "output": None}, "failed"),
        ({"provider_status": 400, "provider_error": {"message": "bad field"}, "output": None}, "failed"),
        ({"final_status": "BLOCKED", "reason": "WORKSPACE_BUDGET"}, "failed"),
        ({"final_status": "TIME_OUT"}, "failed"),
        ({"provider_status": 404, "output": None}, "success"),
        ({"final_status": ["RUNNING", "SOMETHING_NEW", "COMPLETED"]}, "success"),
    ],
    ids=["failed", "provider500", "provider400", "blocked", "time_out", "allowed404", "unknown-then-completed"],
)
def test_outcome_table_async(dag_env: Emulator, mode: str, script: dict, expected_state: str) -> None:
    dag_env.monid.set_endpoint("apify", TWEETS, mode="async", polls_to_finish=1, **script)
    dag_id, dr = _scenario(mode)
    assert task_states(dag_id, dr.run_id)[("run", -1)] == expected_state
    assert dag_env.count("POST", "/v1/run") == 1
    values = xcoms(dag_id, dr.run_id)
    assert values[("run", "run", -1)]["runId"] == values[("run", "run_id", -1)]
    output = values.get(("run", "return_value", -1))
    if script.get("provider_status") == 404:
        assert output == {}  # allowed provider status: {} (row M26), never None
    elif expected_state == "success":
        assert output[0]["searchTerm"] == "x"
    else:
        assert output is None


@pytest.mark.parametrize("mode", MODES)
def test_deadline_stops_the_run(dag_env: Emulator, mode: str) -> None:
    dag_env.monid.set_endpoint("apify", TWEETS, mode="async", polls_to_finish=None)
    dag_id, dr = _scenario(mode, "_short")
    assert task_states(dag_id, dr.run_id)[("run", -1)] == "failed"
    run_id = xcoms(dag_id, dr.run_id)[("run", "run_id", -1)]
    assert dag_env.count("POST", f"/v1/runs/{run_id}/stop") == 1
    assert dag_env.monid.get_run(run_id)["status"] in ("STOPPING", "STOPPED")


@pytest.mark.parametrize("mode", MODES)
def test_a_5xx_burst_while_waiting_uses_no_retry_and_no_second_run(dag_env: Emulator, mode: str) -> None:
    """Longer than the hook's own retries (4 attempts): the wait rides it out in both modes."""
    dag_env.monid.set_endpoint("apify", TWEETS, mode="async", polls_to_finish=2)
    dag_env.add_fault("GET", r"/v1/runs/[^/]+", action="respond", status=503, times=6)
    dag_id, dr = _scenario(mode, "_retry")
    assert dr.state == "success"
    assert task_tries(dag_id, dr.run_id, "run") == 1
    assert dag_env.count("POST", "/v1/run") == 1
    assert xcoms(dag_id, dr.run_id)[("run", "return_value", -1)][0]["searchTerm"] == "x"


@pytest.mark.parametrize("mode", MODES)
def test_execution_timeout_is_the_deadline_in_every_mode(dag_env: Emulator, mode: str) -> None:
    """execution_timeout=3 s with timeout=3600: the run is stopped at 3 s, deferred or not (M15)."""
    dag_env.monid.set_endpoint("apify", TWEETS, mode="async", polls_to_finish=None)
    dag_id, dr = _scenario(mode, "_exec_timeout")
    assert task_states(dag_id, dr.run_id)[("run", -1)] == "failed"
    run_id = xcoms(dag_id, dr.run_id)[("run", "run_id", -1)]
    assert dag_env.count("POST", f"/v1/runs/{run_id}/stop") >= 1
    assert dag_env.monid.get_run(run_id)["status"] in ("STOPPING", "STOPPED")
    if mode == "deferrable":  # the trigger carried the 3 s bound, not the hour
        deferral = xcoms(dag_id, dr.run_id)[("run", "deferral", -1)]
        assert deferral["bound"] == "execution_timeout" and deferral["seconds"] == 3


@pytest.mark.parametrize("mode", MODES)
def test_retry_after_failed_run_pays_again(dag_env: Emulator, mode: str) -> None:
    dag_env.monid.set_endpoint("apify", TWEETS, mode="async", polls_to_finish=1, final_status="FAILED")
    dag_id, dr = _scenario(mode, "_retry")
    assert dr.state == "failed"
    assert task_tries(dag_id, dr.run_id, "run") == 2
    assert dag_env.count("POST", "/v1/run") == 2
