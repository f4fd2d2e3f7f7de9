"""The API key never reaches logs, exceptions, XCom, rendered fields, trigger kwargs or reprs."""

from __future__ import annotations

import logging

import pytest

from airflow_monid.exceptions import APIError
from airflow_monid.hooks.monid import MonidHook
from airflow_monid.operators.monid import MonidRunOperator
from airflow_monid.testing import Emulator
from airflow_monid.triggers.monid import MonidRunTrigger
from tests._support import EXAMPLE_DAGS, MONID_KEY, TEST_DAGS, load_dag, monid_conn


def _tables_text() -> str:
    """XCom values, rendered template fields and decrypted trigger kwargs, as text."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.trigger import Trigger
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    parts: list[str] = []
    with create_session() as session:
        parts += [repr(x.value) for x in session.query(XComModel).all()]
        parts += [repr(r.rendered_fields) for r in session.query(RenderedTaskInstanceFields).all()]
        for trigger in session.query(Trigger).all():
            parts += [repr(trigger.kwargs), trigger.classpath]
    return "\n".join(parts)


def _without_mask_registration(text: str) -> str:
    """Drop Airflow 3.0 dag.test()'s own DEBUG echo of the secret it registers for masking.

    The in-process supervisor of Airflow 3.0's dag.test() prints every message it receives at DEBUG,
    including ``MaskSecret(value=...)``, the call that *registers* the key with the masker. That line is
    Airflow's, not ours, and does not exist in a deployed task log at the default INFO level.
    """
    return "\n".join(line for line in text.splitlines() if "[debug" not in line or "MaskSecret(" not in line)


def test_key_absent_after_dag_runs(dag_env: Emulator, caplog: pytest.LogCaptureFixture, capfd) -> None:
    caplog.set_level(logging.INFO)
    for name in ("monid_async_tweets", "monid_sync_enrichment", "monid_submit_then_sensor"):
        assert load_dag(EXAMPLE_DAGS / f"{name}.py").test().state == "success"
    dag_env.monid.set_endpoint("apify", "/apidojo/tweet-scraper", final_status="FAILED", reason="crash")
    assert load_dag(TEST_DAGS / "monid_scenarios.py", "monid_scenario_deferrable").test().state == "failed"
    out, err = capfd.readouterr()
    scanned = {"logs": caplog.text, "stdout": _without_mask_registration(out), "stderr": err, "tables": _tables_text()}
    assert all(len(text) > 0 for name, text in scanned.items() if name != "stderr")
    for name, text in scanned.items():
        assert MONID_KEY not in text, f"API key found in {name}"


def test_key_absent_from_reprs_and_trigger_kwargs(connections: Emulator) -> None:
    hook = MonidHook()
    trigger = MonidRunTrigger(run_id="r1", monid_conn_id="monid_default", poll_interval=1, end_time=1e10)
    op = MonidRunOperator(task_id="t", provider="p", endpoint="/e", input={"a": 1})
    texts = [repr(hook), repr(hook.settings), repr(trigger), repr(trigger.serialize()), repr(op), str(vars(op))]
    assert all(MONID_KEY not in text for text in texts)
    assert set(trigger.serialize()[1]) == {"run_id", "monid_conn_id", "poll_interval", "end_time", "created_at"}


@pytest.mark.parametrize("key", ["zq!7", "k" * 40])
def test_wrong_key_errors_do_not_echo_it(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, key: str
) -> None:
    """Short keys too: our messages never contain the key, whatever its length."""
    caplog.set_level(logging.DEBUG, logger="airflow_monid")
    monkeypatch.setenv("AIRFLOW_CONN_MONID_WRONG", monid_conn(connections.url, key=key))
    hook = MonidHook("monid_wrong")
    with pytest.raises(APIError) as info:
        hook.get_wallet_balance()
    assert info.value.status_code == 401
    ok, message = hook.test_connection()
    assert not ok and "401" in message
    for text in (str(info.value), repr(info.value), message, caplog.text, repr(hook.settings)):
        assert key not in text
