"""@task.monid on a real Airflow (dag.test() against the emulator): lookup through the provider info,
plain and mapped, deferrable and not, a retry that reuses the recorded input, and the pre-pay guards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_monid._monid.preflight import VARIABLE_PREFIX, clear_inspect_cache
from airflow_monid.testing import Emulator
from airflow_monid.version_compat import AIRFLOW_V_3_1_PLUS, AIRFLOW_V_3_3_PLUS
from tests._support import EXAMPLE_DAGS, TEST_DAGS, load_dag, task_states, task_tries, xcoms

pytestmark = pytest.mark.usefixtures("dag_env")

DAGS = TEST_DAGS / "monid_decorator_dags.py"
TWEETS = ("apify", "/apidojo/tweet-scraper")
MODES = ["deferrable", "poll"]


@pytest.fixture(autouse=True)
def fresh_inspect_cache(airflow_db: Path) -> Iterator[None]:
    """Each test starts with no cached inspect answer, in this process or in a Variable."""

    def clear() -> None:
        from airflow.models.variable import Variable
        from airflow.utils.session import create_session

        clear_inspect_cache()
        with create_session() as session:
            session.query(Variable).filter(Variable.key.like(f"{VARIABLE_PREFIX}%")).delete(synchronize_session=False)

    clear()
    yield
    clear()


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "calls.txt"
    path.write_text("")
    monkeypatch.setenv("MONID_DECORATOR_CALLS", str(path))
    return path


def _run(dag_id: str):
    dag = load_dag(DAGS, dag_id)
    return dag.test()


def _paid(emu: Emulator) -> list[dict]:
    return [r.body for r in emu.requests("POST", "/v1/run")]


def test_task_monid_is_found_through_the_provider_info() -> None:
    from airflow.sdk import task

    from airflow_monid.decorators.monid import monid_task
    from airflow_monid.get_provider_info import get_provider_info

    try:  # where task.monid is looked up: the Task SDK's runtime manager (3.2+), else the core one
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime as Manager
    except ImportError:
        from airflow.providers_manager import ProvidersManager as Manager

    (entry,) = get_provider_info()["task-decorators"]
    assert entry["class-name"] == entry["path"] == "airflow_monid.decorators.monid.monid_task"
    assert Manager().taskflow_decorators["monid"] is monid_task
    assert task.monid is monid_task


@pytest.mark.parametrize("mode", MODES)
def test_plain_decorated_task_pays_once_and_returns_the_output(dag_env: Emulator, calls: Path, mode: str) -> None:
    dr = _run(f"monid_decorator_{mode}")
    assert dr.state == "success"
    values = xcoms(dr.dag_id, dr.run_id)
    output = values[("tweets", "return_value", -1)]
    assert output[0]["searchTerm"] == "airflow"
    (body,) = _paid(dag_env)
    sent = body["input"]
    assert sent["searchTerms"][0] == "airflow" and sent["searchTerms"][1].startswith("nonce-")
    assert sent["maxItems"] == 5 and sent["run"] == dr.run_id  # XComArg and context key reached the function
    assert calls.read_text().split() == ["tweets"]  # not called again on resume after the deferral
    run = values[("tweets", "run", -1)]
    assert run["actual_cost"] == {"value": pytest.approx(0.0012), "currency": "USD", "source": "cost"}
    assert dag_env.count("POST", "/v1/inspect") == 1  # max_cost read the price
    if mode == "deferrable":
        assert ("tweets", "deferral", -1) in values
    # The rendered fields show the input the function returned (after a deferral too on 3.3; README).
    if AIRFLOW_V_3_3_PLUS or (AIRFLOW_V_3_1_PLUS and mode == "poll"):
        assert _rendered(dr.dag_id, dr.run_id, "tweets")["input"] == sent


def _rendered(dag_id: str, run_id: str, task_id: str) -> dict:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as Rtif
    from airflow.utils.session import create_session

    with create_session() as session:
        if hasattr(Rtif, "dag_id"):
            return session.query(Rtif).filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id).one().rendered_fields
        # Airflow 3.4 keys rendered fields by task attempt
        from airflow.models.taskinstance import TaskInstance as TI

        query = session.query(Rtif).join(TI, Rtif.task_instance_id == TI.id)
        return query.filter(TI.dag_id == dag_id, TI.run_id == run_id, TI.task_id == task_id).one().rendered_fields


@pytest.mark.parametrize("mode", MODES)
def test_mapped_decorated_task_pays_once_per_map_index_with_one_inspect(
    dag_env: Emulator, calls: Path, mode: str
) -> None:
    dr = _run(f"monid_decorator_mapped_{mode}")
    assert dr.state == "success"
    values = xcoms(dr.dag_id, dr.run_id)
    assert values[("total", "return_value", -1)] == 9
    assert sorted(b["input"]["searchTerms"][0] for b in _paid(dag_env)) == ["dbt", "duckdb", "polars"]
    assert {b["input"]["maxItems"] for b in _paid(dag_env)} == {2}  # the partial() argument
    assert calls.read_text().split() == ["search"] * 3
    # One inspect served the three map indexes' price and schema checks (one process in dag.test()).
    assert dag_env.count("POST", "/v1/inspect") == 1
    assert {values[("search", "return_value", i)][0]["searchTerm"] for i in range(3)} == {"dbt", "duckdb", "polars"}


@pytest.mark.parametrize("mode", MODES)
def test_retry_sends_the_recorded_input_and_reuses_the_run(dag_env: Emulator, calls: Path, mode: str) -> None:
    dag_env.monid.set_endpoint(*TWEETS, polls_to_finish=None, stoppable=False)
    state = {"stop_seen": False, "completed": False}

    def finish_after_first_try(record) -> None:
        # After try 1 asked to stop (refused: not stoppable) and read the run once more, the run ends.
        if record.path.endswith("/stop"):
            state["stop_seen"] = True
        elif state["stop_seen"] and not state["completed"] and record.method == "GET":
            state["completed"] = True
            dag_env.monid.complete_run(record.path.rsplit("/", 1)[1])

    dag_env.on_request(finish_after_first_try)
    dr = _run(f"monid_decorator_retry_{mode}")
    if not AIRFLOW_V_3_3_PLUS:  # no task_state_store: the retry calls the function again (README limit)
        assert calls.read_text().split() == ["once", "once"]
        first, second = (b["input"]["searchTerms"][0] for b in _paid(dag_env))
        assert first != second and dr.state == "failed"  # a new input, a new run, which hit its deadline too
        return
    assert dr.state == "success"
    assert task_tries(dr.dag_id, dr.run_id, "once") == 2
    assert calls.read_text().split() == ["once"]  # the retry did not call the function
    (body,) = _paid(dag_env)  # and paid nothing more: the nonce matched, the run was reused
    output = xcoms(dr.dag_id, dr.run_id)[("once", "return_value", -1)]
    assert output[0]["searchTerm"] == body["input"]["searchTerms"][0]


def test_guards_refuse_before_paying(dag_env: Emulator) -> None:
    dr = _run("monid_decorator_guards")
    states = {task: state for (task, _), state in task_states(dr.dag_id, dr.run_id).items()}
    assert states == {
        "company_within_budget": "success",
        "company_above_budget": "failed",
        "company_other_currency": "failed",
        "tweets_unbounded": "failed",
        "tweets_cap_above_budget": "failed",
        "tweets_bad_input": "failed",
        "tweets_bad_input_warn": "success",
    }
    paid = _paid(dag_env)
    assert len(paid) == 2  # only the two tasks that succeeded paid
    assert {b["endpoint"] for b in paid} == {"/company/enrich", "/apidojo/tweet-scraper"}
    assert [b["input"]["maxItems"] for b in paid if b["provider"] == "apify"] == [0]
    assert dag_env.count("POST", "/v1/inspect") == 2  # one per endpoint, cached for the other tasks
    for task in ("company_above_budget", "tweets_bad_input"):
        assert task_tries(dr.dag_id, dr.run_id, task) == 1


def test_taskflow_example(dag_env: Emulator) -> None:
    dag = load_dag(EXAMPLE_DAGS / "monid_taskflow.py")
    dr = dag.test()
    assert dr.state == "success"
    values = xcoms(dr.dag_id, dr.run_id)
    assert values[("report", "return_value", -1)] == {"matched": ["John Doe"], "tweets": 3}
    paid = _paid(dag_env)
    assert sorted(b["input"].get("email", "") for b in paid) == ["", "jane.doe@example.com", "someone@nomatch.example"]
    (tweets,) = [b["input"] for b in paid if b["provider"] == "apify"]
    assert tweets["searchTerms"][0].startswith("airflow since:") and tweets["maxItems"] == 5
    assert dag_env.count("POST", "/v1/inspect") == 2  # one per endpoint for the three tasks


def test_input_is_the_functions_job() -> None:
    from airflow.sdk import DAG

    from airflow_monid.decorators.monid import monid_task
    from airflow_monid.exceptions import ConfigError

    with DAG("monid_decorator_input_arg", schedule=None), pytest.raises(ConfigError, match="do not pass input="):

        @monid_task(provider="pdl", endpoint="/person/enrich", input={"email": "x"})
        def enrich() -> dict:
            return {}

        enrich()


def test_mapped_results_stay_aligned_with_their_inputs_when_one_has_no_match(dag_env: Emulator) -> None:
    """Issue 19 (row M26): a no-match in the middle of a mapped enrichment returns {}, which Airflow
    stores, so the collected results pair each input with its own record (decorator and operator)."""
    dr = _run("monid_mapped_no_match")
    assert dr.state == "success", task_states(dr.dag_id, dr.run_id)
    values = xcoms(dr.dag_id, dr.run_id)
    expected = [
        ["ana@example.com", "ana@example.com"],
        ["nobody@nomatch.example", None],
        ["bo@example.com", "bo@example.com"],
    ]
    assert values[("pair_decorator", "return_value", -1)] == expected
    assert values[("pair_operator", "return_value", -1)] == expected
    for task_id in ("enrich", "enrich_operator"):
        assert values[(task_id, "return_value", 1)] == {}  # stored, not missing
    assert dag_env.count("POST", "/v1/run") == 6  # one paid run per map index of each task, no more


@pytest.mark.parametrize(
    ("budget", "paid"),
    [(None, 1), (0.001, 0), ("nan", 0), ("inf", 0), ("ten cents", 0)],
)
def test_max_cost_from_a_dag_param_is_checked_after_rendering(dag_env: Emulator, budget: object, paid: int) -> None:
    """Issue 19 (row M24): max_cost="{{ params.budget }}" is rendered, read as a number, and a budget
    below the price, NaN, infinity or text refuses the run before anything is paid."""
    dag = load_dag(DAGS, "monid_templated_budget")
    dr = dag.test() if budget is None else dag.test(run_conf={"budget": budget})
    assert dag_env.count("POST", "/v1/run") == paid
    assert task_states(dr.dag_id, dr.run_id)[("enrich", -1)] == ("success" if paid else "failed")
