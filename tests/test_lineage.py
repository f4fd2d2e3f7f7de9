"""OpenLineage: the facets method alone, then the COMPLETE events written by OpenLineage's file transport."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_monid._runtime.lineage import api_namespace, storage_dataset
from airflow_monid.operators.exa import ExaTriggerMonitorOperator
from airflow_monid.operators.monid import MonidRunOperator
from airflow_monid.sensors.exa import ExaMonitorRunSensor
from airflow_monid.sensors.monid import MonidRunSensor
from airflow_monid.testing import Emulator
from airflow_monid.testing.__main__ import seed_exa
from tests._support import EXA_KEY, EXAMPLE_DAGS, MONID_KEY, TEST_DAGS

pytest.importorskip("airflow.providers.openlineage", reason="the openlineage extra is not installed")


class FakeTI:
    """A task instance whose XComs the facets must not read: the OpenLineage listener calls them in a
    forked child, where an Execution-API request waits for the listener's timeout (issue 20)."""

    def __init__(self, task_id: str, **xcom: Any) -> None:
        self.task_id, self.map_index, self._xcom = task_id, -1, xcom

    def xcom_pull(self, task_ids: str, key: str) -> Any:
        raise AssertionError(f"the facets read XCom {key!r}: a round trip from the listener's child process")


def _facets(lineage: Any) -> dict[str, Any]:
    inputs = [(d.namespace, d.name) for d in lineage.inputs]
    outputs = [(d.namespace, d.name) for d in lineage.outputs]
    query = lineage.run_facets.get("externalQuery")
    return {
        "inputs": inputs,
        "outputs": outputs,
        "query": (query.externalQueryId, query.source) if query else None,
    }


def test_object_storage_urls_are_named_as_openlineage_names_them() -> None:
    assert storage_dataset("s3://aws_default@bucket/monid/t/0/r1.json") == ("s3://bucket", "monid/t/0/r1.json")
    assert storage_dataset("gs://b/x/r.jsonl") == ("gs://b", "x/r.jsonl")
    assert storage_dataset("file:///data/out/r1.json") == ("file", "/data/out/r1.json")
    assert api_namespace("monid", "http://user@127.0.0.1:8080", "https://api.monid.ai") == "monid://127.0.0.1:8080"
    assert api_namespace("exa", None, "https://api.exa.ai") == "exa://api.exa.ai"


@pytest.mark.usefixtures("connections")
def test_monid_operator_facets_from_its_own_attributes(connections: Emulator) -> None:
    host = urlsplit(connections.url).netloc
    op = MonidRunOperator(
        task_id="run", provider="apify", endpoint="/apidojo/tweet-scraper", output_path="file:///o/{monid_run_id}.json"
    )
    op.hook.settings  # noqa: B018 - the task read its connection when it ran
    op.delivered_run_id, op.output_url = "01RUN", "file:///o/01RUN.json"
    assert _facets(op.get_openlineage_facets_on_complete(FakeTI("run"))) == {
        "inputs": [(f"monid://{host}", "apify/apidojo/tweet-scraper")],
        "outputs": [("file", "/o/01RUN.json")],
        "query": ("01RUN", f"monid://{host}"),
    }


@pytest.mark.usefixtures("connections")
def test_after_a_deferral_the_resumed_object_keeps_the_ids_on_itself(connections: Emulator) -> None:
    """The operator object is rebuilt on resume: execute_complete reads the run again and delivers it,
    which sets what the facets need on the new object; nothing comes from XCom."""
    host = urlsplit(connections.url).netloc
    op = MonidRunOperator(task_id="run", provider="apify", endpoint="/x", output_path="s3://c@b/{monid_run_id}.json")
    op.hook.settings  # noqa: B018 - read again by execute_complete
    op.current_run_id = op.delivered_run_id = "01XCOM"
    op.output_url = "s3://c@b/01XCOM.json"
    ti = FakeTI("run", run_id="01XCOM", return_value="s3://c@b/01XCOM.json")
    assert _facets(op.get_openlineage_facets_on_complete(ti)) == {
        "inputs": [(f"monid://{host}", "apify/x")],
        "outputs": [("s3://b", "01XCOM.json")],
        "query": ("01XCOM", f"monid://{host}"),
    }
    # Without output_path the return value is the data, never a dataset.
    plain = MonidRunOperator(task_id="run", provider="apify", endpoint="/x")
    plain.current_run_id = "01"
    assert (
        _facets(plain.get_openlineage_facets_on_complete(FakeTI("run", run_id="01", return_value="s3://x/y")))[
            "outputs"
        ]
        == []
    )


