"""Issue 19: errors that point the right way.

Each message says what happened, whether money may have been spent and what to do, and names the URL
tried (never the key, never a query string). Faults come from the emulator over real HTTP, or from a
closed port; respx only maps transport exceptions the emulator cannot produce (DNS). Deadlines are
checked through the computed values (an injected clock), never by wall time.
"""

from __future__ import annotations

import json
import logging
import socket
import types
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
from airflow.providers.common.compat.sdk import AirflowSensorTimeout

from airflow_monid._http.connection import base_url_from
from airflow_monid._http.policy import (
    DEADLINE_MARGIN,
    ApiRequest,
    ApiSettings,
    Attempt,
    RetryPolicy,
    current_deadline,
    deadline_scope,
)
from airflow_monid._runtime import deferral as _deferral
from airflow_monid._runtime.deferral import Deadline
from airflow_monid._runtime.waiting import Waiter
from airflow_monid.exceptions import ConfigError, PermanentAPIError, TransportError, UnclearRequestError
from airflow_monid.hooks.exa import ExaHook
from airflow_monid.hooks.monid import MONID_PROFILE, MonidHook
from airflow_monid.operators.monid import MonidRunOperator
from airflow_monid.sensors.exa import ExaMonitorRunSensor
from airflow_monid.sensors.monid import MonidRunSensor
from airflow_monid.testing import Emulator
from airflow_monid.triggers.exa import ExaMonitorRunTrigger
from tests._support import EXA_KEY, MONID_KEY, exa_conn, monid_conn

MON = "mon_x"
PDL = ("pdl", "/person/enrich")
PDL_INPUT = {"email": "jane@corp.example"}
T0 = datetime(2026, 1, 1, tzinfo=UTC)
log = logging.getLogger(__name__)


def closed_port() -> int:
    """A port nothing listens on: bound, read, closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def monid_hook(monkeypatch: pytest.MonkeyPatch, url: str, **extras: Any) -> MonidHook:
    conn_id = f"monid_diag_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", monid_conn(url, **{"max_attempts": 2, **extras}))
    return MonidHook(conn_id)


def exa_conn_id(monkeypatch: pytest.MonkeyPatch, url: str, **extras: Any) -> str:
    conn_id = f"exa_diag_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", exa_conn(url, **{"max_attempts": 2, **extras}))
    return conn_id


def no_secrets(text: str) -> None:
    assert MONID_KEY not in text and EXA_KEY not in text


class TI:
    task_id, map_index, try_number, max_tries = "t", -1, 1, 0

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value

    def xcom_pull(self, task_ids: str, key: str, map_indexes: int) -> Any:
        return self.pushed.get(key)


def context() -> dict[str, Any]:
    dag_run = types.SimpleNamespace(run_after=T0, data_interval_start=T0, data_interval_end=None, start_date=None)
    return {"ti": TI(), "dag_run": dag_run}


# ----- 1. a base URL with a path --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conn_type", "host", "expected"),
    [
        ("monid", "https://api.monid.ai/v1", "https://api.monid.ai"),
        ("monid", "https://api.monid.ai/v1/", "https://api.monid.ai"),
        ("monid", "https://proxy.example/monid/v1", "https://proxy.example/monid"),  # a proxy prefix stays
        ("monid", "api.monid.ai/v1", "https://api.monid.ai"),
        ("exa", "https://api.exa.ai/websets/v0", "https://api.exa.ai"),
        ("exa", "https://api.exa.ai/websets", "https://api.exa.ai"),
        ("exa", "https://proxy.example/exa", "https://proxy.example/exa"),
    ],
)
def test_the_api_version_the_provider_adds_is_dropped_from_the_base_url(
    conn_type: str, host: str, expected: str
) -> None:
    assert base_url_from(host, None, None, "https://default.example", "c", conn_type) == expected


@pytest.mark.parametrize(
    ("conn_type", "host", "write"),
    [
        ("monid", "https://api.monid.ai/v1/run", "https://api.monid.ai"),
        ("monid", "https://api.monid.ai/v2", "https://api.monid.ai"),
        ("monid", "https://proxy.example/monid/v1/runs", "https://proxy.example/monid"),
        ("exa", "https://api.exa.ai/monitors", "https://api.exa.ai"),
        ("exa", "https://api.exa.ai/websets/v0/monitors", "https://api.exa.ai"),
        ("exa", "https://api.exa.ai/v0", "https://api.exa.ai"),
        ("monid", "https://api.monid.ai/?key=1", "https://api.monid.ai/"),
    ],
)
def test_an_endpoint_or_another_version_in_the_base_url_is_refused_saying_what_to_write(
    conn_type: str, host: str, write: str
) -> None:
    with pytest.raises(ConfigError) as info:
        base_url_from(host, None, None, "https://default.example", "my_conn", conn_type)
    message = str(info.value)
    assert "'my_conn'" in message and repr(host) in message and message.endswith(f"write {write}.")


def test_a_monid_host_ending_in_v1_reaches_the_api_over_http(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: POST /v1/v1/run and "HTTP 404: Not found". Now the paths are the API's own."""
    hook = monid_hook(monkeypatch, f"{connections.url}/v1")
    hook.get_wallet_balance()
    assert [r.path for r in connections.requests()] == ["/v1/wallet/balance"]


