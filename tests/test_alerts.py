"""``spend_alert``: notifiers called once per threshold and DAG run (or DAG and UTC day), never failing a
task (README "Spend alerts"). Real Airflow (``dag.test()``) against the emulator; the notifier is a
``BaseNotifier`` that appends each rendered message to a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_monid import SpendAlert
from airflow_monid.exceptions import ConfigError
from airflow_monid.operators.monid import MonidRunOperator
from airflow_monid.testing import Emulator
from tests._support import TEST_DAGS, load_dag, task_states

DAGS = TEST_DAGS / "monid_budget_dags.py"
PDL = {"provider": "pdl", "endpoint": "/person/enrich"}


@pytest.fixture
def sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "alerts.jsonl"
    monkeypatch.setenv("MONID_ALERTS_FILE", str(path))
    return path


def _alerts(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_each_fraction_of_the_budget_notifies_once(dag_env: Emulator, sent: Path) -> None:
    dr = load_dag(DAGS, "monid_alerts_fractions").test()
    assert dr.state == "success" and dag_env.count("POST", "/v1/run") == 10
    alerts = _alerts(sent)
    assert [a["alert"]["threshold"] for a in alerts] == [0.5, 0.8, 1.0]
    for a in alerts:
        info = a["alert"]
        assert info["dag_id"] == "monid_alerts_fractions" and info["run_id"] == dr.run_id
        assert info["budget"] == pytest.approx(0.03) and info["amount"] >= info["threshold"] * 0.03 - 1e-9
        assert info["url"].endswith("/monid/spend?dag_id=monid_alerts_fractions")
        assert a["message"] == info["message"]  # the notifier's template rendered from the context
        assert "monid_alerts_fractions" in a["message"] and "max_dag_run_cost=0.03 USD" in a["message"]
    # A second DAG run has its own thresholds.
    dr2 = load_dag(DAGS, "monid_alerts_fractions").test()
    assert [a["alert"]["run_id"] for a in _alerts(sent)].count(dr2.run_id) == 3


def test_a_daily_amount_notifies_once_per_dag_and_day(dag_env: Emulator, sent: Path) -> None:
    dag = load_dag(DAGS, "monid_alerts_daily")
    dag.test(run_conf={"prefix": "first"})  # 3 x 0.003 = 0.009: below 0.01
    assert _alerts(sent) == []
    dag.test(run_conf={"prefix": "second"})  # the 4th run of the day crosses 0.01
    alerts = _alerts(sent)
    assert len(alerts) == 1 and alerts[0]["alert"]["scope"] == "day" and alerts[0]["alert"]["threshold"] == 0.01
    assert dag_env.count("POST", "/v1/run") == 6


def test_a_failing_notifier_never_fails_the_task(dag_env: Emulator, sent: Path) -> None:
    dr = load_dag(DAGS, "monid_alerts_failing_notifier").test()
    assert task_states("monid_alerts_failing_notifier", dr.run_id)[("enrich", -1)] == "success"
    (attempt,) = _alerts(sent)  # the notifier was called, raised, and the task went on
    assert attempt["fail"] is True and attempt["alert"]["threshold"] == 0.5


def test_a_notifier_failure_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    from airflow_monid._runtime.alerts import notify

    def broken(context: Any) -> None:
        raise RuntimeError("the chat service is down")

    assert notify(SpendAlert(broken, fractions=(0.5,)), {}, {"message": "m"}) is False
    (record,) = [r for r in caplog.records if "spend_alert: the notifier failed" in r.getMessage()]
    assert record.levelname == "WARNING" and "the chat service is down" in record.getMessage()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fractions": (float("nan"),)}, "fractions"),
        ({"fractions": (0.5, True)}, "fractions"),
        ({"fractions": (), "daily": (float("inf"),)}, "daily"),
        ({"fractions": (), "daily": ("10",)}, "daily"),
        ({"fractions": ()}, "needs fractions"),
    ],
)
def test_a_bad_alert_fails_when_the_dag_is_built(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SpendAlert(print, **kwargs)


def test_fractions_need_a_budget() -> None:
    with pytest.raises(ConfigError, match="max_dag_run_cost"):
        MonidRunOperator(task_id="t", input={}, spend_alert=SpendAlert(print), **PDL)