@pytest.mark.usefixtures("connections")
def test_monid_sensor_names_the_endpoint_of_the_run_it_read(connections: Emulator) -> None:
    host = urlsplit(connections.url).netloc
    connections.monid.add_run(run_id="01SENSOR", provider="pdl", endpoint="/person/enrich")
    sensor = MonidRunSensor(task_id="wait", run_id="01SENSOR")
    sensor._fetched({}, "01SENSOR")  # what every poke does: read the run
    ti = FakeTI("wait", run={"runId": "01SENSOR", "provider": "pdl", "endpoint": "/person/enrich"})
    assert _facets(sensor.get_openlineage_facets_on_complete(ti)) == {
        "inputs": [(f"monid://{host}", "pdl/person/enrich")],
        "outputs": [],
        "query": ("01SENSOR", f"monid://{host}"),
    }


@pytest.mark.usefixtures("connections")
@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: ExaTriggerMonitorOperator(task_id="t", monitor_id="mon_1"), "monitors/mon_1"),
        (lambda: ExaMonitorRunSensor(task_id="t", monitor_id="mon_1"), "monitors/mon_1"),
        (
            lambda: ExaMonitorRunSensor(task_id="t", monitor_id="ws_1", monitor_type="websets"),
            "websets/v0/monitors/ws_1",
        ),
    ],
)
def test_exa_facets_name_the_monitor(connections: Emulator, make: Any, name: str) -> None:
    host = urlsplit(connections.url).netloc
    task = make()
    task.hook.settings  # noqa: B018 - the task read its connection when it ran
    task.current_run_id = "run_9"  # the run it read
    assert _facets(task.get_openlineage_facets_on_complete(FakeTI("t", run_id="run_9"))) == {
        "inputs": [(f"exa://{host}", name)],
        "outputs": [],
        "query": ("run_9", f"exa://{host}"),
    }


