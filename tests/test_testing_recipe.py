"""docs/testing.md, run: its recipes, the pytest fixtures, Exa runs that finish for a watcher, the trigger helpers.

The doc's ``# dags/<name>.py`` blocks are written into the DAGs folder and its ``# tests/<name>.py``
blocks run as a user's test module would, with the fixtures they name.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_monid.testing import (
    Emulator,
    asset_event_map,
    asset_events,
    awatcher_events,
    connection_env,
    emulator_connections,
    run_trigger_until_event,
    watcher_events,
)
from airflow_monid.triggers.exa import ExaMonitorRunTrigger, ExaMonitorRunWatcher
from tests._support import EXA_KEY, EXAMPLE_DAGS, MONID_KEY, REPO

DOC = REPO / "docs" / "testing.md"
README = REPO / "README.md"
PAYLOAD_KEYS = {"monitor_id", "monitor_type", "run_id", "status", "created_at", "completed_at"}


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


def readme_python() -> str:
    """The README (the front door: its testing recipe lives in docs/testing.md)."""
    return README.read_text()


def doc_file(name: str) -> str:
    """The doc's code block that starts with the comment ``# <name>``."""
    found = [
        b for b in python_blocks(DOC.read_text()) if re.fullmatch(rf"# {re.escape(name)}(:.*)?", b.splitlines()[0])
    ]
    assert len(found) == 1, f"docs/testing.md has {len(found)} blocks for {name}"
    return found[0]


def _doc_tests() -> list[tuple[str, str]]:
    tests = []
    for block in python_blocks(DOC.read_text()):
        match = re.fullmatch(r"# (tests/test_\w+\.py)", block.splitlines()[0])
        if match:
            names = [n.name for n in ast.parse(block).body if isinstance(n, ast.FunctionDef)]
            tests.extend((match.group(1), name) for name in names if name.startswith("test_"))
    return tests


DOC_TESTS = _doc_tests()


# ----- the doc's recipes -------------------------------------------------------------------------


