"""``reuse_results``: a successful run's output returned instead of paying again (README "Reusing paid
results", decision-table rows M28-M30). Real Airflow (``dag.test()``) against the emulator over HTTP; the
cache is a ``file://`` ObjectStoragePath under the test's tmp_path."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_monid import ReusePolicy
from airflow_monid._monid.reuse import canonical, entry_url, reuse_key
from airflow_monid.exceptions import ConfigError
from airflow_monid.operators.monid import MonidRunOperator
from airflow_monid.testing import Emulator
from tests._support import MONID_KEY, TEST_DAGS, load_dag, task_states, xcoms
from tests.test_decision_table import TI, Store

DAGS = TEST_DAGS / "monid_budget_dags.py"
PDL = {"provider": "pdl", "endpoint": "/person/enrich"}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MONID_REUSE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _run(dag_id: str, inputs: list[dict] | None = None):
    dag = load_dag(DAGS, dag_id)
    dr = dag.test(run_conf={"inputs": inputs} if inputs is not None else None)
    return dr, xcoms(dag_id, dr.run_id)


def _entries(cache: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(cache.rglob("*.json"))]


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_m28_a_second_dag_run_with_the_same_inputs_pays_nothing(dag_env: Emulator, cache: Path, mode: str) -> None:
    emu = dag_env
    dag_id = f"monid_reuse_{mode}"
    inputs = (
        [{"email": "a@example.com"}, {"email": "b@example.com"}]
        if mode == "sync"
        else [{"searchTerms": ["airflow"], "maxItems": 3}]
    )
    dr1, first = _run(dag_id, inputs)
    assert dr1.state == "success"
    paid = emu.count("POST", "/v1/run")
    assert paid == len(inputs)
    assert len(_entries(cache)) == len(inputs)
    dr2, second = _run(dag_id, inputs)
    assert dr2.state == "success"
    assert emu.count("POST", "/v1/run") == paid  # nothing paid the second time
    for i in range(len(inputs)):
        assert second[("enrich", "return_value", i)] == first[("enrich", "return_value", i)]
        run = second[("enrich", "run", i)]
        assert run["reused"] is True and run["runId"] == first[("enrich", "run_id", i)]
        saved = [v for (t, k, m), v in second.items() if k.startswith("monid_saved.") and m == i]
        assert saved and saved[0]["reused_run_id"] == run["runId"]
        assert not [k for (t, k, m) in second if k.startswith("monid_spend.") and m == i]  # not spent


def test_m28_inputs_that_differ_only_in_key_order_and_number_format_reuse(dag_env: Emulator, cache: Path) -> None:
    emu = dag_env
    _run("monid_reuse_sync", [{"email": "a@example.com", "n": 1, "opts": {"x": 2.0, "y": [1, 2]}}])
    dr, values = _run("monid_reuse_sync", [{"opts": {"y": [1.0, 2], "x": 2}, "n": 1.0, "email": "a@example.com"}])
    assert dr.state == "success"
    assert emu.count("POST", "/v1/run") == 1
    assert values[("enrich", "run", 0)]["reused"] is True
    assert canonical({"a": True, "b": 1.5}) == {"a": True, "b": 1.5}  # booleans and fractions stay as they are


def test_m28_a_different_input_pays(dag_env: Emulator, cache: Path) -> None:
    _run("monid_reuse_sync", [{"email": "a@example.com"}])
    _run("monid_reuse_sync", [{"email": "a@example.com"}, {"email": "new@example.com"}])
    assert dag_env.count("POST", "/v1/run") == 2  # only the new input was paid for


def test_m28_after_the_ttl_the_run_is_paid_again(dag_env: Emulator, cache: Path) -> None:
    _run("monid_reuse_sync", [{"email": "a@example.com"}])
    (path,) = cache.rglob("*.json")
    entry = json.loads(path.read_text())
    entry["completed_at"] -= timedelta(hours=1, seconds=1).total_seconds()  # the DAG's ttl is one hour
    path.write_text(json.dumps(entry))
    dr, values = _run("monid_reuse_sync", [{"email": "a@example.com"}])
    assert dr.state == "success" and dag_env.count("POST", "/v1/run") == 2
    assert "reused" not in values[("enrich", "run", 0)]
    assert json.loads(path.read_text())["run_id"] == values[("enrich", "run_id", 0)]  # the entry was refreshed


def test_m28_refresh_pays_and_replaces_the_entry(dag_env: Emulator, cache: Path) -> None:
    _run("monid_reuse_sync", [{"email": "a@example.com"}])
    old = _entries(cache)[0]["run_id"]
    dr, values = _run("monid_reuse_refresh")
    assert dr.state == "success" and dag_env.count("POST", "/v1/run") == 2
    (entry,) = _entries(cache)
    assert entry["run_id"] == values[("enrich", "run_id", -1)] != old


@pytest.mark.parametrize("damage", ["garbage", "truncated", "another_key", "no_output"])
def test_m30_a_corrupted_entry_pays_again_and_is_replaced(dag_env: Emulator, cache: Path, damage: str) -> None:
    _run("monid_reuse_sync", [{"email": "a@example.com"}])
    (path,) = cache.rglob("*.json")
    text = path.read_text()
    entry = json.loads(text)
    if damage == "garbage":
        path.write_bytes(b"\x00\xff not json")
    elif damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "another_key":
        path.write_text(json.dumps({**entry, "key": "0" * 64}))
    else:
        path.write_text(json.dumps({k: v for k, v in entry.items() if k != "output"}))
    dr, values = _run("monid_reuse_sync", [{"email": "a@example.com"}])
    assert dr.state == "success"
    assert dag_env.count("POST", "/v1/run") == 2
    assert json.loads(path.read_text())["run_id"] == values[("enrich", "run_id", 0)]


def test_only_successful_runs_are_stored(dag_env: Emulator, cache: Path) -> None:
    dag_env.monid.set_endpoint(*PDL.values(), provider_status=500, output=None, provider_error={"message": "down"})
    dr, _ = _run("monid_reuse_sync", [{"email": "a@example.com"}])
    assert task_states("monid_reuse_sync", dr.run_id)[("enrich", 0)] == "failed"
    assert _entries(cache) == []


def _op(cache: Path, **kwargs: Any) -> MonidRunOperator:
    return MonidRunOperator(
        task_id="t",
        input={"email": "a@example.com"},
        reuse_results=ReusePolicy(f"file://{cache}", ttl=timedelta(hours=1)),
        **PDL,
        **kwargs,
    )


def test_m29_a_failed_store_is_a_warning_not_a_failed_task(
    connections: Emulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    op = _op(blocker)
    result = op.execute({"ti": TI(1, 0), "task_state_store": Store()})
    assert result["work_email"] == "a@example.com"
    assert connections.count("POST", "/v1/run") == 1
    out = capfd.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if "reuse_results: storing the result" in line]
    assert lines and all("warning" in line.lower() for line in lines)
    assert not [line for line in (out.out + out.err).splitlines() if "[error" in line or " ERROR " in line]


def test_output_path_is_written_on_a_hit(connections: Emulator, tmp_path: Path) -> None:
    _op(tmp_path / "cache").execute({"ti": TI(1, 0), "task_state_store": Store()})
    out = tmp_path / "out" / "{monid_run_id}.json"
    ti = TI(1, 0)
    url = _op(tmp_path / "cache", output_path=f"file://{out}").execute({"ti": ti, "task_state_store": Store()})
    assert connections.count("POST", "/v1/run") == 1
    assert url.endswith(f"/{ti.pushed['run']['runId']}.json")
    assert json.loads(Path(url.removeprefix("file://")).read_text())["work_email"] == "a@example.com"


def test_two_tasks_with_the_same_input_at_the_same_moment_both_pay(connections: Emulator, tmp_path: Path) -> None:
    """Both look up before either has stored: both miss and pay (no lock: README). One entry remains."""
    emu = connections
    emu.monid.set_endpoint(*PDL.values(), mode="async", polls_to_finish=None)
    results: list[Any] = []

    def task(i: int) -> None:
        results.append(
            _op(tmp_path / "cache", poll_interval=0.05).execute({"ti": TI(1, 0), "task_state_store": Store()})
        )

    threads = [threading.Thread(target=task, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    posts: list[Any] = []

    def second_post(record: Any) -> bool:
        if record.method == "POST" and record.path == "/v1/run":
            posts.append(record)
        return len(posts) >= 2

    emu.wait_for_request(second_post)  # both submitted before either run completed: both looked up first
    for run in emu.monid.runs():
        emu.monid.complete_run(run["runId"])
    for t in threads:
        t.join()
    assert len(results) == 2 and emu.count("POST", "/v1/run") == 2
    assert len(_entries(tmp_path / "cache")) == 1


def test_the_key_never_holds_the_api_key(connections: Emulator, tmp_path: Path) -> None:
    _op(tmp_path / "cache").execute({"ti": TI(1, 0), "task_state_store": Store()})
    (path,) = (tmp_path / "cache").rglob("*.json")
    assert MONID_KEY not in str(path) and MONID_KEY not in path.read_text()
    key = reuse_key(connections.url, "pdl", "/person/enrich", {"email": "a@example.com"})
    assert entry_url(ReusePolicy(f"file://{tmp_path / 'cache'}"), key).endswith(path.name)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"path": "/no/scheme"}, "object storage URL"),
        ({"path": "file:///x", "ttl": float("nan")}, "ttl"),
        ({"path": "file:///x", "ttl": timedelta(0)}, "ttl"),
        ({"path": "file:///x", "ttl": True}, "ttl"),
        ({"path": "file:///x", "refresh": "yes"}, "refresh"),
    ],
)
def test_a_bad_policy_fails_when_the_dag_is_built(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ReusePolicy(**kwargs)


def test_reuse_needs_an_awaited_run() -> None:
    with pytest.raises(ConfigError, match="wait_for_completion"):
        MonidRunOperator(
            task_id="t", wait_for_completion=False, reuse_results=ReusePolicy("file:///x"), input={}, **PDL
        )


def _report() -> dict[str, Any]:
    from airflow.utils.session import create_session

    from airflow_monid._spend.query import SpendFilter
    from airflow_monid._spend.report import public, spend_report

    with create_session() as session:
        return public(
            spend_report(
                session,
                SpendFilter.parse(None, None, dag_id="monid_reuse_sync"),
                "dag",
                readable=None,
                may_see_workspace=bool,
                bill=None,
            )
        )


def test_the_spend_page_counts_a_reused_result_as_saved_not_spent(dag_env: Emulator, cache: Path) -> None:
    before = _report()  # the session's database may hold this DAG's runs of other tests
    _run("monid_reuse_sync", [{"email": "a@example.com"}])
    _run("monid_reuse_sync", [{"email": "a@example.com"}])
    after = _report()
    assert after["runs"] - before["runs"] == 1  # paid once
    assert after["total"] - before["total"] == pytest.approx(0.003)
    assert after["reused"]["runs"] - before["reused"]["runs"] == 1
    assert after["reused"]["saved"] - before["reused"]["saved"] == pytest.approx(0.003)


def test_the_daily_enrichment_example_pays_only_for_new_inputs(dag_env: Emulator) -> None:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    from tests._support import EXAMPLE_DAGS

    dag = load_dag(EXAMPLE_DAGS / "monid_daily_enrichment_reuse.py")
    cache = ObjectStoragePath(dag.get_task("enrich").partial_kwargs["reuse_results"].path)
    if cache.exists():  # another test of this session ran the example
        cache.rmdir(recursive=True)
    first = dag.test()
    assert first.state == "success" and dag_env.count("POST", "/v1/run") == 3
    second = dag.test()
    assert second.state == "success" and dag_env.count("POST", "/v1/run") == 3  # yesterday's inputs: free
    assert xcoms(dag.dag_id, second.run_id)[("load", "return_value", -1)] == 3
