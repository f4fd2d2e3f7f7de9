"""Issue 19, the traps a new user hit in the first hour: guards that NaN, infinity, strings or templates
could bypass, the input check on by default, messages that say what would satisfy a schema or which check
could not run, and link lines that read like failures. Against the emulator over real HTTP."""

from __future__ import annotations

import math
from typing import Any

import pytest

from airflow_monid._monid.preflight import clear_inspect_cache
from airflow_monid.exceptions import ConfigError, InputSchemaError, PermanentError, TransientAPIError
from airflow_monid.operators.monid import MonidRunOperator
from airflow_monid.sensors.exa import ExaMonitorRunSensor
from airflow_monid.sensors.monid import MonidRunSensor
from airflow_monid.testing import Emulator
from airflow_monid.testing.__main__ import seed_exa
from tests._support import EXAMPLE_DAGS, TEST_DAGS, load_dag, task_states, xcoms

PERSON = {"provider": "pdl", "endpoint": "/person/enrich"}


@pytest.fixture(autouse=True)
def _fresh_inspect_cache() -> None:
    clear_inspect_cache()


class TI:
    """The little of a task instance that execute() reads outside a task runner."""

    def __init__(self) -> None:
        self.dag_id, self.task_id, self.run_id, self.map_index, self.try_number, self.max_tries = (
            "d",
            "t",
            "r",
            -1,
            1,
            0,
        )
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def _context() -> dict[str, Any]:
    return {"ti": TI(), "task_state_store": None}


# --- guards that nothing bypasses (row M24) ---------------------------------------------------------


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, -1, True, "ten cents", "", "nan", "inf", [0.01], {"usd": 1}]
)
def test_max_cost_refuses_what_would_switch_the_guard_off(value: Any) -> None:
    with pytest.raises(ConfigError, match="max_cost must be a finite number >= 0"):
        MonidRunOperator(task_id="t", **PERSON, max_cost=value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -1, 2.5, True, "ten"])
def test_max_results_refuses_what_is_no_whole_number(value: Any) -> None:
    with pytest.raises(ConfigError, match="max_results must be a whole number >= 0"):
        MonidRunOperator(task_id="t", **PERSON, max_results=value)


def test_numbers_and_templates_pass_when_the_task_is_built() -> None:
    op = MonidRunOperator(task_id="t", **PERSON, max_cost="{{ params.budget }}", max_results="{{ params.n }}")
    assert op.max_cost == "{{ params.budget }}" and op.max_results == "{{ params.n }}"
    assert {"max_cost", "max_results"} <= set(op.template_fields)
    assert MonidRunOperator(task_id="t", **PERSON, max_cost="0.01", max_results=5).max_cost == 0.01


@pytest.mark.parametrize("rendered", ["nan", "inf", "-0.5", "", "None", "ten cents"])
def test_a_template_that_renders_to_no_amount_fails_before_any_request(connections: Emulator, rendered: str) -> None:
    op = MonidRunOperator(task_id="t", **PERSON, input={"email": "a@example.com"}, max_cost="{{ x }}")
    op.max_cost = rendered  # what Airflow's rendering leaves on the operator
    with pytest.raises(ConfigError, match=r"max_cost must be a finite number >= 0 .* rendered to") as info:
        op.execute(_context())
    assert isinstance(info.value, PermanentError)  # no retry
    assert "Nothing was sent" in str(info.value)
    assert connections.requests() == []


@pytest.mark.parametrize("statuses", ["404", ["404"], [404.0], [True], [99], {"404": 1}, None])
def test_allowed_provider_statuses_must_be_integers(statuses: Any) -> None:
    with pytest.raises(ConfigError, match="allowed_provider_statuses must"):
        MonidRunOperator(task_id="t", **PERSON, allowed_provider_statuses=statuses)
    with pytest.raises(ConfigError, match="allowed_provider_statuses must"):
        MonidRunSensor(task_id="t", run_id="r", allowed_provider_statuses=statuses)


@pytest.mark.parametrize(("field", "value"), [("provider", ""), ("endpoint", "  "), ("provider", None)])
def test_an_empty_provider_or_endpoint_fails_when_the_task_is_built(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=field):
        MonidRunOperator(task_id="t", **{**PERSON, field: value})


@pytest.mark.parametrize("sensor", [MonidRunSensor, ExaMonitorRunSensor])
@pytest.mark.parametrize("timing", [{"timeout": math.inf}, {"poke_interval": math.inf}, {"timeout": math.nan}])
def test_sensor_timing_must_be_finite(sensor: Any, timing: dict[str, float]) -> None:
    args = {"run_id": "r"} if sensor is MonidRunSensor else {"monitor_id": "m"}
    with pytest.raises(ConfigError, match="must be a finite number of seconds"):
        sensor(task_id="t", **args, **timing)