def test_an_exa_host_ending_in_websets_v0_serves_both_monitor_families_over_http(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connections.exa.add_monitor(MON)
    hook = ExaHook(exa_conn_id(monkeypatch, f"{connections.url}/websets/v0"))
    hook.list_runs(MON)
    assert [r.path for r in connections.requests()] == [f"/monitors/{MON}/runs"]


# ----- 2. scheme typos ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "write"),
    [
        ("http//api.example.com", "http://api.example.com"),
        ("https//api.example.com", "https://api.example.com"),
        ("https:/api.example.com", "https://api.example.com"),
        ("http:api.example.com", "http://api.example.com"),
        ("htp://api.example.com", "http://api.example.com"),
        ("htps://api.example.com", "https://api.example.com"),
        ("https:///api.example.com", "https://api.example.com"),
    ],
)
def test_a_misspelt_scheme_is_refused_naming_connection_value_and_right_form(host: str, write: str) -> None:
    with pytest.raises(ConfigError) as info:
        base_url_from(host, None, None, "https://default.example", "my_conn", "monid")
    message = str(info.value)
    assert "'my_conn'" in message and repr(host) in message and f"write {write}." in message


def test_a_host_named_like_a_scheme_with_a_port_is_not_a_typo() -> None:
    assert base_url_from("http:8080", "http", None, "https://d.example", "c", "monid") == "http://http:8080"


