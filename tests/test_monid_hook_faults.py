"""MonidHook under faults: read retries, the paid-request rules of POST /v1/run, error messages, key leaks.

Faults come from the emulator over real HTTP; respx is used only for the error-mapping unit tests of
transport exceptions the emulator cannot produce (connect/pool timeouts, write errors). Backoff waits
are recorded instead of slept (``sleeps`` fixture), which also lets the tests check Retry-After.
"""

from __future__ import annotations

import email.utils
import logging
import socket
import time
import types
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx

from airflow_monid._http import transport as _http
from airflow_monid.exceptions import (
    APIError,
    PermanentAPIError,
    PermanentError,
    ProviderError,
    ResponseError,
    TransientAPIError,
    TransportError,
    UnclearRequestError,
)
from airflow_monid.hooks.monid import MonidHook
from airflow_monid.models.monid import MonidRunStatus
from airflow_monid.testing.emulator import Emulator
from tests._support import FAST_EXTRAS, MONID_KEY, monid_conn

PDL = ("pdl", "/person/enrich")
PDL_INPUT = {"email": "jane@corp.example"}
RUN = r"/v1/runs/R1"
MAX_ATTEMPTS = FAST_EXTRAS["max_attempts"]


def hook_for(monkeypatch: pytest.MonkeyPatch, url: str, key: str = MONID_KEY, **extras: Any) -> MonidHook:
    conn_id = f"monid_faults_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", monid_conn(url, key, **extras))
    return MonidHook(conn_id)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sleeps:
    """Stands in for ``time.sleep`` in the request core: records each backoff, runs an optional hook."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.on_sleep: Callable[[int], None] | None = None

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep(len(self.delays))


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Sleeps:
    recorder = Sleeps()
    shim = types.SimpleNamespace(sleep=recorder, monotonic=time.monotonic, time=time.time)
    monkeypatch.setattr(_http, "time", shim)
    return recorder


@pytest.fixture
def run_r1(connections: Emulator) -> Emulator:
    connections.monid.add_run(run_id="R1", status="COMPLETED")
    return connections


def faults_seen(emu: Emulator, method: str | None = None) -> list[str | None]:
    return [r.fault for r in emu.requests(method)]


# ----- reads: retried -------------------------------------------------------------------------------


def test_read_retried_after_connection_reset(run_r1: Emulator, sleeps: Sleeps) -> None:
    run_r1.add_fault("GET", RUN, action="reset", times=2)
    assert MonidHook().get_run("R1").run_id == "R1"
    assert faults_seen(run_r1) == ["reset", "reset", None]
    assert len(sleeps.delays) == 2


def test_read_retried_after_read_timeout(run_r1: Emulator, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch) -> None:
    run_r1.add_fault("GET", RUN, action="hang", hang_seconds=30)
    hook = hook_for(monkeypatch, run_r1.url, timeout=1)
    assert hook.get_run("R1").status is MonidRunStatus.COMPLETED
    assert faults_seen(run_r1) == ["hang", None]
    assert len(sleeps.delays) == 1


@pytest.mark.parametrize(
    ("action", "status"), [("truncate", None), ("html", 502), ("respond", 408), ("respond", 500), ("respond", 504)]
)
def test_read_retried_after_transient_answer(run_r1: Emulator, sleeps: Sleeps, action: str, status: int | None) -> None:
    run_r1.add_fault("GET", RUN, action=action, status=status, after_handling=action == "truncate")
    assert MonidHook().get_run("R1").run_id == "R1"
    assert faults_seen(run_r1) == [action, None]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_burst_that_ends(run_r1: Emulator, sleeps: Sleeps, status: int) -> None:
    run_r1.add_fault("GET", RUN, status=status, times=MAX_ATTEMPTS - 1)
    assert MonidHook().get_run("R1").run_id == "R1"
    assert [r.status for r in run_r1.requests()] == [status] * (MAX_ATTEMPTS - 1) + [200]


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_that_never_ends_gives_up_after_max_attempts(run_r1: Emulator, sleeps: Sleeps, status: int) -> None:
    run_r1.add_fault("GET", RUN, status=status, times=None)
    with pytest.raises(APIError) as info:
        MonidHook().get_run("R1")
    assert info.value.status_code == status and not info.value.is_permanent
    assert run_r1.count("GET", "/v1/runs/R1") == MAX_ATTEMPTS
    assert len(sleeps.delays) == MAX_ATTEMPTS - 1
    for attempt, delay in enumerate(sleeps.delays, start=1):  # full-jitter exponential backoff within bounds
        ceiling = min(FAST_EXTRAS["backoff_max"], FAST_EXTRAS["backoff_base"] * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling


def test_reset_that_never_ends_is_a_transport_error(run_r1: Emulator, sleeps: Sleeps) -> None:
    run_r1.add_fault("GET", RUN, action="reset", times=None)
    lost = rf"GET http://\S+/v1/runs/R1 lost the connection .* after {MAX_ATTEMPTS} attempt"
    with pytest.raises(TransportError, match=lost):
        MonidHook().get_run("R1")
    assert run_r1.count("GET", "/v1/runs/R1") == MAX_ATTEMPTS


def test_connection_refused_on_read_is_retried_then_a_transport_error(
    sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = hook_for(monkeypatch, f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(TransportError, match=f"ConnectError.*after {MAX_ATTEMPTS} attempt"):
        hook.get_run("R1")
    assert len(sleeps.delays) == MAX_ATTEMPTS - 1


def test_429_retry_after_seconds_is_honoured(run_r1: Emulator, sleeps: Sleeps) -> None:
    run_r1.add_fault("GET", RUN, status=429, headers={"Retry-After": "1.5"})
    MonidHook().get_run("R1")
    assert sleeps.delays == [1.5]
    assert run_r1.count() == 2


def test_503_retry_after_is_honoured(connections: Emulator, sleeps: Sleeps) -> None:
    # GET /v1/wallet/balance answers 503 + Retry-After while the wallet is being provisioned.
    body = {"code": 503, "message": "Wallet is not active", "walletStatus": "PROVISIONING"}
    connections.add_fault("GET", "/v1/wallet/balance", status=503, body=body, headers={"Retry-After": "1"})
    ok, message = MonidHook().test_connection()
    assert ok, message
    assert sleeps.delays == [1.0]
    assert [r.status for r in connections.requests()] == [503, 200]


def test_429_retry_after_http_date_is_capped(run_r1: Emulator, sleeps: Sleeps) -> None:
    far = email.utils.formatdate(time.time() + 3600, usegmt=True)
    run_r1.add_fault("GET", RUN, status=429, headers={"Retry-After": far})
    MonidHook().get_run("R1")
    assert sleeps.delays == [float(FAST_EXTRAS["retry_after_cap"])]


def test_429_retry_after_http_date_in_the_past_means_now(run_r1: Emulator, sleeps: Sleeps) -> None:
    past = email.utils.formatdate(time.time() - 600, usegmt=True)
    run_r1.add_fault("GET", RUN, status=429, headers={"Retry-After": past})
    MonidHook().get_run("R1")
    assert sleeps.delays == [0.0]


def test_429_without_retry_after_uses_backoff(run_r1: Emulator, sleeps: Sleeps) -> None:
    run_r1.add_fault("GET", RUN, status=429)
    MonidHook().get_run("R1")
    (delay,) = sleeps.delays
    assert FAST_EXTRAS["backoff_base"] / 2 <= delay <= FAST_EXTRAS["backoff_base"]


def test_retry_after_beyond_the_retry_budget_fails_at_once(
    run_r1: Emulator, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_r1.add_fault("GET", RUN, status=429, headers={"Retry-After": "30"}, times=None)
    hook = hook_for(monkeypatch, run_r1.url, max_retry_seconds=5, retry_after_cap=60)
    with pytest.raises(APIError) as info:
        hook.get_run("R1")
    assert info.value.status_code == 429
    assert sleeps.delays == [] and run_r1.count() == 1


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 409, 422])
def test_client_errors_raise_at_once(run_r1: Emulator, sleeps: Sleeps, status: int) -> None:
    run_r1.add_fault("GET", RUN, status=status, times=None)
    with pytest.raises(APIError) as info:
        MonidHook().get_run("R1")
    assert info.value.status_code == status and info.value.is_permanent
    assert run_r1.count() == 1 and sleeps.delays == []


async def test_async_read_retried_after_resets_and_5xx(run_r1: Emulator) -> None:
    run_r1.add_fault("GET", RUN, action="reset")
    run_r1.add_fault("GET", RUN, status=503)
    run = await MonidHook().aget_run("R1")
    assert run.run_id == "R1"
    assert faults_seen(run_r1) == ["reset", "respond", None]


async def test_async_read_gives_up_after_max_attempts(run_r1: Emulator) -> None:
    run_r1.add_fault("GET", RUN, status=502, times=None)
    with pytest.raises(APIError) as info:
        await MonidHook().aget_run("R1")
    assert info.value.status_code == 502
    assert run_r1.count() == MAX_ATTEMPTS


# ----- POST /v1/run: retried only when it provably never arrived, or on 429 -------------------------


def test_paid_submit_retried_after_connection_refused(sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    late = Emulator(monid_api_key=MONID_KEY, port=port)

    def come_up(count: int) -> None:  # the API comes back during the second backoff
        if count == 2:
            late.start()

    sleeps.on_sleep = come_up
    hook = hook_for(monkeypatch, f"http://127.0.0.1:{port}")
    try:
        run = hook.submit_run(*PDL, PDL_INPUT)
        assert run.status is MonidRunStatus.COMPLETED
        assert late.count("POST", "/v1/run") == 1
        assert len(late.monid.runs()) == 1
        assert len(sleeps.delays) == 2  # two refusals, then the one POST that arrived
    finally:
        late.stop()


def test_paid_submit_refused_until_the_end_is_a_transport_error(
    sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = hook_for(monkeypatch, f"http://127.0.0.1:{closed_port()}")
    refused = rf"POST http://\S+/v1/run could not connect.* after {MAX_ATTEMPTS} attempt"
    with pytest.raises(TransportError, match=refused) as info:
        hook.submit_run(*PDL, PDL_INPUT)
    assert not isinstance(info.value, UnclearRequestError)


def test_paid_submit_retried_after_429_without_run_id(connections: Emulator, sleeps: Sleeps) -> None:
    emu = connections
    emu.add_fault("POST", "/v1/run", status=429, headers={"Retry-After": "1"}, times=2)
    run = MonidHook().submit_run(*PDL, PDL_INPUT)
    assert [r.status for r in emu.requests("POST")] == [429, 429, 200]
    assert sleeps.delays == [1.0, 1.0]
    assert [r["runId"] for r in emu.monid.runs()] == [run.run_id]


def test_paid_submit_429_until_the_end(connections: Emulator, sleeps: Sleeps) -> None:
    connections.add_fault("POST", "/v1/run", status=429, times=None)
    with pytest.raises(APIError) as info:
        MonidHook().submit_run(*PDL, PDL_INPUT)
    assert info.value.status_code == 429
    assert connections.count("POST", "/v1/run") == MAX_ATTEMPTS
    assert connections.monid.runs() == []


UNCLEAR = [
    pytest.param({"action": "hang", "hang_seconds": 30}, 0, id="read-timeout"),
    pytest.param({"action": "reset"}, 0, id="reset-before-handling"),
    pytest.param({"action": "reset", "after_handling": True}, 1, id="reset-after-handling"),
    pytest.param({"action": "truncate", "after_handling": True}, 1, id="truncated-json-transport"),
    pytest.param({"action": "respond", "status": 200, "body": '{"runId": "01JGZK8Q'}, 0, id="truncated-json-200"),
    pytest.param({"action": "respond", "status": 200, "body": {"accepted": True}}, 0, id="200-without-run-id"),
    pytest.param({"action": "respond", "status": 202, "body": ""}, 0, id="202-empty"),
    pytest.param({"action": "html", "status": 502}, 0, id="html-502"),
    pytest.param({"action": "html", "status": 200}, 0, id="html-200"),
    pytest.param({"action": "respond", "status": 500}, 0, id="500"),
    pytest.param({"action": "respond", "status": 502}, 0, id="502"),
    pytest.param({"action": "respond", "status": 503}, 0, id="503"),
    pytest.param({"action": "respond", "status": 504}, 0, id="504"),
    pytest.param({"action": "respond", "status": 408}, 0, id="408"),
    pytest.param({"action": "respond", "status": 500, "after_handling": True}, 1, id="500-after-run-created"),
]


@pytest.mark.parametrize(("fault", "runs_created"), UNCLEAR)
def test_paid_submit_never_resent_when_it_may_have_arrived(
    connections: Emulator,
    sleeps: Sleeps,
    monkeypatch: pytest.MonkeyPatch,
    fault: dict[str, Any],
    runs_created: int,
) -> None:
    emu = connections
    emu.add_fault("POST", "/v1/run", times=None, **fault)
    hook = hook_for(monkeypatch, emu.url, timeout=0.5)
    with pytest.raises(UnclearRequestError) as info:
        hook.submit_run(*PDL, PDL_INPUT)
    message = str(info.value)
    assert f"POST {emu.url}/v1/run" in message
    assert "a run may exist" in message and "Check the runs list" in message
    assert isinstance(info.value, ProviderError) and not isinstance(info.value, PermanentError)
    assert emu.count("POST", "/v1/run") == 1
    assert sleeps.delays == []
    assert len(emu.monid.runs()) == runs_created


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, {"runId": "01R", "status": "COMPLETED", "providerResponse": [200]}),
        (202, {"runId": "01R", "providerResponse": "accepted"}),
        (500, {"runId": 12345, "status": "FAILED"}),
    ],
)
def test_paid_submit_with_an_unusable_run_body_is_unclear(
    connections: Emulator, sleeps: Sleeps, status: int, body: dict[str, Any]
) -> None:
    connections.add_fault("POST", "/v1/run", status=status, body=body, times=None)
    with pytest.raises(UnclearRequestError, match="not a usable run") as info:
        MonidHook().submit_run(*PDL, PDL_INPUT)
    assert "a run may exist" in str(info.value)
    (post,) = connections.requests("POST")
    assert post.request_id in str(info.value)


@pytest.mark.parametrize("status", [404, 500, 502, 504, 408])
def test_paid_submit_error_status_with_run_body_is_a_run(connections: Emulator, sleeps: Sleeps, status: int) -> None:
    body = {"runId": "01RUNINBODY", "status": "COMPLETED", "providerResponse": {"httpStatus": status}}
    connections.add_fault("POST", "/v1/run", status=status, body=body, times=None)
    run = MonidHook().submit_run(*PDL, PDL_INPUT)
    assert run.run_id == "01RUNINBODY"
    assert run.provider_response is not None and run.provider_response.http_status == status
    assert connections.count("POST", "/v1/run") == 1


@pytest.mark.parametrize(
    ("status", "message"),
    [(400, "input is required"), (401, "Invalid API key"), (402, "Wallet balance too low"), (403, "No workspace")],
)
def test_paid_submit_client_error_raises_at_once(
    connections: Emulator, sleeps: Sleeps, status: int, message: str
) -> None:
    connections.add_fault("POST", "/v1/run", status=status, body={"code": status, "message": message}, times=None)
    with pytest.raises(APIError) as info:
        MonidHook().submit_run(*PDL, PDL_INPUT)
    assert not isinstance(info.value, UnclearRequestError)
    assert info.value.status_code == status and info.value.message == message
    assert connections.count("POST", "/v1/run") == 1


def test_paid_submit_unknown_endpoint_404_is_an_api_error(connections: Emulator, sleeps: Sleeps) -> None:
    with pytest.raises(APIError, match="HTTP 404: Endpoint not found: pdl /nope"):
        MonidHook().submit_run("pdl", "/nope", {})
    assert connections.count("POST", "/v1/run") == 1


# ----- respx: transport exceptions the emulator cannot produce ------------------------------------

RESPX_URL = "https://monid.respx.test"
RUN_BODY = {"runId": "01RESPX", "status": "RUNNING"}


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch, sleeps: Sleeps) -> Iterator[tuple[respx.MockRouter, MonidHook]]:
    with respx.mock(base_url=RESPX_URL, assert_all_called=False) as router:
        yield router, hook_for(monkeypatch, RESPX_URL)


@pytest.mark.parametrize("exc", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
def test_paid_submit_retried_when_never_sent(mocked: tuple[respx.MockRouter, MonidHook], exc: type[Exception]) -> None:
    router, hook = mocked
    route = router.post("/v1/run").mock(side_effect=[exc, httpx.Response(202, json=RUN_BODY)])
    assert hook.submit_run(*PDL, PDL_INPUT).run_id == "01RESPX"
    assert route.call_count == 2


@pytest.mark.parametrize(
    "exc", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError]
)
def test_paid_submit_not_resent_when_maybe_sent(
    mocked: tuple[respx.MockRouter, MonidHook], exc: type[Exception]
) -> None:
    router, hook = mocked
    route = router.post("/v1/run").mock(side_effect=[exc, httpx.Response(202, json=RUN_BODY)])
    with pytest.raises(UnclearRequestError, match=exc.__name__):
        hook.submit_run(*PDL, PDL_INPUT)
    assert route.call_count == 1


@pytest.mark.parametrize("exc", [httpx.ReadTimeout, httpx.WriteError, httpx.RemoteProtocolError, httpx.ConnectTimeout])
def test_reads_retried_on_any_transport_error(mocked: tuple[respx.MockRouter, MonidHook], exc: type[Exception]) -> None:
    router, hook = mocked
    route = router.get("/v1/runs/01RESPX").mock(side_effect=[exc, httpx.Response(200, json=RUN_BODY)])
    assert hook.get_run("01RESPX").status is MonidRunStatus.RUNNING
    assert route.call_count == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"code": 400, "message": "flat message"}, "flat message"),
        ({"error": {"code": "BAD_INPUT", "message": "nested message"}}, "nested message"),
        ({"error": "string error"}, "string error"),
        ({"detail": "unknown shape"}, '{"detail":"unknown shape"}'),
        (["not", "an", "object"], '["not","an","object"]'),
    ],
)
def test_error_body_shapes(mocked: tuple[respx.MockRouter, MonidHook], body: Any, message: str) -> None:
    router, hook = mocked
    router.get("/v1/wallet/balance").mock(
        return_value=httpx.Response(400, json=body, headers={"x-request-id": "req_abc"})
    )
    with pytest.raises(APIError) as info:
        hook.get_wallet_balance()
    assert info.value.message.replace(" ", "") == message.replace(" ", "")
    assert str(info.value).endswith("; x-request-id: req_abc)")


def test_error_without_body_or_request_id(mocked: tuple[respx.MockRouter, MonidHook]) -> None:
    router, hook = mocked
    router.get("/v1/wallet/balance").mock(return_value=httpx.Response(403))
    with pytest.raises(APIError) as info:
        hook.get_wallet_balance()
    assert str(info.value) == (
        "Monid API GET /v1/wallet/balance failed with HTTP 403: no message "
        f"(URL: {hook.settings.base_url}/v1/wallet/balance; x-request-id: none)"
    )


# ----- error messages ------------------------------------------------------------------------------


def test_api_error_names_method_path_status_message_and_request_id(connections: Emulator) -> None:
    with pytest.raises(APIError) as info:
        MonidHook().get_run("01MISSING/x")
    (record,) = connections.requests()
    assert record.request_id.startswith("req_")
    assert str(info.value) == (
        f"Monid API GET /v1/runs/01MISSING%2Fx failed with HTTP 404: Run not found "
        f"(URL: {connections.url}/v1/runs/01MISSING%2Fx; x-request-id: {record.request_id})"
    )
    error = info.value
    assert (error.method, error.path, error.status_code, error.message, error.request_id) == (
        "GET",
        "/v1/runs/01MISSING%2Fx",
        404,
        "Run not found",
        record.request_id,
    )


def test_html_502_on_a_read_after_retries_gives_status_and_start_of_body(run_r1: Emulator, sleeps: Sleeps) -> None:
    run_r1.add_fault("GET", RUN, action="html", status=502, times=None)
    with pytest.raises(APIError) as info:
        MonidHook().get_run("R1")
    last = run_r1.requests()[-1]
    text = str(info.value)
    assert "GET /v1/runs/R1 failed with HTTP 502: non-JSON body: '<html><head><title>502 Bad Gateway" in text
    assert f"; x-request-id: {last.request_id})" in text
    assert run_r1.count() == MAX_ATTEMPTS


def test_long_non_json_body_is_cut(run_r1: Emulator, sleeps: Sleeps) -> None:
    run_r1.add_fault("GET", RUN, action="html", status=400, body="<p>" + "x" * 5000 + "</p>")
    with pytest.raises(APIError) as info:
        MonidHook().get_run("R1")
    assert "<p>xxx" in info.value.message and len(info.value.message) < 300


def test_2xx_non_json_on_a_read_is_a_response_error(run_r1: Emulator, sleeps: Sleeps) -> None:
    run_r1.add_fault("GET", RUN, action="html", status=200)
    with pytest.raises(ResponseError) as info:
        MonidHook().get_run("R1")
    (record,) = run_r1.requests()
    assert "answered HTTP 200 with a body that is not JSON" in str(info.value)
    assert record.request_id in str(info.value) and "<html>" in str(info.value)


def test_2xx_body_that_is_not_a_run_is_a_response_error(run_r1: Emulator, sleeps: Sleeps) -> None:
    run_r1.add_fault("GET", RUN, status=200, body={"items": []})
    with pytest.raises(ResponseError, match="Expected a Monid run"):
        MonidHook().get_run("R1")


# ----- the key never leaks -------------------------------------------------------------------------


def test_key_never_appears_in_errors_reprs_or_logs(
    connections: Emulator, sleeps: Sleeps, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    emu = connections
    emu.monid.add_run(run_id="R1")
    echo = f"bad token Bearer {MONID_KEY} rejected"
    hook = MonidHook()
    errors: list[BaseException] = []

    def expect_error(call: Callable[[], Any]) -> None:
        with pytest.raises(ProviderError) as info:
            call()
        errors.append(info.value)

    emu.add_fault("GET", "/v1/wallet/balance", status=401, body={"code": 401, "message": echo})
    expect_error(hook.get_wallet_balance)
    emu.add_fault("GET", RUN, action="html", status=502, body=f"<h1>{echo}</h1>", times=None)
    expect_error(lambda: hook.get_run("R1"))
    emu.clear_faults()
    emu.add_fault("GET", RUN, status=200, body=echo)
    expect_error(lambda: hook.get_run("R1"))
    emu.add_fault("GET", RUN, status=503, body={"error": {"message": echo}}, times=None)
    expect_error(lambda: hook.get_run("R1"))
    emu.clear_faults()
    emu.add_fault("POST", "/v1/run", status=500, body={"message": echo})
    expect_error(lambda: hook.submit_run(*PDL, PDL_INPUT))
    emu.add_fault("POST", "/v1/run", status=200, body=echo)
    expect_error(lambda: hook.submit_run(*PDL, PDL_INPUT))
    emu.add_fault("POST", "/v1/run", action="reset")
    expect_error(lambda: hook.submit_run(*PDL, PDL_INPUT))
    refused = hook_for(monkeypatch, f"http://127.0.0.1:{closed_port()}")
    expect_error(lambda: refused.get_run("R1"))
    ok, message = hook_for(monkeypatch, emu.url, key=MONID_KEY + "x").test_connection()
    assert not ok and "HTTP 401" in message

    assert {type(e) for e in errors} == {
        PermanentAPIError,
        TransientAPIError,
        ResponseError,
        UnclearRequestError,
        TransportError,
    }
    assert all(isinstance(e, APIError) for e in errors if isinstance(e, PermanentAPIError | TransientAPIError))
    assert any("***" in str(e) for e in errors)  # the echoed key was there, and was masked
    texts = [str(e) for e in errors] + [repr(e) for e in errors] + [message]
    texts += [repr(hook), str(hook), repr(hook.settings), str(refused.settings)]
    texts += [str(e.args) for e in errors]
    for text in texts:
        assert MONID_KEY not in text
    assert "attempt 1 of" in caplog.text  # the retries were logged and captured
    assert MONID_KEY not in caplog.text
    for record in caplog.records:
        assert MONID_KEY not in record.getMessage()