def test_parsing_a_dag_file_imports_nothing_of_openlineage() -> None:
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]); "
        "print(sorted(m for m in sys.modules if m.startswith(('openlineage', 'airflow.providers.openlineage.'))"
        " and not m.endswith('get_provider_info')))"  # Airflow's providers manager reads that one itself
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(EXAMPLE_DAGS / "monid_output_to_storage.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout[-2000:] + done.stderr[-2000:]


# --- the events OpenLineage itself writes ----------------------------------------------------------------

_RUN_DAG = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("dagfile", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
dag = getattr(module, sys.argv[2])
print("STATE", dag.test(run_conf=json.loads(sys.argv[3])).state)
"""


def _run_with_openlineage(
    tmp_path: Path, dag_file: Path, dag_attr: str, conf: dict[str, Any], state: str = "success", **extra_env: str
) -> list[dict]:
    """dag.test() in a fresh interpreter: OpenLineage reads its transport once per process."""
    events = tmp_path / "events.jsonl"
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events), "append": True}),
        "AIRFLOW__OPENLINEAGE__DISABLED": "False",
        **extra_env,
    }
    done = subprocess.run(
        [sys.executable, "-c", _RUN_DAG, str(dag_file), dag_attr, json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert f"STATE {state}" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    # What OpenLineage sends must never carry the key. (The process log is not checked: Airflow 3.0.6's
    # in-process supervisor logs its MaskSecret messages, key included, at debug level.)
    assert MONID_KEY not in events.read_text() and EXA_KEY not in events.read_text()
    return [json.loads(line) for line in events.read_text().splitlines() if line.strip()]


def _complete(events: list[dict], job_suffix: str) -> list[dict]:
    return [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith(job_suffix)]


@pytest.mark.usefixtures("dag_env")
def test_complete_events_of_a_mapped_deferred_monid_task(dag_env: Emulator, tmp_path: Path) -> None:
    host = urlsplit(dag_env.url).netloc
    events = _run_with_openlineage(
        tmp_path, EXAMPLE_DAGS / "monid_output_to_storage.py", "dag_object", {"output_dir": str(tmp_path / "out")}
    )
    completes = _complete(events, ".scrape")
    run_ids = {r["runId"] for r in dag_env.monid.runs()}
    assert len(run_ids) == 2 and len(completes) == 2
    for event in completes:
        query = event["run"]["facets"]["externalQuery"]
        assert query["source"] == f"monid://{host}" and query["externalQueryId"] in run_ids
        assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [
            (f"monid://{host}", "apify/apidojo/tweet-scraper")
        ]
        ((namespace, name),) = [(d["namespace"], d["name"]) for d in event["outputs"]]
        assert namespace == "file" and name.endswith(f"/{query['externalQueryId']}.jsonl")
        assert Path(name).is_file()  # the dataset is the object the task wrote
    assert {e["run"]["facets"]["externalQuery"]["externalQueryId"] for e in completes} == run_ids


@pytest.mark.usefixtures("dag_env")
def test_complete_event_of_a_deferred_exa_trigger(dag_env: Emulator, tmp_path: Path) -> None:
    host = urlsplit(dag_env.url).netloc
    seed_exa(dag_env)
    before = {r["id"] for r in dag_env.exa.runs("mon_funding")}
    url = f"file://{tmp_path}/exa/{{exa_run_id}}.json"
    events = _run_with_openlineage(
        tmp_path, TEST_DAGS / "output_scenarios.py", "output_exa_deferrable", {"output_path": url}
    )
    (new_id,) = [r["id"] for r in dag_env.exa.runs("mon_funding") if r["id"] not in before]
    (event,) = _complete(events, ".run")
    assert event["run"]["facets"]["externalQuery"] == {
        **event["run"]["facets"]["externalQuery"],
        "externalQueryId": new_id,
        "source": f"exa://{host}",
    }
    assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [(f"exa://{host}", "monitors/mon_funding")]
    assert [(d["namespace"], d["name"]) for d in event["outputs"]] == [("file", f"{tmp_path}/exa/{new_id}.json")]


@pytest.mark.usefixtures("dag_env")
def test_a_failed_task_gets_its_facets_without_a_request_from_the_listener(dag_env: Emulator, tmp_path: Path) -> None:
    """Issue 20: the listener builds the facets in a forked child. Had they pulled an XCom, the child would
    wait on an API its parent no longer serves until OpenLineage's execution timeout, set here far beyond
    the subprocess's own limit: the DAG would not finish at all. They are built from the task's state."""
    dag_env.monid.set_endpoint("apify", "/apidojo/tweet-scraper", mode="async", final_status="FAILED")
    events = _run_with_openlineage(
        tmp_path,
        TEST_DAGS / "monid_scenarios.py",
        "monid_scenario_poll",
        {},
        state="failed",
        AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT="3600",
    )
    (run,) = dag_env.monid.runs()
    (fail,) = [e for e in events if e["eventType"] == "FAIL" and e["job"]["name"].endswith(".run")]
    assert fail["run"]["facets"]["externalQuery"]["externalQueryId"] == run["runId"]
    assert [(d["namespace"], d["name"]) for d in fail["inputs"]] == [
        (f"monid://{urlsplit(dag_env.url).netloc}", "apify/apidojo/tweet-scraper")
    ]