@pytest.fixture
def doc_project(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The doc's DAG files in the DAGs folder, importable as ``dags.<name>`` as in the doc's layout."""
    dags_folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    assert dags_folder.name == "dags"
    written = []
    for block in python_blocks(DOC.read_text()):
        match = re.fullmatch(r"# dags/(\w+\.py)", block.splitlines()[0])
        if match:
            path = dags_folder / match.group(1)
            path.write_text(block)
            written.append(path)
    assert {p.name for p in written} == {"monid_tweets.py", "exa_news.py"}
    monkeypatch.syspath_prepend(str(dags_folder.parent))
    try:
        yield dags_folder
    finally:
        for path in written:
            path.unlink()
        for name in [m for m in sys.modules if m == "dags" or m.startswith("dags.")]:
            del sys.modules[name]


def test_the_doc_has_the_recipes_it_promises() -> None:
    assert ("tests/test_monid_tweets.py", "test_monid_tweets_counts_the_results") in DOC_TESTS
    assert ("tests/test_exa_news.py", "test_exa_news_handles_a_finished_monitor_run") in DOC_TESTS
    recipe = doc_file("tests/test_monid_tweets.py")
    assert "dag.test()" in recipe and 'monid_emulator.count("POST", "/v1/run") == 1' in recipe
    conftest = doc_file("tests/conftest.py")
    assert 'pytest_plugins = ["airflow_monid.testing.pytest_plugin"]' in conftest


@pytest.mark.parametrize(("test_file", "test_name"), DOC_TESTS)
def test_the_docs_test_recipes_pass(
    test_file: str, test_name: str, doc_project: Path, emulator: Emulator, request: pytest.FixtureRequest
) -> None:
    """Each test function of the doc, run as pytest would run it in a user's project."""
    namespace: dict[str, Any] = {"__name__": f"doc_{Path(test_file).stem}"}
    exec(compile(doc_file(test_file), f"docs/testing.md:{test_file}", "exec"), namespace)
    func = namespace[test_name]
    kwargs = {name: request.getfixturevalue(name) for name in inspect.signature(func).parameters}
    func(**kwargs)
    # It ran against the emulator: something was requested (the recipes assert what).
    assert emulator.count() > 0


def test_the_docs_script_recipe_runs(tmp_path: Path) -> None:
    """The script recipe, run as the doc says: ``python run_monid_tweets.py`` in a project with ``dags/``."""
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "monid_tweets.py").write_text(doc_file("dags/monid_tweets.py"))
    (tmp_path / "run_monid_tweets.py").write_text(doc_file("run_monid_tweets.py"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__", "AIRFLOW_HOME"))}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "run_monid_tweets.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"^ok: \d+ API requests$", proc.stdout, flags=re.M), proc.stdout[-3000:]


def _ruff() -> str:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        if os.environ.get("CI") == "true":
            pytest.fail("ruff is not installed")
        pytest.skip("ruff is not installed")
    return ruff


@pytest.mark.parametrize("source", ["docs/testing.md", "README"])
def test_python_blocks_compile_and_are_ruff_formatted(source: str) -> None:
    text = DOC.read_text() if source.startswith("docs") else readme_python()
    blocks = python_blocks(text)
    assert blocks
    ruff = _ruff()
    for i, block in enumerate(blocks):
        compile(block, f"{source} block {i}", "exec")
        proc = subprocess.run(
            [ruff, "format", "--check", "--diff", "--stdin-filename", f"block{i}.py", "-"],
            input=block,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, f"{source} block {i} is not ruff-formatted:\n{proc.stdout}{proc.stderr}"


def test_readme_section_shows_the_recipe_and_points_to_the_doc() -> None:
    text = README.read_text()
    section = text[text.index("## Test it against the emulator") :]
    assert "docs/testing.md" in section
    assert "monid_emulator" in section and "dag.test()" in section
    assert 'count("POST", "/v1/run") == 1' in section


# ----- the fixtures ------------------------------------------------------------------------------

_INNER_CONFTEST = 'pytest_plugins = ["airflow_monid.testing.pytest_plugin"]\n'
_INNER_TESTS = """
import json
import os


def test_before():
    assert os.environ["AIRFLOW_CONN_MONID_DEFAULT"] == "previous-value"
    assert "AIRFLOW_CONN_EXA_DEFAULT" not in os.environ


def test_during(monid_emulator):
    monid = json.loads(os.environ["AIRFLOW_CONN_MONID_DEFAULT"])
    exa = json.loads(os.environ["AIRFLOW_CONN_EXA_DEFAULT"])
    assert monid["host"] == exa["host"] == monid_emulator.url
    assert (monid["conn_type"], monid["password"]) == ("monid", "test-monid-key")
    assert (exa["conn_type"], exa["password"]) == ("exa", "test-exa-key")
    assert monid_emulator.running


def test_after():
    assert os.environ["AIRFLOW_CONN_MONID_DEFAULT"] == "previous-value"
    assert "AIRFLOW_CONN_EXA_DEFAULT" not in os.environ
"""


def test_monid_emulator_fixture_sets_the_connections_for_one_test_and_restores_them(tmp_path: Path) -> None:
    """In a user's pytest session: the plugin from its conftest, tests in file order."""
    (tmp_path / "conftest.py").write_text(_INNER_CONFTEST)
    (tmp_path / "test_inner.py").write_text(_INNER_TESTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env["AIRFLOW_CONN_MONID_DEFAULT"] = "previous-value"
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_inner.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout
    assert "test-monid-key" not in proc.stdout + proc.stderr


def test_monid_emulator_connections_are_what_the_hooks_read(monid_emulator: Emulator) -> None:
    from airflow_monid.hooks.exa import ExaHook
    from airflow_monid.hooks.monid import MonidHook

    monid_emulator.exa.add_monitor("mon_hooks")
    assert MonidHook().get_wallet_balance()["balance"]["value"] == 25.0
    assert ExaHook().get_monitor("mon_hooks").id == "mon_hooks"
    # The emulator requires the session's keys (tests/conftest.py), so these answers prove the key too.
    assert monid_emulator.count("GET", "/v1/wallet/balance") == 1
    assert monid_emulator.count("GET", "/monitors/mon_hooks") == 1
    assert {r.status for r in monid_emulator.requests()} == {200}


def test_emulator_connections_restores_the_environment_even_on_error(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MONID_DEFAULT", "before")
    monkeypatch.delenv("AIRFLOW_CONN_EXA_DEFAULT", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_MY_EXA", raising=False)
    with pytest.raises(RuntimeError, match="boom"), emulator_connections(emulator, exa_conn_id="my_exa"):
        monid = json.loads(os.environ["AIRFLOW_CONN_MONID_DEFAULT"])
        exa = json.loads(os.environ["AIRFLOW_CONN_MY_EXA"])
        assert monid == {"conn_type": "monid", "host": emulator.url, "password": MONID_KEY, "extra": {}}
        assert exa == {"conn_type": "exa", "host": emulator.url, "password": EXA_KEY, "extra": {}}
        assert "AIRFLOW_CONN_EXA_DEFAULT" not in os.environ
        raise RuntimeError("boom")
    assert os.environ["AIRFLOW_CONN_MONID_DEFAULT"] == "before"
    assert "AIRFLOW_CONN_MY_EXA" not in os.environ


def test_connection_env_of_an_emulator_that_accepts_any_key() -> None:
    with Emulator() as emu:
        env = connection_env(emu, exa_conn_id=None, extra={"max_attempts": 2})
        assert set(env) == {"AIRFLOW_CONN_MONID_DEFAULT"}
        conn = json.loads(env["AIRFLOW_CONN_MONID_DEFAULT"])
        assert conn["password"] and conn["extra"] == {"max_attempts": 2}
        headers = {"Authorization": f"Bearer {conn['password']}"}
        assert httpx.get(f"{conn['host']}/v1/wallet/balance", headers=headers).status_code == 200


# ----- Exa runs that advance for whoever reads them ----------------------------------------------

FAMILIES = {"search": ("/monitors", "pending"), "websets": ("/websets/v0/monitors", "created")}


@pytest.fixture
def exa(emulator: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url, headers={"x-api-key": EXA_KEY}) as client:
        yield client


def _listed(exa: httpx.Client, prefix: str, monitor: str) -> dict[str, str]:
    return {r["id"]: r["status"] for r in exa.get(f"{prefix}/{monitor}/runs").json()["data"]}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_run_scripted_to_advance_on_list_finishes_for_a_client_that_only_lists(
    emulator: Emulator, exa: httpx.Client, family: str
) -> None:
    prefix, initial = FAMILIES[family]
    emulator.exa.add_monitor("mon_l", family=family)
    listed = emulator.exa.add_run("mon_l", polls_to_finish=2, advance_on_list=True)
    plain = emulator.exa.add_run("mon_l", polls_to_finish=2)  # the default: only its own GET counts
    seen = [_listed(exa, prefix, "mon_l") for _ in range(3)]
    assert [s[listed["id"]] for s in seen] == ["running", "completed", "completed"]
    assert [s[plain["id"]] for s in seen] == [initial] * 3
    assert emulator.count("GET", path_prefix=f"{prefix}/mon_l/runs/") == 0
    done = emulator.exa.get_run("mon_l", listed["id"])
    assert done["completedAt"] is not None and done["status"] == "completed"


def test_advance_on_list_as_a_setting_over_http_and_reset(emulator: Emulator, exa: httpx.Client) -> None:
    control = httpx.Client(base_url=f"{emulator.url}/_emulator")
    assert control.post("/exa/settings", json={"advance_on_list": True}).json()["advance_on_list"] is True
    control.post("/exa/monitors", json={"monitor_id": "mon_s"})
    run = control.post("/exa/runs", json={"monitor_id": "mon_s", "polls_to_finish": 1}).json()
    assert _listed(exa, "/monitors", "mon_s") == {run["id"]: "completed"}
    # Triggered runs follow the setting too.
    assert exa.post("/monitors/mon_s/trigger").json() == {"triggered": True}
    assert set(_listed(exa, "/monitors", "mon_s").values()) == {"completed"}
    emulator.reset()
    assert emulator.exa.advance_on_list is False


def test_finish_after_seconds_finishes_by_the_clock_whoever_reads(emulator: Emulator, exa: httpx.Client) -> None:
    emulator.exa.add_monitor("mon_t")
    due = emulator.exa.add_run("mon_t", finish_after_seconds=0, final_status="failed", fail_reason="rate_limited")
    later = emulator.exa.add_run("mon_t", finish_after_seconds=3600, polls_to_finish=1)
    assert _listed(exa, "/monitors", "mon_t") == {due["id"]: "failed", later["id"]: "running"}
    # Polls do not count for a run that finishes by the clock.
    assert {exa.get(f"/monitors/mon_t/runs/{later['id']}").json()["status"] for _ in range(3)} == {"running"}
    failed = emulator.exa.get_run("mon_t", due["id"])
    assert failed["failReason"] == "rate_limited" and failed["failedAt"] is not None
    with pytest.raises(ValueError, match="finish_after_seconds"):
        emulator.exa.add_run("mon_t", finish_after_seconds=float("nan"))


# ----- driving triggers and watchers -------------------------------------------------------------


@pytest.mark.parametrize("family", list(FAMILIES))
def test_watcher_events_returns_the_payload_of_a_run_that_finishes(monid_emulator: Emulator, family: str) -> None:
    emu = monid_emulator
    emu.exa.add_monitor("mon_w", family=family)
    emu.exa.add_run("mon_w", status="completed", created_at="2026-01-01T00:00:00Z")  # before: not emitted
    run = emu.exa.add_run("mon_w", polls_to_finish=2, advance_on_list=True)
    payloads = watcher_events({"monitor_id": "mon_w", "monitor_type": family}, events=1, timeout=60)
    assert payloads == [
        {
            "monitor_id": "mon_w",
            "monitor_type": family,
            "run_id": run["id"],
            "status": "completed",
            "created_at": run["createdAt"],
            "completed_at": emu.exa.get_run("mon_w", run["id"])["completedAt"],
        }
    ]
    prefix = FAMILIES[family][0]
    assert emu.count("GET", f"{prefix}/mon_w/runs") >= 2  # listed until it finished
    assert emu.count("GET", path_prefix=f"{prefix}/mon_w/runs/") == 0  # never read one by one


def test_watcher_events_points_the_watchers_connection_at_the_emulator_given(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = json.dumps({"conn_type": "exa", "host": "http://127.0.0.1:9", "password": "not-this-one"})
    monkeypatch.setenv("AIRFLOW_CONN_EXA_DEFAULT", elsewhere)
    emulator.exa.add_monitor("mon_e")
    appeared: dict[str, Any] = {}

    def on_request(record: Any) -> None:
        # After the watcher's first listing (answered without it), a run appears, due at once.
        if record.path == "/monitors/mon_e/runs" and not appeared:
            appeared.update(emulator.exa.add_run("mon_e", finish_after_seconds=0))

    emulator.on_request(on_request)
    watcher = ExaMonitorRunWatcher(monitor_id="mon_e", poll_interval=3600)
    payloads = watcher_events(watcher, emulator, events=1, timeout=60)
    assert [(p["run_id"], p["status"]) for p in payloads] == [(appeared["id"], "completed")]
    assert os.environ["AIRFLOW_CONN_EXA_DEFAULT"] == elsewhere


async def test_awatcher_events_in_an_async_test(monid_emulator: Emulator) -> None:
    monid_emulator.exa.add_monitor("mon_a")
    first = monid_emulator.exa.add_run("mon_a", polls_to_finish=2, advance_on_list=True, final_status="failed")
    second = monid_emulator.exa.add_run("mon_a", polls_to_finish=3, advance_on_list=True)
    payloads = await awatcher_events(
        ExaMonitorRunWatcher(monitor_id="mon_a", statuses=["completed", "failed"]), events=2, timeout=60
    )
    assert [(p["run_id"], p["status"]) for p in payloads] == [(first["id"], "failed"), (second["id"], "completed")]
    assert all(set(p) == PAYLOAD_KEYS for p in payloads)


def test_watcher_events_times_out_naming_what_it_got(
    monid_emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    monid_emulator.exa.add_monitor("mon_quiet")
    with pytest.raises(TimeoutError, match=r"ExaMonitorRunWatcher yielded 0 of 1 event\(s\) within 0.3 s") as info:
        watcher_events({"monitor_id": "mon_quiet"}, events=1, timeout=0.3)
    assert monid_emulator.count("GET", "/monitors/mon_quiet/runs") >= 1
    for text in (str(info.value), caplog.text):
        assert MONID_KEY not in text and EXA_KEY not in text


def test_run_trigger_until_event_with_a_one_shot_trigger(monid_emulator: Emulator) -> None:
    monid_emulator.exa.add_monitor("mon_r")
    run = monid_emulator.exa.add_run("mon_r", polls_to_finish=3)

    def trigger() -> ExaMonitorRunTrigger:
        return ExaMonitorRunTrigger(
            monitor_id="mon_r",
            exa_conn_id="exa_default",
            poll_interval=0.01,
            end_time=time.time() + 600,
            run_id=run["id"],
        )

    [event] = run_trigger_until_event(trigger(), events=1, timeout=60)
    assert event == {"status": "terminal", "run_id": run["id"], "run_status": "completed", "message": ""}
    assert monid_emulator.count("GET", f"/monitors/mon_r/runs/{run['id']}") == 3
    with pytest.raises(RuntimeError, match=r"ExaMonitorRunTrigger.run\(\) ended after 1 of 2 event"):
        run_trigger_until_event(trigger(), events=2, timeout=60)


# ----- an AssetWatcher DAG, without a cluster ----------------------------------------------------


def test_the_event_driven_example_dag_handles_what_its_watcher_emits(monid_emulator: Emulator) -> None:
    """The example DAG's own asset and task: its watcher's event, then its task with that event."""
    spec = importlib.util.spec_from_file_location(
        "recipe_exa_monitor_event_driven", EXAMPLE_DAGS / "exa_monitor_event_driven.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    asset = module.monitor_runs
    emu = monid_emulator
    emu.exa.add_monitor(module.MONITOR_ID)
    emu.exa.add_run(module.MONITOR_ID, status="completed", created_at="2026-01-01T00:00:00Z")  # before
    run = emu.exa.add_run(module.MONITOR_ID, polls_to_finish=2, advance_on_list=True)

    payloads = watcher_events(asset, events=1, timeout=60)
    assert [p["run_id"] for p in payloads] == [run["id"]]

    events = asset_events(payloads)
    assert events[0]["extra"] == {"from_trigger": True, "payload": payloads[0]}
    fetch = module.dag.get_task("fetch_results").python_callable
    # The same event again in an earlier DAG run's inlet events: already delivered, nothing to do.
    earlier = asset_events(payloads, start=events[0]["timestamp"].replace(year=2025))
    triggering = asset_event_map(asset, events)
    assert fetch(triggering_asset_events=triggering, inlet_events=asset_event_map(asset, earlier)) == []
    [summary] = fetch(triggering_asset_events=triggering, inlet_events=asset_event_map(asset, []))
    assert summary["run_id"] == run["id"] and summary["count"] == 2 and len(summary["urls"]) == 2
    assert emu.count("GET", f"/monitors/{module.MONITOR_ID}/runs/{run['id']}") == 1  # the task's fetch
