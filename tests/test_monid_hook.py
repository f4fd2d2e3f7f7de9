"""MonidHook against the emulator (happy paths, run bodies on any status, pagination, test_connection),
plus the run models and the outcome table they feed."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_monid._monid.outcome import apply_outcome, is_reusable, provider_status, reason_of
from airflow_monid.exceptions import (
    APIError,
    ConfigError,
    PaginationLoopError,
    PermanentError,
    ProviderError,
    ResponseError,
    RunError,
    RunPermanentError,
)
from airflow_monid.hooks.monid import MonidHook
from airflow_monid.models.monid import MonidRun, MonidRunPage, MonidRunStatus
from airflow_monid.testing.emulator import Emulator
from tests._support import MONID_KEY, monid_conn

PDL = ("pdl", "/person/enrich")
TWEETS = ("apify", "/apidojo/tweet-scraper")


def hook_for(monkeypatch: pytest.MonkeyPatch, url: str, key: str = MONID_KEY, **extras: Any) -> MonidHook:
    conn_id = f"monid_hook_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", monid_conn(url, key, **extras))
    return MonidHook(conn_id)


# ----- submit and poll -----------------------------------------------------------------------------


def test_submit_sync_endpoint_returns_the_finished_run(connections: Emulator) -> None:
    emu = connections
    run = MonidHook().submit_run(*PDL, {"email": "jane@corp.example"})
    assert run.status is MonidRunStatus.COMPLETED
    assert run.provider_response is not None and run.provider_response.http_status == 200
    assert apply_outcome(run)["work_email"] == "jane@corp.example"
    assert run.raw["runId"] == run.run_id and "billing" in run.raw
    assert "output" not in run.summary() and "input" not in run.summary()
    (post,) = emu.requests()
    assert (post.method, post.path, post.status) == ("POST", "/v1/run", 200)
    assert post.body == {"provider": "pdl", "endpoint": "/person/enrich", "input": {"email": "jane@corp.example"}}


def test_submit_async_endpoint_then_poll_until_terminal(connections: Emulator) -> None:
    emu = connections
    hook = MonidHook()
    accepted = hook.submit_run(*TWEETS, {"searchTerms": ["airflow"], "maxItems": 3})
    assert accepted.status is MonidRunStatus.RUNNING and not accepted.status.is_terminal
    assert emu.requests()[0].status == 202
    statuses = [hook.get_run(accepted.run_id).status for _ in range(2)]
    assert statuses == [MonidRunStatus.RUNNING, MonidRunStatus.COMPLETED]
    final = hook.get_run(accepted.run_id)
    assert [tweet["searchTerm"] for tweet in apply_outcome(final)] == ["airflow"] * 3
    assert emu.count("GET", f"/v1/runs/{accepted.run_id}") == 3


def test_composite_input_is_sent_exactly_as_given(connections: Emulator) -> None:
    emu = connections
    emu.monid.set_endpoint(*PDL, input_shape="composite")
    payload = {"body": {"email": "a@b.example"}, "queryParams": {"pretty": True}}
    MonidHook().submit_run(*PDL, payload)
    assert emu.requests()[0].body["input"] == payload


@pytest.mark.parametrize(
    ("provider", "endpoint", "input"),
    [
        ("", "/person/enrich", {}),
        ("pdl", "  ", {}),
        ("pdl", "/x", ["not", "a", "dict"]),
        ("pdl", "/x", {"n": float("nan")}),
    ],
)
def test_submit_validates_before_spending(connections: Emulator, provider: str, endpoint: str, input: Any) -> None:
    with pytest.raises(ConfigError):
        MonidHook().submit_run(provider, endpoint, input)
    assert connections.requests() == []


# A body with a runId is a run whatever the HTTP status (spec generation of POST /v1/run).
@pytest.mark.parametrize(
    ("provider_http", "wire_status", "expected_error"),
    [
        (404, 404, RunPermanentError),
        (400, 400, RunPermanentError),
        (500, 500, RunError),
        (408, 504, RunError),
        (402, 502, RunPermanentError),
        (429, 429, RunError),
    ],
)
def test_spec_style_mirrored_status_with_run_body_is_a_run(
    connections: Emulator, provider_http: int, wire_status: int, expected_error: type[Exception]
) -> None:
    emu = connections
    emu.monid.set_endpoint(*PDL, response_style="spec", provider_status=provider_http)
    run = MonidHook().submit_run(*PDL, {"email": "x@corp.example"})
    (post,) = emu.requests()
    assert post.status == wire_status
    assert run.status is MonidRunStatus.COMPLETED
    assert run.provider_response is not None and run.provider_response.http_status == provider_http
    with pytest.raises(expected_error) as info:
        apply_outcome(run)
    assert isinstance(info.value, AirflowFailException) == (expected_error is RunPermanentError)
    assert info.value.run_id == run.run_id


def test_408_with_timed_out_run_is_parsed_not_raised(connections: Emulator) -> None:
    emu = connections
    emu.monid.set_endpoint(*PDL, final_status="TIMED_OUT")
    run = MonidHook().submit_run(*PDL, {"email": "x@corp.example"})
    assert emu.requests()[0].status == 408 and emu.count("POST", "/v1/run") == 1
    assert run.status is MonidRunStatus.TIMED_OUT and run.status.is_terminal
    with pytest.raises(RunError) as info:
        apply_outcome(run)
    assert not isinstance(info.value, RunPermanentError)


def test_blocked_sync_run_is_permanent(connections: Emulator) -> None:
    connections.monid.set_endpoint(*PDL, final_status="BLOCKED", reason="Workspace budget exhausted")
    run = MonidHook().submit_run(*PDL, {"email": "x@corp.example"})
    with pytest.raises(RunPermanentError, match="Workspace budget exhausted"):
        apply_outcome(run)


# ----- stop, list, discover, inspect, wallet -------------------------------------------------------


def test_stop_running_run_then_stop_terminal_run(connections: Emulator) -> None:
    emu = connections
    hook = MonidHook()
    run_id = emu.monid.add_run(status="RUNNING")["runId"]
    assert hook.stop_run(run_id) == {"runId": run_id, "status": "STOPPING", "message": "Stop requested"}
    assert hook.get_run(run_id).status is MonidRunStatus.STOPPED
    assert hook.stop_run(run_id) is None  # 409: already terminal, nothing to stop
    assert [r.status for r in emu.requests()] == [202, 200, 409]


def test_stop_unknown_run_raises_404(connections: Emulator) -> None:
    with pytest.raises(APIError) as info:
        MonidHook().stop_run("01NOPE")
    assert info.value.status_code == 404 and info.value.is_permanent
    assert connections.count() == 1


@pytest.mark.parametrize(("limit", "sent"), [(1000, "100"), (0, "1"), (-5, "1"), (7, "7")])
def test_list_runs_clamps_limit(connections: Emulator, limit: int, sent: str) -> None:
    MonidHook().list_runs(limit=limit)
    assert connections.requests()[0].query == {"limit": sent}


@pytest.mark.parametrize("last_cursor", [None, "", "absent"])
def test_iter_runs_follows_cursor_until_null_empty_or_absent(connections: Emulator, last_cursor: str | None) -> None:
    emu = connections
    ids = [emu.monid.add_run()["runId"] for _ in range(5)]
    emu.monid.last_page_cursor = last_cursor
    runs = list(MonidHook().iter_runs(page_size=2))
    assert [r.run_id for r in runs] == ids[::-1]  # newest first, each once
    gets = emu.requests("GET", "/v1/runs")
    assert len(gets) == 3
    assert "cursor" not in gets[0].query
    assert gets[1].query["cursor"] and gets[2].query["cursor"] != gets[1].query["cursor"]
    assert all(g.query["limit"] == "2" for g in gets)


def test_iter_runs_stops_at_max_items(connections: Emulator) -> None:
    emu = connections
    for _ in range(5):
        emu.monid.add_run()
    assert len(list(MonidHook().iter_runs(page_size=2, max_items=3))) == 3
    assert emu.count("GET", "/v1/runs") == 2


def test_iter_runs_empty_workspace(connections: Emulator) -> None:
    assert list(MonidHook().iter_runs()) == []
    assert connections.count("GET", "/v1/runs") == 1


def test_repeated_cursor_raises_after_yielding_fetched_pages(connections: Emulator) -> None:
    emu = connections
    ids = [emu.monid.add_run()["runId"] for _ in range(5)]
    emu.monid.cursor_loop = True
    seen: list[str] = []
    with pytest.raises(PaginationLoopError, match="twice") as info:
        for run in MonidHook().iter_runs(page_size=2):
            seen.append(run.run_id)
    newest = ids[::-1]
    assert seen == newest[:2] + newest[2:4]  # the second page came back with the same cursor
    assert isinstance(info.value, ResponseError)
    assert emu.count("GET", "/v1/runs") == 2


def test_discover_inspect_and_wallet(connections: Emulator) -> None:
    hook = MonidHook()
    found = hook.discover("company firmographics", limit=2)
    assert found["results"][0]["endpoint"] == "/company/enrich"
    details = hook.inspect("pdl", "/company/enrich")
    assert details["provider"] == "pdl" and "website" in details["inputSchema"]["properties"]  # the older flat shape
    assert details["price"] == {"type": "PER_CALL", "amount": {"value": 0.01, "currency": "USD"}}
    assert hook.get_wallet_balance()["balance"] == {"value": 25.0, "currency": "USD"}
    with pytest.raises(ConfigError):
        hook.discover("  ")
    with pytest.raises(APIError, match="HTTP 404"):
        hook.inspect("pdl", "/no/such/endpoint")
    assert connections.count() == 4


# ----- test_connection -----------------------------------------------------------------------------


def test_test_connection_reports_balance(connections: Emulator) -> None:
    connections.monid.balance = 2.85
    ok, message = MonidHook().test_connection()
    assert ok is True
    assert message == "Connected to Monid. Wallet balance: 2.85 USD"
    assert connections.count("GET", "/v1/wallet/balance") == 1


def test_test_connection_with_bad_key(connections: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, message = hook_for(monkeypatch, connections.url, key="mk_revoked_key").test_connection()
    assert ok is False
    assert "GET /v1/wallet/balance failed with HTTP 401: Invalid API key" in message
    assert "mk_revoked_key" not in message
    assert connections.count() == 1  # 401 is not retried


# ----- async methods -------------------------------------------------------------------------------


async def test_async_get_and_stop(connections: Emulator) -> None:
    emu = connections
    run_id = emu.monid.add_run(run_id="a/b ?#", status="RUNNING")["runId"]
    hook = MonidHook()
    assert (await hook.aget_run(run_id)).status is MonidRunStatus.RUNNING
    assert (await hook.astop_run(run_id)) is not None
    assert (await hook.aget_run(run_id)).status is MonidRunStatus.STOPPED
    assert (await hook.astop_run(run_id)) is None
    segment = "/v1/runs/a%2Fb%20%3F%23"
    assert [r.path for r in emu.requests()] == [segment, f"{segment}/stop", segment, f"{segment}/stop"]
    with pytest.raises(APIError) as info:
        await hook.aget_run("01UNKNOWN")
    assert info.value.status_code == 404


# ----- models: status vocabulary -------------------------------------------------------------------


@pytest.mark.parametrize("text", ["READY", "RUNNING", "STOPPING", "running", " Ready "])
def test_in_progress_statuses(text: str) -> None:
    status = MonidRunStatus.parse(text)
    assert status is not MonidRunStatus.UNKNOWN
    assert not status.is_terminal and not status.is_success


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("COMPLETED", MonidRunStatus.COMPLETED),
        ("FAILED", MonidRunStatus.FAILED),
        ("STOPPED", MonidRunStatus.STOPPED),
        ("BLOCKED", MonidRunStatus.BLOCKED),
        ("TIMED_OUT", MonidRunStatus.TIMED_OUT),
        ("TIME_OUT", MonidRunStatus.TIMED_OUT),
        ("completed", MonidRunStatus.COMPLETED),
    ],
)
def test_terminal_statuses(text: str, expected: MonidRunStatus) -> None:
    status = MonidRunStatus.parse(text)
    assert status is expected and status.is_terminal
    assert status.is_success == (expected is MonidRunStatus.COMPLETED)


def test_unknown_status_is_in_progress_and_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="airflow_monid.models")
    novel = f"QUEUED_{uuid.uuid4().hex[:6]}".upper()
    run = MonidRun.from_api({"runId": "R1", "status": novel})
    assert run.status is MonidRunStatus.UNKNOWN and not run.status.is_terminal
    assert MonidRunStatus.parse(novel) is MonidRunStatus.UNKNOWN
    warnings = [r for r in caplog.records if novel in r.getMessage()]
    assert len(warnings) == 1 and "treated as still in progress" in warnings[0].getMessage()
    with pytest.raises(RunError, match="no outcome yet"):
        apply_outcome(run)  # an in-progress run never counts as success


def test_unknown_status_in_the_api_keeps_a_run_in_progress(connections: Emulator) -> None:
    emu = connections
    run_id = emu.monid.add_run(status="RUNNING")["runId"]
    emu.monid.set_status(run_id, "PAUSED_FOR_REVIEW")
    run = MonidHook().get_run(run_id)
    assert run.status_text == "PAUSED_FOR_REVIEW" and not run.status.is_terminal


# ----- models: parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [None, [], "run", 42, {}, {"runId": ""}, {"runId": 7}, {"status": "COMPLETED"}],
)
def test_from_api_rejects_what_is_not_a_run(data: Any) -> None:
    with pytest.raises(ResponseError, match="Expected a Monid run"):
        MonidRun.from_api(data)


@pytest.mark.parametrize(
    "data",
    [
        {"runId": "R1", "providerResponse": "oops"},
        {"runId": "R1", "providerResponse": [200]},
    ],
)
def test_from_api_wraps_shape_errors(data: Any) -> None:
    with pytest.raises(ResponseError, match="unexpected shape"):
        MonidRun.from_api(data)


@pytest.mark.parametrize(
    "data",
    [
        {"runId": "R1", "provider": {"slug": "pdl"}},
        {"runId": "R1", "stoppable": "sometimes"},
        {"runId": "R1", "createdAt": 1790000000},
    ],
)
def test_from_api_tolerates_odd_types_of_informational_fields(data: Any) -> None:
    """A finished run must stay readable when a field it does not need has an unexpected type."""
    run = MonidRun.from_api(data)
    assert run.run_id == "R1" and run.raw == data


def test_run_keeps_unknown_fields_and_raw_json() -> None:
    data = {"runId": "R1", "status": "COMPLETED", "billedUnits": 3, "providerResponse": {"httpStatus": 200, "x": 1}}
    run = MonidRun.from_api(data)
    assert run.raw == data and run.raw is data
    assert run.model_extra == {"billedUnits": 3}


def test_page_parsing() -> None:
    page = MonidRunPage.from_api({"items": [{"runId": "A"}, {"runId": "B"}], "cursor": ""})
    assert [r.run_id for r in page.items] == ["A", "B"] and page.cursor is None
    assert MonidRunPage.from_api({}).items == []
    for bad in ({"items": {}}, {"items": [], "cursor": 3}, {"items": [{"no": "id"}]}, [], None):
        with pytest.raises(ResponseError):
            MonidRunPage.from_api(bad)


# ----- outcome table -------------------------------------------------------------------------------


def make_run(status: str = "COMPLETED", http: Any = 200, **extra: Any) -> MonidRun:
    data: dict[str, Any] = {"runId": "R1", "status": status, "provider": "pdl", "endpoint": "/person/enrich"}
    if http != "missing":
        data["providerResponse"] = {"httpStatus": http}
    data.update(extra)
    return MonidRun.from_api(data)


@pytest.mark.parametrize("http", [200, 201, 204, 299])
def test_completed_2xx_returns_output(http: int) -> None:
    assert apply_outcome(make_run(http=http, output={"rows": [1]})) == {"rows": [1]}


def test_completed_without_provider_status_is_success_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="airflow_monid.outcome")
    for run in (make_run(http="missing", output=[1]), make_run(http=None, output=[1])):
        assert apply_outcome(run) == [1]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("without providerResponse.httpStatus" in m for m in messages) == 2


@pytest.mark.parametrize("http", ["200", 200.0, True, [200], {"code": 200}])
def test_non_integer_provider_status_is_a_failure(http: Any) -> None:
    run = make_run(http=http, output=[1])
    with pytest.raises(RunPermanentError, match="not an integer"):
        apply_outcome(run)
    with pytest.raises(RunPermanentError):
        provider_status(run)
    assert not is_reusable(run)


def test_allowed_provider_status_returns_none() -> None:
    run = make_run(http=404, output=None, providerResponse={"httpStatus": 404, "error": {"message": "no match"}})
    assert apply_outcome(run, allowed_provider_statuses=[404]) is None
    with pytest.raises(RunPermanentError, match="no match"):
        apply_outcome(run, allowed_provider_statuses=[400])


@pytest.mark.parametrize("http", [400, 401, 402, 403, 404, 409, 422])
def test_provider_4xx_is_permanent(http: int) -> None:
    with pytest.raises(RunPermanentError) as info:
        apply_outcome(make_run(http=http))
    assert isinstance(info.value, AirflowFailException) and isinstance(info.value, ProviderError)
    assert info.value.status == "COMPLETED" and f"HTTP {http}" in str(info.value)


@pytest.mark.parametrize("http", [408, 429, 500, 502, 503, 504])
def test_provider_408_429_5xx_is_retryable(http: int) -> None:
    with pytest.raises(RunError) as info:
        apply_outcome(make_run(http=http))
    assert not isinstance(info.value, AirflowFailException)
    assert "a new run may succeed" in str(info.value)


@pytest.mark.parametrize("status", ["FAILED", "TIMED_OUT", "TIME_OUT", "STOPPED"])
def test_retryable_terminal_statuses(status: str) -> None:
    run = make_run(status, http="missing", reason="pipeline crashed")
    with pytest.raises(RunError, match="pipeline crashed") as info:
        apply_outcome(run)
    assert not isinstance(info.value, (AirflowFailException, PermanentError))
    assert info.value.status == MonidRunStatus.parse(status).value


def test_blocked_is_permanent() -> None:
    with pytest.raises(RunPermanentError, match="BLOCKED") as info:
        apply_outcome(make_run("BLOCKED", http="missing"))
    assert isinstance(info.value, AirflowFailException)
    assert info.value.run_id == "R1"


def test_reason_of_prefers_reason_then_error_then_provider_error() -> None:
    assert reason_of(make_run("FAILED", reason="r", error="e")) == "r"
    assert reason_of(make_run("FAILED", error={"source": "platform", "message": "boom"})) == "boom"
    assert reason_of(make_run(http=500, providerResponse={"httpStatus": 500, "error": {"detail": "down"}})) == "down"
    assert reason_of(make_run("FAILED", http="missing")) == "no reason given"