# --- the input check, on by default (rows M21, M25) ------------------------------------------------------


def test_the_input_is_checked_by_default_and_nothing_is_paid(connections: Emulator) -> None:
    op = MonidRunOperator(task_id="t", **PERSON, input={"name": "Jane"})
    with pytest.raises(InputSchemaError) as info:
        op.execute(_context())
    # anyOf of two required fields: the message says which would satisfy it.
    assert "needs one of: email, profile" in str(info.value) and "Nothing was paid" in str(info.value)
    assert connections.count("POST", "/v1/run") == 0 and connections.count("POST", "/v1/inspect") == 1


def test_validate_input_false_opts_out_and_makes_no_inspect_call(connections: Emulator) -> None:
    op = MonidRunOperator(task_id="t", **PERSON, input={"name": "Jane"}, validate_input=False)
    op.execute(_context())
    assert connections.count("POST", "/v1/run") == 1 and connections.count("POST", "/v1/inspect") == 0


@pytest.mark.parametrize(
    ("options", "check"),
    [({"max_cost": 0.01}, "the cost guard (max_cost) could not read the price"), ({}, "validate_input could not")],
)
def test_an_unreadable_inspect_names_the_check_and_says_nothing_was_paid(
    connections: Emulator, options: dict[str, Any], check: str
) -> None:
    connections.add_fault("POST", r"/v1/inspect", status=503, times=None)
    op = MonidRunOperator(task_id="t", **PERSON, input={"email": "a@example.com"}, **options)
    with pytest.raises(TransientAPIError) as info:  # the type still decides the retry (row M22)
        op.execute(_context())
    text = str(info.value)
    assert check in text and "Nothing was paid" in text and "/v1/inspect" in text
    assert connections.count("POST", "/v1/run") == 0


# --- no [error] line on a path that is not an error ------------------------------------------------------


def test_a_websets_sensor_registers_no_link_it_cannot_fill() -> None:
    assert ExaMonitorRunSensor(task_id="t", monitor_id="w", monitor_type="websets").operator_extra_links == ()
    assert [link.name for link in ExaMonitorRunSensor(task_id="t", monitor_id="m").operator_extra_links] == [
        "Exa Run",
        "Exa Monitor",
    ]


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", ["deferrable", "poll"])
def test_a_failed_task_logs_no_xcom_not_found_for_its_links(
    dag_env: Emulator, capfd: pytest.CaptureFixture[str], mode: str
) -> None:
    """A try that failed before (or after) its run was known: the link is empty or the run's URL, quietly."""
    dag_env.monid.set_endpoint("apify", "/apidojo/tweet-scraper", mode="async", final_status="FAILED")
    dag = load_dag(TEST_DAGS / "monid_scenarios.py", f"monid_scenario_{mode}")
    dr = dag.test()
    assert task_states(dr.dag_id, dr.run_id)[("run", -1)] == "failed"
    out = capfd.readouterr()
    assert "XCom not found" not in out.out + out.err
    run_id = xcoms(dr.dag_id, dr.run_id)[("run", "run_id", -1)]
    assert xcoms(dr.dag_id, dr.run_id)[("run", "_link_MonidRunLink", -1)].endswith(f"/runs/{run_id}")


@pytest.mark.usefixtures("dag_env")
def test_the_websets_example_logs_no_xcom_not_found(dag_env: Emulator, capfd: pytest.CaptureFixture[str]) -> None:
    seed_exa(dag_env)
    dr = load_dag(EXAMPLE_DAGS / "exa_websets_sensor.py").test()
    assert dr.state == "success"
    out = capfd.readouterr()
    assert "XCom not found" not in out.out + out.err


# --- issue 20: a hook per try -----------------------------------------------------------------------------


def test_polling_on_the_worker_looks_the_connection_up_once_per_try(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hook is built once per try (cached_property): four polls, one connection lookup."""
    from airflow_monid.hooks.monid import MonidHook

    lookups: list[str] = []
    real = MonidHook.get_connection.__func__  # type: ignore[attr-defined]

    def counted(cls: type, conn_id: str) -> Any:
        lookups.append(conn_id)
        return real(cls, conn_id)

    monkeypatch.setattr(MonidHook, "get_connection", classmethod(counted))
    connections.monid.set_endpoint("apify", "/apidojo/tweet-scraper", mode="async", polls_to_finish=4)
    op = MonidRunOperator(
        task_id="t",
        provider="apify",
        endpoint="/apidojo/tweet-scraper",
        input={"searchTerms": ["airflow"]},
        poll_interval=0.01,
        deferrable=False,
    )
    assert len(op.execute(_context())) == 3
    run_id = connections.monid.runs()[0]["runId"]
    assert connections.count("GET", f"/v1/runs/{run_id}") >= 3  # it polled several times
    assert lookups == ["monid_default"]
