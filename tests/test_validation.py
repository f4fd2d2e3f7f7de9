"""Bad input gets one clear sentence before any money is spent; odd ids are encoded, not rejected."""

from __future__ import annotations

import math
from typing import Any

import pytest

from airflow_monid.exceptions import ConfigError
from airflow_monid.operators.monid import MonidRunOperator
from airflow_monid.sensors.monid import MonidRunSensor
from airflow_monid.testing import Emulator
from tests._support import monid_conn


class FakeTI:
    """Just enough of a task instance for execute(): records XCom pushes."""

    task_id = "t"
    map_index = -1
    try_number = 1

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def _context() -> dict[str, Any]:
    return {"ti": FakeTI()}


def _op(**kwargs: Any) -> MonidRunOperator:
    base = {"task_id": "t", "provider": "apify", "endpoint": "/apidojo/tweet-scraper", "input": {"a": 1}}
    return MonidRunOperator(**{**base, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"provider": ""}, "provider must be a non-empty string"),
        ({"provider": 42}, "provider must be a non-empty string"),
        ({"endpoint": "  "}, "endpoint must be a non-empty string"),
        ({"input": ["not", "an", "object"]}, "input must be a JSON object"),
        ({"input": '{"as": "a string"}'}, "input must be a JSON object"),
        ({"input": {"tags": {"a", "b"}}}, "JSON-serialisable"),
        ({"input": {"blob": b"bytes"}}, "JSON-serialisable"),
        ({"input": {"x": math.nan}}, "JSON cannot carry"),
        ({"input": {"x": math.inf}}, "JSON cannot carry"),
    ],
)
def test_bad_input_fails_before_any_request(connections: Emulator, kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        _op(**kwargs).execute(_context())
    assert connections.count("POST", "/v1/run") == 0
    assert connections.requests() == []


@pytest.mark.parametrize("value", [{"x": math.nan}, {"a": [1, {"b": (2, -math.inf)}]}])
def test_a_non_finite_number_in_the_input_fails_when_the_task_is_built(value: dict) -> None:
    """Airflow stores rendered fields before execute() and would refuse NaN there with a traceback."""
    with pytest.raises(ConfigError, match="which JSON cannot carry"):
        _op(input=value)
    assert _op(input={"a": [1.5, {"b": "{{ ds }}"}]}).input == {"a": [1.5, {"b": "{{ ds }}"}]}


@pytest.mark.parametrize("name", ["poll_interval", "timeout"])
@pytest.mark.parametrize("value", [0, -1, math.nan, "5", True])
def test_bad_wait_bounds_fail_at_construction(name: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be a positive number of seconds"):
        _op(**{name: value})


def test_allowed_provider_statuses_validated() -> None:
    with pytest.raises(ConfigError, match="allowed_provider_statuses"):
        _op(allowed_provider_statuses=["abc"])


@pytest.mark.parametrize(
    ("conn", "fragment"),
    [
        ('{"conn_type": "monid", "host": "http://127.0.0.1:1", "password": ""}', "has no API key"),
        ('{"conn_type": "monid", "host": "http://[::1", "password": "k-12345"}', "not a valid base URL"),
        ('{"conn_type": "monid", "host": "ftp://example.com", "password": "k-12345"}', "not a valid base URL"),
        ('{"conn_type": "monid", "password": "k-12345", "extra": {"timeout": -3}}', "must be a positive number"),
    ],
)
def test_bad_connection_fails_before_any_request(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch, conn: str, fragment: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MONID_BAD", conn)
    with pytest.raises(ConfigError, match=fragment):
        _op(monid_conn_id="monid_bad").execute(_context())
    assert connections.requests() == []


def test_empty_sensor_run_id_is_an_error(connections: Emulator) -> None:
    sensor = MonidRunSensor(task_id="s", run_id="", poke_interval=1)
    with pytest.raises(ConfigError, match="run_id must be a non-empty string"):
        sensor.poke(_context())
    assert connections.requests() == []


@pytest.mark.parametrize("run_id", ["a/b", "..", ".", "x?y=1#z", "with space", "ünïcødé-ид", "%2F"])
def test_odd_run_ids_are_encoded_not_rejected(connections: Emulator, run_id: str) -> None:
    connections.monid.add_run(run_id=run_id, status="COMPLETED", output={"ok": run_id})
    sensor = MonidRunSensor(task_id="s", run_id=run_id, poke_interval=1)
    result = sensor.poke(_context())
    assert result.is_done and result.xcom_value == {"ok": run_id}
    (request,) = connections.requests("GET")
    assert request.path.count("/") == 3  # /v1/runs/<one segment>
    assert "?" not in request.path and "#" not in request.path


def test_input_is_sent_exactly_as_given(connections: Emulator) -> None:
    composite = {"body": {"q": "x"}, "queryParams": {"limit": 1}, "pathParams": {}}
    # Off the endpoint's schema on purpose (validate_input=False): the input is passed through untouched.
    _op(provider="pdl", endpoint="/person/enrich", input=composite, validate_input=False).execute(_context())
    (post,) = connections.requests("POST", "/v1/run")
    assert post.body == {"provider": "pdl", "endpoint": "/person/enrich", "input": composite}


def test_connection_uri_form_builds_base_url(connections: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """URI env vars cannot carry http:// in the host: schema and port complete it."""
    port = connections.url.rsplit(":", 1)[1]
    monkeypatch.setenv("AIRFLOW_CONN_MONID_URI", f"monid://:{'k' * 8}@127.0.0.1:{port}/http")
    from airflow_monid.hooks.monid import MonidHook

    assert MonidHook("monid_uri").settings.base_url == f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AIRFLOW_CONN_MONID_JSON", monid_conn(connections.url))
    assert MonidHook("monid_json").settings.base_url == connections.url
