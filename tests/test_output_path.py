"""output_path: outputs written to object storage before the run counts as delivered, URLs in XCom."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_monid._runtime.output_store import (
    OutputWriteError,
    check_output_path,
    exa_output,
    resolve,
    serialise,
    write_output,
)
from airflow_monid.exceptions import ConfigError
from airflow_monid.testing import Emulator
from airflow_monid.testing.__main__ import seed_exa
from tests._support import EXAMPLE_DAGS, TEST_DAGS, load_dag, task_states, task_tries, xcoms

MODES = ["deferrable", "poll"]


# --- the writer, alone ----------------------------------------------------------------------------


def test_jsonl_writes_a_line_per_item_and_json_writes_one_document() -> None:
    items = [{"id": 1, "text": "é"}, {"id": 2}]
    lines = serialise("file:///x/out.jsonl", items).decode().splitlines()
    assert [json.loads(line) for line in lines] == items
    assert json.loads(serialise("file:///x/out.json", items)) == items
    # A .jsonl path with no list: one record; no data at all: no record.
    assert serialise("file:///x/out.jsonl", {"a": 1}).decode() == '{"a":1}\n'
    assert serialise("file:///x/out.jsonl", None) == b""
    assert json.loads(serialise("file:///x/out.json", None)) is None


def test_the_placeholder_is_the_run_id_and_other_braces_stay() -> None:
    assert resolve("s3://aws_default@b/{x}/{monid_run_id}.json", "Monid", "01J") == "s3://aws_default@b/{x}/01J.json"
    assert resolve("file:///o/{exa_run_id}.json", "Exa", "run_1") == "file:///o/run_1.json"


@pytest.mark.parametrize(
    ("url", "api", "message"),
    [
        ("/tmp/out.json", "Monid", "must be a URL"),
        (None, "Monid", "must be a URL"),
        ("file:///o/{exa_run_id}.json", "Monid", "use {monid_run_id}"),
        ("file:///o/{monid_run_id}.json", "Exa", "use {exa_run_id}"),
        ("nosuchfs://bucket/{monid_run_id}.json", "Monid", "cannot be opened"),
    ],
)
def test_unusable_paths_fail_before_paying(url: Any, api: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        check_output_path(url, api)


def test_write_replaces_the_object_and_a_failure_is_retryable(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "run.json"
    write_output(f"file://{target}", {"v": 1}, "Monid run r1")
    write_output(f"file://{target}", {"v": 2}, "Monid run r1")  # a retry of the same run
    assert json.loads(target.read_text()) == {"v": 2}
    (tmp_path / "blocked").write_text("a file where a directory is needed")
    with pytest.raises(OutputWriteError, match="retry of this task writes it again without paying") as caught:
        write_output(f"file://{tmp_path}/blocked/run.json", [], "Monid run r1")
    from airflow.providers.common.compat.sdk import AirflowFailException

    assert not isinstance(caught.value, AirflowFailException)  # Airflow may retry it


def test_exa_writes_the_runs_output_or_a_websets_run_itself() -> None:
    assert exa_output({"id": "r", "output": {"results": []}}) == {"results": []}
    assert exa_output({"id": "r", "status": "completed"}) == {"id": "r", "status": "completed"}


def test_output_path_needs_a_run_that_is_awaited() -> None:
    from airflow_monid.operators.exa import ExaTriggerMonitorOperator
    from airflow_monid.operators.monid import MonidRunOperator

    for task in (
        MonidRunOperator(task_id="m", provider="p", endpoint="/e", wait_for_completion=False, output_path="file:///o"),
        ExaTriggerMonitorOperator(task_id="e", monitor_id="m", wait_for_completion=False, output_path="file:///o"),
    ):
        with pytest.raises(ConfigError, match="needs wait_for_completion=True"):
            task._check_output_path({})


def test_exa_links_are_declared_and_registered() -> None:
    from airflow_monid.get_provider_info import get_provider_info
    from airflow_monid.operators.exa import ExaMonitorLink, ExaRunLink, ExaTriggerMonitorOperator
    from airflow_monid.sensors.exa import ExaMonitorRunSensor

    registered = get_provider_info()["extra-links"]
    assert {f"{c.__module__}.{c.__qualname__}" for c in (ExaRunLink, ExaMonitorLink)} <= set(registered)
    for task_class in (ExaTriggerMonitorOperator, ExaMonitorRunSensor):
        assert [link.name for link in task_class.operator_extra_links] == ["Exa Run", "Exa Monitor"]


# --- through dag.test() against the emulator --------------------------------------------------------


def _scenario(dag_id: str, **conf: Any) -> tuple[str, Any]:
    dag = load_dag(TEST_DAGS / "output_scenarios.py", dag_id)
    return dag.dag_id, dag.test(run_conf=conf)


def _stable(output: dict[str, Any]) -> dict[str, Any]:
    """An Exa output without what the emulator makes up on each read (publishedDate)."""
    results = [{k: v for k, v in r.items() if k != "publishedDate"} for r in output["results"]]
    return {**output, "results": results}


def _read(url: str) -> Any:
    assert url.startswith("file://")
    return json.loads(Path(url[len("file://") :]).read_text())


@pytest.mark.usefixtures("dag_env")
def test_example_dag_writes_one_jsonl_object_per_mapped_run(dag_env: Emulator, tmp_path: Path) -> None:
    dag = load_dag(EXAMPLE_DAGS / "monid_output_to_storage.py")
    dr = dag.test(run_conf={"output_dir": str(tmp_path)})
    assert dr.state == "success"
    values = xcoms(dag.dag_id, dr.run_id)
    counts = values[("count_lines", "return_value", -1)]
    urls = [values[("scrape", "return_value", i)] for i in (0, 1)]
    run_ids = [values[("scrape", "run_id", i)] for i in (0, 1)]
    assert urls == [f"file://{tmp_path}/scrape/{i}/{run_ids[i]}.jsonl" for i in (0, 1)]
    for url, run_id, term in zip(urls, run_ids, ("airflow", "duckdb"), strict=True):
        records = [json.loads(line) for line in Path(url[len("file://") :]).read_text().splitlines()]
        assert records == dag_env.monid.get_run(run_id)["output"]
        assert {r["searchTerm"] for r in records} == {term}
        assert len(records) > 0
    assert counts == [len(dag_env.monid.get_run(run_id)["output"]) for run_id in run_ids]
    assert dag_env.count("POST", "/v1/run") == 2


@pytest.mark.usefixtures("dag_env")
def test_exa_example_dag_writes_the_output_and_reads_it_back(dag_env: Emulator, tmp_path: Path) -> None:
    seed_exa(dag_env)
    dag = load_dag(EXAMPLE_DAGS / "exa_monitor_to_storage.py")
    dr = dag.test(run_conf={"output_dir": str(tmp_path)})
    assert dr.state == "success"
    values = xcoms(dag.dag_id, dr.run_id)
    run_id = values[("run_monitor", "run_id", -1)]
    assert values[("run_monitor", "return_value", -1)] == f"file://{tmp_path}/mon_funding/{run_id}.json"
    assert values[("result_urls", "return_value", -1)] == [f"https://news.example.com/mon_funding/{i}" for i in (1, 2)]
    assert dag_env.count("POST", "/monitors/mon_funding/trigger") == 1


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
def test_monid_async_run_output_is_written_and_only_its_url_is_in_xcom(
    dag_env: Emulator, tmp_path: Path, mode: str
) -> None:
    dag_env.monid.set_endpoint("apify", "/apidojo/tweet-scraper", mode="async", polls_to_finish=1)
    dag_id, dr = _scenario(f"output_monid_async_{mode}", output_path=f"file://{tmp_path}/{{monid_run_id}}.json")
    assert dr.state == "success"
    values = xcoms(dag_id, dr.run_id)
    run_id = values[("run", "run_id", -1)]
    assert values[("run", "return_value", -1)] == f"file://{tmp_path}/{run_id}.json"
    assert _read(values[("run", "return_value", -1)]) == dag_env.monid.get_run(run_id)["output"]
    assert dag_env.count("POST", "/v1/run") == 1


@pytest.mark.usefixtures("dag_env")
def test_a_failed_write_retries_with_the_same_run_and_pays_once(dag_env: Emulator, tmp_path: Path) -> None:
    """The first try cannot write (a file stands where the directory must be); the retry's first request
    to Monid removes it. One POST: the retry reused the run the first try paid for."""
    blocker = tmp_path / "out"
    blocker.write_text("not a directory")
    dag_env.on_request(lambda r: blocker.unlink(missing_ok=True) if r.method == "GET" else None)
    dag_id, dr = _scenario("output_monid_poll", output_path=f"file://{blocker}/{{monid_run_id}}.json")
    assert dr.state == "success"
    assert task_tries(dag_id, dr.run_id, "run") == 2
    values = xcoms(dag_id, dr.run_id)
    run_id = values[("run", "run_id", -1)]
    assert _read(values[("run", "return_value", -1)]) == dag_env.monid.get_run(run_id)["output"]
    assert dag_env.count("POST", "/v1/run") == 1


@pytest.mark.usefixtures("dag_env")
def test_an_exa_retry_after_a_failed_write_does_not_trigger_again(dag_env: Emulator, tmp_path: Path) -> None:
    """The write fails on both tries; the retry waits for the run the first try triggered (3.3+ ledger)."""
    from airflow_monid.version_compat import AIRFLOW_V_3_3_PLUS

    seed_exa(dag_env)
    blocker = tmp_path / "out"
    blocker.write_text("not a directory")
    dag_id, dr = _scenario("output_exa_poll", output_path=f"file://{blocker}/{{exa_run_id}}.json")
    assert task_states(dag_id, dr.run_id)[("run", -1)] == "failed"
    assert task_tries(dag_id, dr.run_id, "run") == 2
    # Without task_state_store (Airflow < 3.3) every Exa retry triggers anew (README "Decision table").
    assert dag_env.count("POST", "/monitors/mon_funding/trigger") == (1 if AIRFLOW_V_3_3_PLUS else 2)


@pytest.mark.usefixtures("dag_env")
def test_task_monid_writes_each_mapped_output(dag_env: Emulator, tmp_path: Path) -> None:
    """Two mapped instances, one path template: the run id alone keeps their objects apart."""
    dag_id, dr = _scenario("output_monid_taskflow", output_path=f"file://{tmp_path}/{{monid_run_id}}.json")
    assert dr.state == "success"
    values = xcoms(dag_id, dr.run_id)
    urls = {values[("enrich", "return_value", i)] for i in (0, 1)}
    assert urls == {f"file://{tmp_path}/{values[('enrich', 'run_id', i)]}.json" for i in (0, 1)} and len(urls) == 2
    emails = {_read(url)["work_email"] for url in urls}  # what the emulator's enrichment echoes back
    assert emails == {"jane.doe@example.com", "john.roe@example.com"}
    assert dag_env.count("POST", "/v1/run") == 2


@pytest.mark.usefixtures("dag_env")
def test_a_bad_output_path_fails_without_paying_or_retrying(dag_env: Emulator) -> None:
    dag_id, dr = _scenario("output_monid_poll", output_path="nosuchfs://bucket/{monid_run_id}.json")
    assert task_states(dag_id, dr.run_id)[("run", -1)] == "failed"
    assert task_tries(dag_id, dr.run_id, "run") == 1  # ConfigError: no retry
    assert dag_env.count("POST", "/v1/run") == 0


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
def test_monid_sensor_writes_the_run_it_waited_for(dag_env: Emulator, tmp_path: Path, mode: str) -> None:
    run = dag_env.monid.add_run(output=[{"id": "a"}, {"id": "b"}], polls_to_finish=1, status="RUNNING")
    path = f"file://{tmp_path}/sensor/{{monid_run_id}}.jsonl"
    dag_id, dr = _scenario(f"output_monid_sensor_{mode}", output_path=path, run_id=run["runId"])
    assert dr.state == "success"
    url = xcoms(dag_id, dr.run_id)[("wait", "return_value", -1)]
    assert url == f"file://{tmp_path}/sensor/{run['runId']}.jsonl"
    assert Path(url[len("file://") :]).read_text().splitlines() == ['{"id":"a"}', '{"id":"b"}']


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
def test_exa_operator_writes_the_runs_output(dag_env: Emulator, tmp_path: Path, mode: str) -> None:
    seed_exa(dag_env)
    dag_id, dr = _scenario(f"output_exa_{mode}", output_path=f"file://{tmp_path}/{{exa_run_id}}.json")
    assert dr.state == "success"
    values = xcoms(dag_id, dr.run_id)
    run_id = values[("run", "run_id", -1)]
    url = values[("run", "return_value", -1)]
    assert url == f"file://{tmp_path}/{run_id}.json"
    (run,) = [r for r in dag_env.exa.runs("mon_funding") if r["id"] == run_id]
    assert _stable(_read(url)) == _stable(run["output"]) and run["output"]["results"]
    assert dag_env.count("POST", "/monitors/mon_funding/trigger") == 1
    # The links of the task: the monitor and the run in Exa's dashboard (URL form unverified).
    assert values[("run", "monitor_url", -1)] == "https://dashboard.exa.ai/monitors/mon_funding"
    assert values[("run", "run_url", -1)] == f"https://dashboard.exa.ai/monitors/mon_funding/runs/{run_id}"


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
def test_exa_sensor_writes_the_runs_output(dag_env: Emulator, tmp_path: Path, mode: str) -> None:
    seed_exa(dag_env)
    (seeded,) = dag_env.exa.runs("mon_funding")
    path = f"file://{tmp_path}/{{exa_run_id}}.json"
    dag_id, dr = _scenario(f"output_exa_sensor_{mode}", output_path=path, run_id=seeded["id"])
    assert dr.state == "success"
    values = xcoms(dag_id, dr.run_id)
    url = values[("wait", "return_value", -1)]
    assert url == f"file://{tmp_path}/{seeded['id']}.json"
    assert _stable(_read(url)) == _stable(seeded["output"])
    assert values[("wait", "run_url", -1)].endswith(f"/monitors/mon_funding/runs/{seeded['id']}")
