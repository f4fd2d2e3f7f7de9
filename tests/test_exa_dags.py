"""The Exa example DAGs, run with dag.test() against the emulator seeded as ``--seed-exa`` seeds it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_monid.testing import Emulator
from airflow_monid.testing.__main__ import seed_exa
from tests._support import EXAMPLE_DAGS, load_dag, task_states, xcoms

pytestmark = pytest.mark.usefixtures("dag_env")

X = datetime(2026, 3, 10, 6, 0, tzinfo=UTC)  # a scheduled 06:00 UTC run of exa_monitor_sensor


def _run(name: str, **kwargs: Any) -> tuple[str, Any, dict[tuple[str, str, int], Any]]:
    dag = load_dag(EXAMPLE_DAGS / name)
    dr = dag.test(**kwargs)
    return dag.dag_id, dr, xcoms(dag.dag_id, dr.run_id)


def test_monitor_sensor_example_reads_the_results_of_the_seeded_run(dag_env: Emulator) -> None:
    emu = dag_env
    seed_exa(emu)
    (seeded,) = emu.exa.runs("mon_funding")
    _dag_id, dr, values = _run("exa_monitor_sensor.py")
    assert dr.state == "success"
    # dag.test() with no logical date takes "now" and infers the manual interval: the day before it.
    assert dr.data_interval_end - dr.data_interval_start == timedelta(days=1)
    assert values[("wait_for_monitor_run", "return_value", -1)]["id"] == seeded["id"]
    summary = values[("summarise", "return_value", -1)]
    assert summary == {
        "run_id": seeded["id"],
        "count": 2,
        "urls": [f"https://news.example.com/mon_funding/{i}" for i in (1, 2)],
    }


def test_monitor_sensor_example_selects_the_oldest_run_of_its_interval(dag_env: Emulator) -> None:
    emu = dag_env
    emu.exa.add_monitor("mon_funding")
    emu.exa.add_run("mon_funding", status="completed", created_at=X - timedelta(days=2))
    chosen = emu.exa.add_run("mon_funding", status="completed", created_at=X - timedelta(hours=20))
    emu.exa.add_run("mon_funding", status="completed", created_at=X - timedelta(hours=3))
    emu.exa.add_run("mon_funding", status="completed", created_at=X + timedelta(hours=1))
    _dag_id, dr, values = _run("exa_monitor_sensor.py", logical_date=X)
    assert (dr.data_interval_start, dr.data_interval_end) == (X - timedelta(days=1), X)
    assert dr.state == "success"
    assert values[("summarise", "return_value", -1)]["run_id"] == chosen["id"]


def test_monitor_sensor_example_without_interval_waits_for_the_next_run(dag_env: Emulator) -> None:
    """A run with an empty interval (like a manual run of a plain cron schedule) waits for the next run."""
    emu = dag_env
    seed_exa(emu)  # an earlier, completed run: must not be taken
    (earlier,) = emu.exa.runs("mon_funding")
    next_run: dict[str, Any] = {}

    def on_request(record: Any) -> None:
        if record.path == "/monitors/mon_funding/runs" and not next_run:
            next_run.update(emu.exa.add_run("mon_funding", created_at=time.time() + 1, polls_to_finish=1))

    emu.on_request(on_request)
    _dag_id, dr, values = _run("exa_monitor_sensor.py", logical_date=None)
    assert dr.data_interval_start is None and dr.data_interval_end is None
    assert dr.state == "success"
    assert values[("summarise", "return_value", -1)]["run_id"] == next_run["id"] != earlier["id"]
    assert emu.count("GET", "/monitors/mon_funding/runs") >= 2  # the first look found nothing new


def test_monitor_sensor_example_fails_on_a_failed_run(dag_env: Emulator) -> None:
    emu = dag_env
    emu.exa.add_monitor("mon_funding")
    emu.exa.add_run("mon_funding", status="failed", fail_reason="api_key_invalid", created_at=X - timedelta(hours=5))
    dag_id, dr, _values = _run("exa_monitor_sensor.py", logical_date=X)
    assert dr.state == "failed"
    assert task_states(dag_id, dr.run_id) == {
        ("wait_for_monitor_run", -1): "failed",
        ("summarise", -1): "upstream_failed",
    }


def test_trigger_and_wait_example_pays_once_and_counts_results(dag_env: Emulator) -> None:
    emu = dag_env
    seed_exa(emu)
    before = {r["id"] for r in emu.exa.runs("mon_funding")}
    _dag_id, dr, values = _run("exa_trigger_and_wait.py")
    assert dr.state == "success"
    (new_id,) = [r["id"] for r in emu.exa.runs("mon_funding") if r["id"] not in before]
    assert values[("run_monitor", "run_id", -1)] == new_id
    assert values[("run_monitor", "return_value", -1)]["status"] == "completed"
    assert values[("count_results", "return_value", -1)] == 2
    assert emu.count("POST", "/monitors/mon_funding/trigger") == 1


def test_websets_example_reports_the_seeded_run(dag_env: Emulator) -> None:
    emu = dag_env
    seed_exa(emu)
    (seeded,) = emu.exa.runs("wsmon_demo")
    _dag_id, dr, values = _run("exa_websets_sensor.py")
    assert dr.state == "success"
    assert values[("report", "return_value", -1)] == {
        "run_id": seeded["id"],
        "type": "search",
        "completed_at": seeded["completedAt"],
    }
    assert all(r.path.startswith("/websets/v0/monitors/wsmon_demo") for r in emu.requests())


def test_websets_example_fails_on_a_canceled_run_of_its_interval(dag_env: Emulator) -> None:
    emu = dag_env
    emu.exa.add_monitor("wsmon_demo", family="websets")
    emu.exa.add_run("wsmon_demo", status="canceled", created_at=X - timedelta(hours=2))
    dag_id, dr, _values = _run("exa_websets_sensor.py", logical_date=X)
    assert dr.state == "failed"
    assert task_states(dag_id, dr.run_id)[("wait_for_websets_run", -1)] == "failed"