def test_a_misspelt_scheme_fails_before_any_request(connections: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    host = connections.url.replace("http://", "http//")
    hook = monid_hook(monkeypatch, host)
    with pytest.raises(ConfigError, match="the scheme is misspelt"):
        hook.get_wallet_balance()
    assert connections.requests() == []


# ----- 3. transport errors name the method and the URL ----------------------------------------------


def test_a_refused_read_names_method_url_and_says_nothing_was_paid(monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    hook = ExaHook(exa_conn_id(monkeypatch, f"http://127.0.0.1:{port}"))
    with pytest.raises(TransportError) as info:
        hook.list_runs(MON, cursor="cur_SECRET_cursor")
    message = str(info.value)
    assert f"GET http://127.0.0.1:{port}/monitors/{MON}/runs could not connect" in message
    assert "connection was refused" in message and "after 2 attempt(s)" in message
    assert "nothing reached Exa, nothing was paid" in message and "check the connection's host and port" in message
    assert "cur_SECRET" not in message and "?" not in message  # no query string
    assert info.value.base_url == f"http://127.0.0.1:{port}" and not info.value.reached
    no_secrets(message)


def test_a_refused_paid_post_says_nothing_reached_monid(monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    with pytest.raises(TransportError) as info:
        monid_hook(monkeypatch, f"http://127.0.0.1:{port}").submit_run(*PDL, PDL_INPUT)
    message = str(info.value)
    assert not isinstance(info.value, UnclearRequestError)
    assert f"POST http://127.0.0.1:{port}/v1/run could not connect" in message
    assert "nothing reached Monid, nothing was paid" in message
    no_secrets(message)


def test_a_read_timeout_on_the_paid_post_says_a_run_may_have_been_paid(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connections.add_fault("POST", "/v1/run", action="hang", hang_seconds=30)
    hook = monid_hook(monkeypatch, connections.url, timeout=0.5)
    with pytest.raises(UnclearRequestError) as info:
        hook.submit_run(*PDL, PDL_INPUT)
    message = str(info.value)
    assert f"POST {connections.url}/v1/run: the request may have reached Monid" in message
    assert "got no answer within 0.5 s" in message
    assert "a run may exist and may have been paid" in message and "Check the runs list" in message
    assert info.value.url == f"{connections.url}/v1/run"
    assert connections.count("POST", "/v1/run") == 1
    no_secrets(message)


def test_a_reset_read_names_the_url_and_what_happened(connections: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    connections.monid.add_run(run_id="R1", status="RUNNING")
    connections.add_fault("GET", "/v1/runs/R1", action="reset", times=None)
    with pytest.raises(TransportError) as info:
        monid_hook(monkeypatch, connections.url).get_run("R1")
    message = str(info.value)
    assert f"GET {connections.url}/v1/runs/R1 lost the connection before the answer" in message
    assert "nothing was paid" in message and info.value.reached
    no_secrets(message)


def test_tls_to_a_plain_http_port_is_named_a_tls_failure(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = connections.url.replace("http://", "https://")
    with pytest.raises(TransportError) as info:
        monid_hook(monkeypatch, url, verify=False).get_wallet_balance()
    message = str(info.value)
    assert f"GET {url}/v1/wallet/balance could not connect: the TLS handshake failed" in message
    assert "(http or https)" in message
    no_secrets(message)


def test_a_dns_failure_is_named_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = monid_hook(monkeypatch, "https://api.monid.invalid")
    with respx.mock(assert_all_called=False) as router:
        router.get("https://api.monid.invalid/v1/wallet/balance").mock(
            side_effect=httpx.ConnectError("[Errno -2] Name or service not known")
        )
        with pytest.raises(TransportError) as info:
            hook.get_wallet_balance()
    message = str(info.value)
    url = "https://api.monid.invalid/v1/wallet/balance"
    assert f"GET {url} could not connect: the host name does not resolve" in message
    assert "check the connection's host" in message


def test_an_api_error_names_the_url_and_a_refused_paid_request_says_nothing_was_paid(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connections.add_fault("POST", "/v1/run", status=402, body={"code": 402, "message": "Wallet balance too low"})
    with pytest.raises(PermanentAPIError) as info:
        monid_hook(monkeypatch, connections.url).submit_run(*PDL, PDL_INPUT)
    message = str(info.value)
    assert f"(URL: {connections.url}/v1/run;" in message
    assert "Nothing was paid: the Monid API refused the request" in message


def test_an_unclear_exa_trigger_does_not_speak_of_a_run_id(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exa's trigger answer never carries a run id, so "answered HTTP 500 without a run id" was wrong."""
    connections.exa.add_monitor(MON)
    connections.add_fault("POST", f"/monitors/{MON}/trigger", status=500)
    hook = ExaHook(exa_conn_id(monkeypatch, connections.url))
    with pytest.raises(UnclearRequestError) as info:
        hook.trigger_monitor(MON)
    message = str(info.value)
    assert "run id" not in message
    assert f"POST {connections.url}/monitors/{MON}/trigger answered HTTP 500" in message
    assert "may have started (and billed) a run" in message


# ----- 4. the message after the runs list was checked ------------------------------------------------


def test_after_search_replaces_check_the_runs_list_with_what_the_list_showed() -> None:
    attempt = Attempt(ApiSettings(MONID_PROFILE, "http://127.0.0.1:9", "k"), ApiRequest("POST", "/v1/run", paid=True))
    attempt.begin()
    with pytest.raises(UnclearRequestError) as info:
        attempt.on_error(httpx.ReadTimeout("timed out"))
    first = info.value
    since = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    after = first.after_search(since, [])
    text = str(after)
    assert text.startswith("Monid API POST http://127.0.0.1:9/v1/run: the request may have reached Monid")
    assert "the runs list since 2026-01-01T09:00:00+00:00 holds no run with this input" in text
    assert "nothing was paid as far as Monid shows" in text and "submits again" in text
    assert "Check the runs list" not in text and type(after) is type(first)
    found = first.after_search(since, [types.SimpleNamespace(run_id="R_FAILED")])
    assert "holds 1 run(s) with this input, none reusable (R_FAILED)" in str(found)


def test_the_operator_says_the_runs_list_was_checked_when_it_found_nothing(connections: Emulator) -> None:
    """A POST reset before Monid handled it: nothing was created, and the list shows none."""
    connections.add_fault("POST", "/v1/run", action="reset")
    op = MonidRunOperator(task_id="t", provider=PDL[0], endpoint=PDL[1], input=PDL_INPUT, validate_input=False)
    with pytest.raises(UnclearRequestError) as info:
        op.execute({"ti": TI()})
    message = str(info.value)
    assert "holds no run with this input: nothing was paid as far as Monid shows" in message
    assert "Check the runs list" not in message
    assert connections.count("POST", "/v1/run") == 1 and connections.count("GET", "/v1/runs") >= 1


# ----- 5. deadlines: computed timeouts, no retry past the deadline -----------------------------------


def _attempt(deadline: float | None, now: float, **timeouts: float) -> Attempt:
    settings = ApiSettings(
        MONID_PROFILE,
        "http://127.0.0.1:9",
        "k",
        timeout=httpx.Timeout(timeouts.get("read", 30.0), connect=timeouts.get("connect", 10.0), pool=None),
        retry=RetryPolicy(max_attempts=6, backoff_base=4.0, backoff_max=4.0),
    )
    return Attempt(settings, ApiRequest("GET", "/v1/runs/r"), deadline=deadline, clock=lambda: now)


def test_each_request_timeout_is_capped_by_the_time_left_and_at_least_the_margin() -> None:
    far = _attempt(deadline=1_100.0, now=1_000.0).timeout()
    assert (far.connect, far.read, far.pool) == (10.0, 30.0, 100.0)
    near = _attempt(deadline=1_020.0, now=1_000.0).timeout()
    assert (near.connect, near.read, near.write, near.pool) == (10.0, 20.0, 20.0, 20.0)
    at = _attempt(deadline=1_000.0, now=1_000.0).timeout()
    assert (at.connect, at.read) == (DEADLINE_MARGIN, DEADLINE_MARGIN)
    past = _attempt(deadline=900.0, now=1_000.0).timeout()
    assert past.read == DEADLINE_MARGIN
    assert _attempt(deadline=None, now=1_000.0).timeout().read == 30.0


def test_no_retry_starts_after_the_deadline_and_the_message_says_so() -> None:
    attempt = _attempt(deadline=1_002.0, now=1_000.0)  # a backoff of 2-4 s ends at or after the deadline
    attempt.begin()
    with pytest.raises(TransportError) as info:
        attempt.on_error(httpx.ConnectError("[Errno 111] Connection refused"))
    assert "after 1 attempt(s), none more before the wait's deadline" in str(info.value)
    roomy = _attempt(deadline=1_100.0, now=1_000.0)
    roomy.begin()
    assert 2.0 <= roomy.on_error(httpx.ConnectError("[Errno 111] Connection refused")) <= 4.0


def test_deadline_scopes_nest_to_the_earlier_deadline() -> None:
    assert current_deadline() is None
    with deadline_scope(2_000.0):
        with deadline_scope(3_000.0):
            assert current_deadline() == 2_000.0
        with deadline_scope(1_500.0):
            assert current_deadline() == 1_500.0
        with deadline_scope(None):
            assert current_deadline() == 2_000.0
    assert current_deadline() is None


def test_requests_inside_a_past_deadline_are_sent_with_the_margin_as_timeout(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over real HTTP: the transport sends each attempt with the capped timeouts."""
    sent: list[httpx.Timeout] = []
    original = httpx.Client.request

    def spy(self: httpx.Client, *args: Any, **kwargs: Any) -> httpx.Response:
        sent.append(kwargs["timeout"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "request", spy)
    hook = monid_hook(monkeypatch, connections.url, timeout=30, connect_timeout=10)
    hook.get_wallet_balance()
    with deadline_scope(1.0):  # long past
        hook.get_wallet_balance()
    assert (sent[0].connect, sent[0].read) == (10.0, 30.0)
    assert (sent[1].connect, sent[1].read) == (DEADLINE_MARGIN, DEADLINE_MARGIN)


def test_the_triggers_poll_budget_is_the_time_left_and_at_least_the_margin() -> None:
    waiter = Waiter(end_time=1_000.0, poll_interval=5, label="x", log=log)
    assert waiter.remaining(now=970.0) == 30.0
    assert waiter.remaining(now=1_000.0) == DEADLINE_MARGIN
    assert waiter.remaining(now=2_000.0) == DEADLINE_MARGIN


@pytest.mark.parametrize("sensor_class", [MonidRunSensor, ExaMonitorRunSensor])
def test_the_last_interval_between_pokes_ends_at_the_deadline(
    sensor_class: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow sleeps a whole poke_interval before looking at its timeout; the sensors cut it."""
    monkeypatch.setattr(_deferral, "time", types.SimpleNamespace(time=lambda: 1_000.0))
    kwargs = {"run_id": "R1"} if sensor_class is MonidRunSensor else {"monitor_id": MON}
    sensor = sensor_class(task_id=f"s_{uuid.uuid4().hex[:6]}", poke_interval=60, timeout=40, **kwargs)
    sensor._deadline = Deadline(end_time=1_030.0)
    assert sensor._get_next_poke_interval(0.0, lambda: 10.0, 1) == 30.0
    sensor._deadline = Deadline(end_time=1_100.0)
    assert sensor._get_next_poke_interval(0.0, lambda: 10.0, 1) == 60.0
    sensor._deadline = Deadline(end_time=900.0)
    assert sensor._get_next_poke_interval(0.0, lambda: 10.0, 1) == 0.0


def test_sensor_deadline_counts_from_the_first_reschedule() -> None:
    sensor = MonidRunSensor(task_id="s_resched", run_id="R1", mode="reschedule", timeout=40)
    ti = TI()
    ti.get_first_reschedule_date = lambda context: datetime.fromtimestamp(1_000.0, tz=UTC)  # type: ignore[attr-defined]
    from airflow_monid.sensors.monid import sensor_deadline

    assert sensor_deadline(sensor, {"ti": ti}, now=1_025.0).end_time == 1_040.0


# ----- 5. sensors and triggers at the deadline: unreachable vs. no run yet ---------------------------


def test_exa_sensor_against_a_closed_port_says_it_could_not_reach_exa(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: 65 s on a 40 s timeout, then "no run was created in the window". Now the deadline (here 0 s)
    ends the poke that could not reach Exa, and the message says so, naming the URL."""
    port = closed_port()
    conn_id = exa_conn_id(monkeypatch, f"http://127.0.0.1:{port}")
    sensor = ExaMonitorRunSensor(task_id="s_closed", monitor_id=MON, exa_conn_id=conn_id, timeout=0, poke_interval=1)
    with pytest.raises(AirflowSensorTimeout) as info:
        sensor.execute(context())
    message = str(info.value)
    assert f"could not reach the Exa API at http://127.0.0.1:{port}" in message
    assert "last error: TransportError" in message and "whether a run was created" in message
    assert "no run was created" not in message
    no_secrets(message)


def test_exa_sensor_with_no_run_in_the_window_says_exa_answered(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connections.exa.add_monitor(MON)
    sensor = ExaMonitorRunSensor(
        task_id="s_none", monitor_id=MON, exa_conn_id=exa_conn_id(monkeypatch, connections.url), timeout=0
    )
    with pytest.raises(AirflowSensorTimeout) as info:
        sensor.execute(context())
    message = str(info.value)
    assert f"Exa search monitor {MON}: no run was created in [2026-01-01T00:00:00+00:00, no bound)" in message
    assert "the last listing of its runs found none" in message and "could not reach" not in message


def test_monid_sensor_against_a_closed_port_says_it_could_not_reach_monid(monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    hook = monid_hook(monkeypatch, f"http://127.0.0.1:{port}")
    sensor = MonidRunSensor(task_id="s_m_closed", run_id="R1", monid_conn_id=hook.conn_id, timeout=0)
    with pytest.raises(AirflowSensorTimeout) as info:
        sensor.execute(context())
    message = str(info.value)
    assert "Monid run R1: its state at the deadline is unknown" in message
    assert f"could not reach the Monid API at http://127.0.0.1:{port}" in message
    assert "last seen: never read" in message


async def test_exa_trigger_against_a_closed_port_reports_unreachable_not_no_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = closed_port()
    trigger = ExaMonitorRunTrigger(
        monitor_id=MON,
        exa_conn_id=exa_conn_id(monkeypatch, f"http://127.0.0.1:{port}"),
        poll_interval=1,
        end_time=1.0,  # long past: one poll, no retry, then the event
        created_after=T0.isoformat(),
    )
    events = [event.payload async for event in trigger.run()]
    assert [(e["status"], e["run_id"]) for e in events] == [("timeout", "")]
    message = events[0]["message"]
    assert f"could not reach the Exa API at http://127.0.0.1:{port}" in message
    assert "whether a run was created" in message and "no run was created" not in message
    no_secrets(json.dumps(events))


async def test_exa_trigger_names_the_run_that_completed(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    connections.exa.add_monitor(MON)
    run_id = connections.exa.add_run(MON, status="completed")["id"]
    trigger = ExaMonitorRunTrigger(
        monitor_id=MON,
        exa_conn_id=exa_conn_id(monkeypatch, connections.url),
        poll_interval=1,
        end_time=4_000_000_000.0,
        run_id=run_id,
    )
    with caplog.at_level(logging.INFO, logger="airflow_monid.triggers.exa"):
        events = [event.payload async for event in trigger.run()]
    assert [(e["status"], e["run_id"], e["run_status"]) for e in events] == [("terminal", run_id, "completed")]
    assert f"Exa search monitor {MON} run {run_id} is completed." in caplog.text
    assert f"Exa search monitor {MON} is completed" not in caplog.text


def test_waiter_tells_unreachable_from_error_answers_from_not_terminal() -> None:
    waiter = Waiter(end_time=0.0, poll_interval=1, label="Monid run R", log=log)
    waiter.on_result("RUNNING")
    assert waiter.timeout_message() == "Monid run R was not terminal at the deadline (last seen: RUNNING)."
    waiter.on_error(
        TransportError("boom", api="Monid API", url="http://h:1/v1/runs/R", base_url="http://h:1", reached=False)
    )
    assert waiter.timeout_message().startswith(
        "Monid run R: its state at the deadline is unknown: could not reach the Monid API at http://h:1 "
        "(1 poll(s) in a row failed); last error: TransportError: boom"
    )
    waiter.on_result("RUNNING")
    assert waiter.failure_text() is None and "an earlier poll failed: TransportError: boom" in waiter.timeout_message()
