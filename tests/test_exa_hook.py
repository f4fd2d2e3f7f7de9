"""ExaHook against the emulator (both families, both search paths, paging, window scans, replacements)
and with respx for the error mapping; plus the Exa run models and their one status vocabulary."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from airflow_monid._exa.outcome import run_outcome
from airflow_monid.exceptions import (
    APIError,
    ConfigError,
    PaginationLoopError,
    ResponseError,
    RunError,
    RunPermanentError,
    UnclearRequestError,
)
from airflow_monid.hooks.exa import ExaHook
from airflow_monid.models.exa import ExaMonitorRun, ExaMonitorType, ExaPage, ExaRunStatus, RunWindow
from airflow_monid.testing.emulator import Emulator
from tests._support import EXA_KEY, exa_conn

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FAKE = "https://exa.test"


def hook_for(monkeypatch: pytest.MonkeyPatch, url: str, key: str = EXA_KEY, path: str | None = None, **extras: Any):
    conn_id = f"exa_hook_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", exa_conn(url, key, **extras))
    return ExaHook(conn_id, search_monitors_path=path)


def run_json(run_id: str = "r1", status: str = "completed", **fields: Any) -> dict[str, Any]:
    return {"id": run_id, "monitorId": "m", "status": status, "createdAt": "2026-03-01T12:00:00Z", **fields}


# ----- models --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("pending", ExaRunStatus.PENDING),
        ("created", ExaRunStatus.PENDING),
        ("running", ExaRunStatus.RUNNING),
        ("completed", ExaRunStatus.COMPLETED),
        ("failed", ExaRunStatus.FAILED),
        ("cancelled", ExaRunStatus.CANCELLED),
        ("canceled", ExaRunStatus.CANCELLED),
        ("Canceled", ExaRunStatus.CANCELLED),
        ("queued_for_later", ExaRunStatus.UNKNOWN),
        (None, ExaRunStatus.UNKNOWN),
    ],
)
def test_one_status_vocabulary_for_both_families(text: Any, status: ExaRunStatus) -> None:
    assert ExaRunStatus.parse(text) is status
    assert status.is_terminal == (status in {ExaRunStatus.COMPLETED, ExaRunStatus.FAILED, ExaRunStatus.CANCELLED})
    assert status.is_success == (status is ExaRunStatus.COMPLETED)


def test_unknown_status_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    text = f"brand_new_{uuid.uuid4().hex[:6]}"
    with caplog.at_level("WARNING", logger="airflow_monid.models"):
        ExaRunStatus.parse(text)
        ExaRunStatus.parse(text)
    assert sum(text in r.getMessage() for r in caplog.records) == 1


def test_run_keeps_raw_json_and_reads_either_reason_spelling() -> None:
    search = ExaMonitorRun.from_api(run_json(status="failed", failReason="insufficient_credits", extra={"x": 1}))
    websets = ExaMonitorRun.from_api(run_json(status="failed", failedReason="webset gone", type="refresh"))
    assert search.reason == "insufficient_credits" and search.raw["extra"] == {"x": 1}
    assert websets.reason == "webset gone" and websets.run_type == "refresh"
    assert search.created == T0
    with pytest.raises(ResponseError):
        ExaMonitorRun.from_api({"status": "completed"})


def test_outcome_returns_raw_json_or_classifies_the_failure() -> None:
    done = ExaMonitorRun.from_api(run_json(output={"results": [{"url": "u"}]}))
    assert run_outcome(done, "m") is done.raw
    with pytest.raises(RunError) as transient:
        run_outcome(ExaMonitorRun.from_api(run_json(status="failed", failReason="rate_limited")), "m")
    assert not isinstance(transient.value, RunPermanentError)
    with pytest.raises(RunPermanentError, match="r1 ended failed: api_key_invalid"):
        run_outcome(ExaMonitorRun.from_api(run_json(status="failed", failReason="api_key_invalid")), "m")
    with pytest.raises(RunPermanentError, match="ended canceled: no reason given"):
        run_outcome(ExaMonitorRun.from_api(run_json(status="canceled")), "m")
    with pytest.raises(RunError, match="still 'running'"):
        run_outcome(ExaMonitorRun.from_api(run_json(status="running")), "m")


def test_page_ends_on_either_signal() -> None:
    assert ExaPage.from_api({"data": [], "hasMore": True, "nextCursor": "c"}, "x").next_cursor == "c"
    assert ExaPage.from_api({"data": [], "hasMore": False, "nextCursor": "c"}, "x").next_cursor is None
    assert ExaPage.from_api({"data": [], "hasMore": True, "nextCursor": None}, "x").next_cursor is None
    with pytest.raises(ResponseError):
        ExaPage.from_api({"items": []}, "x")


def test_window_selects_oldest_in_bounds_and_says_when_to_stop() -> None:
    runs = [
        ExaMonitorRun.from_api(run_json(f"r{h}", createdAt=(T0 + timedelta(hours=h)).isoformat()))
        for h in (5, 4, 3, 2, 1, 0)
    ]
    window = RunWindow(T0 + timedelta(hours=1), T0 + timedelta(hours=4))
    assert window.feed(runs[:3]) is False  # r5 and r4 are too new, r3 is in
    assert window.feed(runs[3:]) is True  # r0 is older than the lower bound: stop paging
    assert window.oldest is not None and window.oldest.id == "r1"
    assert ExaMonitorType.parse("WEBSETS") is ExaMonitorType.WEBSETS
    with pytest.raises(ConfigError, match="monitor_type"):
        ExaMonitorType.parse("agent")


# ----- hook against the emulator -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/monitors", "/search-monitors"])
@pytest.mark.parametrize("source", ["extra", "argument"])
def test_search_monitor_calls_on_either_path(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch, path: str, source: str
) -> None:
    emu = connections
    emu.exa.add_monitor("mon_a")
    done = emu.exa.add_run("mon_a", status="completed")
    extras = {"search_monitors_path": path} if source == "extra" else {}
    hook = hook_for(monkeypatch, emu.url, path=path if source == "argument" else None, **extras)
    assert hook.get_monitor("mon_a").status == "active"
    (listed,) = hook.list_runs("mon_a").runs()
    run = hook.get_run("mon_a", done["id"])
    assert listed.id == run.id == done["id"] and run.status is ExaRunStatus.COMPLETED
    assert run.raw["output"]["results"] and run.raw["status"] == "completed"
    assert {r.path.rsplit("/mon_a", 1)[0] for r in emu.requests()} == {path}
    assert all(r.headers.get("x-api-key") is None for r in emu.requests())  # recorded without secrets
    assert emu.requests()[1].query == {"limit": "100"}


def test_hook_argument_wins_over_the_extra(connections: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = connections
    emu.exa.add_monitor("mon_a")
    hook = hook_for(monkeypatch, emu.url, path="search-monitors", search_monitors_path="/monitors")
    hook.get_monitor("mon_a")
    assert emu.requests()[0].path == "/search-monitors/mon_a"


@pytest.mark.parametrize("bad", ["/v2/monitors", "websets"])
def test_bad_search_path_is_a_config_error(connections: Emulator, monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    with pytest.raises(ConfigError, match="search_monitors_path"):
        hook_for(monkeypatch, connections.url, search_monitors_path=bad).get_monitor("mon_a")
    with pytest.raises(ConfigError, match="search_monitors_path"):
        ExaHook("exa_default", search_monitors_path=bad)
    assert connections.count() == 0


def test_websets_family_keeps_its_own_spelling_and_sends_no_limit(connections: Emulator) -> None:
    emu = connections
    emu.exa.add_monitor("wsmon", family="websets")
    run = emu.exa.add_run("wsmon", polls_to_finish=None)
    emu.exa.finish_run("wsmon", run["id"], "canceled")
    hook = ExaHook()
    assert hook.get_monitor("wsmon", "websets").status == "enabled"
    got = hook.get_run("wsmon", run["id"], "websets")
    assert got.status is ExaRunStatus.CANCELLED and got.raw["status"] == "canceled" and got.raw["canceledAt"]
    hook.list_runs("wsmon", "websets")
    listing = emu.requests("GET", "/websets/v0/monitors/wsmon/runs")[0]
    assert "limit" not in listing.query
    with pytest.raises(APIError) as err:  # a search monitor id is not a Websets monitor
        hook.get_monitor("wsmon", "search")
    assert err.value.status_code == 404 and err.value.tag == "NOT_FOUND"


def test_find_run_pages_newest_first_and_stops_at_the_lower_bound(connections: Emulator) -> None:
    emu = connections
    emu.exa.add_monitor("mon_a")
    ids = {
        i: emu.exa.add_run("mon_a", status="completed", created_at=T0 - timedelta(minutes=i))["id"] for i in range(250)
    }
    found = ExaHook().find_run("mon_a", "search", T0 - timedelta(minutes=150), T0 - timedelta(minutes=140))
    assert found is not None and found.id == ids[150]
    listings = emu.requests("GET", "/monitors/mon_a/runs")
    assert len(listings) == 2  # page 3 (runs 200-249) is never read
    assert "cursor" not in listings[0].query and listings[1].query["cursor"]
    assert ExaHook().find_run("mon_a", "search", T0 + timedelta(minutes=1)) is None
    assert len(emu.requests("GET", "/monitors/mon_a/runs")) == 3  # newest page already older: one call


def test_websets_pages_follow_the_cursor(connections: Emulator) -> None:
    emu = connections
    emu.exa.add_monitor("wsmon", family="websets")
    ids = {i: emu.exa.add_run("wsmon", status="completed", created_at=T0 - timedelta(hours=i))["id"] for i in range(60)}
    assert [r.id for r in ExaHook().iter_runs("wsmon", "websets")] == [ids[i] for i in range(60)]
    assert emu.count("GET", "/websets/v0/monitors/wsmon/runs") == 3  # 25 + 25 + 10
    found = ExaHook().find_run("wsmon", "websets", T0 - timedelta(hours=30), T0 - timedelta(hours=20))
    assert found is not None and found.id == ids[30]


def test_follow_replacement_walks_a_chain_of_cancelled_runs(connections: Emulator) -> None:
    emu = connections
    emu.exa.add_monitor("mon_a")
    first = emu.exa.add_run("mon_a", status="cancelled", created_at=T0)
    second = emu.exa.add_run("mon_a", status="cancelled", created_at=T0 + timedelta(hours=1))
    third = emu.exa.add_run("mon_a", status="running", created_at=T0 + timedelta(hours=2), polls_to_finish=None)
    emu.exa.add_run("mon_a", status="completed", created_at=T0 + timedelta(hours=3))
    hook = ExaHook()
    followed = hook.follow_replacement("mon_a", hook.get_run("mon_a", first["id"]))
    assert followed.id == third["id"]  # the run right after, not the newest
    assert second["id"] != followed.id
    lone = emu.exa.add_run("mon_a", status="cancelled", created_at=T0 + timedelta(hours=4))
    assert hook.follow_replacement("mon_a", hook.get_run("mon_a", lone["id"])).id == lone["id"]


def test_async_methods_match_the_sync_ones(connections: Emulator) -> None:
    emu = connections
    emu.exa.add_monitor("mon_a", status="paused")
    old = emu.exa.add_run("mon_a", status="cancelled", created_at=T0)
    new = emu.exa.add_run("mon_a", status="completed", created_at=T0 + timedelta(hours=1))

    async def scenario() -> tuple[Any, ...]:
        hook = ExaHook(search_monitors_path="/search-monitors")
        monitor = await hook.aget_monitor("mon_a")
        found = await hook.afind_run("mon_a", "search", T0 - timedelta(hours=1), T0 + timedelta(minutes=30))
        assert found is not None
        followed = await hook.afollow_replacement("mon_a", await hook.aget_run("mon_a", found.id))
        return monitor.is_paused, found.id, followed.id, followed.raw.get("object")

    assert asyncio.run(scenario()) == (True, old["id"], new["id"], "search_monitor_run")
    assert {r.path.split("/")[1] for r in emu.requests()} == {"search-monitors"}


def test_trigger_answers_without_a_run_id(connections: Emulator) -> None:
    emu = connections
    emu.exa.add_monitor("mon_a")
    assert ExaHook().trigger_monitor("mon_a") == {"triggered": True}
    assert len(emu.exa.runs("mon_a")) == 1
    with pytest.raises(APIError) as err:
        ExaHook().trigger_monitor("missing")
    assert err.value.status_code == 404 and err.value.is_permanent


def test_trigger_is_not_resent_after_a_lost_answer(connections: Emulator) -> None:
    emu = connections
    emu.exa.add_monitor("mon_a")
    emu.add_fault("POST", "/monitors/mon_a/trigger", action="reset", after_handling=True)
    with pytest.raises(UnclearRequestError, match="not sent again"):
        ExaHook().trigger_monitor("mon_a")
    assert emu.count("POST", "/monitors/mon_a/trigger") == 1
    assert len(emu.exa.runs("mon_a")) == 1  # the run exists: the request did reach "Exa"


def test_transient_errors_on_reads_are_retried(connections: Emulator) -> None:
    emu = connections
    emu.exa.add_monitor("mon_a")
    run = emu.exa.add_run("mon_a", status="completed")
    emu.add_fault("GET", f"/monitors/mon_a/runs/{run['id']}", status=503, times=2)
    emu.add_fault("GET", f"/monitors/mon_a/runs/{run['id']}", status=429, headers={"Retry-After": "0"})
    assert ExaHook().get_run("mon_a", run["id"]).status is ExaRunStatus.COMPLETED
    assert [r.status for r in emu.requests("GET", f"/monitors/mon_a/runs/{run['id']}")] == [503, 503, 429, 200]


def test_test_connection_reports_success_and_the_exact_failure(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = connections
    ok, message = ExaHook().test_connection()
    assert ok and "/monitors" in message
    assert emu.requests()[0].query == {"limit": "1"}
    ok, message = hook_for(monkeypatch, emu.url, key="exa_wrong_key_123456").test_connection()
    assert not ok
    assert "HTTP 401" in message and "INVALID_API_KEY" in message and "x-request-id: req_" in message
    assert "exa_wrong_key_123456" not in message


# ----- error mapping (respx) -----------------------------------------------------------------------


def _respx_hook(monkeypatch: pytest.MonkeyPatch, **extras: Any) -> ExaHook:
    return hook_for(monkeypatch, FAKE, max_attempts=3, backoff_base=0.01, backoff_max=0.01, **extras)


@respx.mock
def test_error_body_is_mapped_with_tag_and_request_id(monkeypatch: pytest.MonkeyPatch) -> None:
    body = {"requestId": "req_abc", "error": "Insufficient credits", "tag": "NO_MORE_CREDITS"}
    route = respx.get(f"{FAKE}/monitors/m/runs/r").mock(
        return_value=httpx.Response(402, json=body, headers={"x-request-id": "req_abc"})
    )
    with pytest.raises(APIError) as err:
        _respx_hook(monkeypatch).get_run("m", "r")
    exc = err.value
    assert (exc.status_code, exc.tag, exc.request_id, exc.message) == (402, "NO_MORE_CREDITS", "req_abc", body["error"])
    assert exc.is_permanent and route.call_count == 1
    assert route.calls[0].request.headers["x-api-key"] == EXA_KEY
    assert "authorization" not in route.calls[0].request.headers


@respx.mock
def test_5xx_on_reads_is_retried_then_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    route = respx.get(f"{FAKE}/monitors/m").mock(return_value=httpx.Response(500, text="<html>oops</html>"))
    with pytest.raises(APIError, match="HTTP 500") as err:
        _respx_hook(monkeypatch).get_monitor("m")
    assert route.call_count == 3 and not err.value.is_permanent


@respx.mock
@pytest.mark.parametrize("status", [500, 502, 504])
def test_5xx_on_trigger_is_unclear_and_never_resent(monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    route = respx.post(f"{FAKE}/monitors/m/trigger").mock(return_value=httpx.Response(status, json={"error": "x"}))
    with pytest.raises(UnclearRequestError):
        _respx_hook(monkeypatch).trigger_monitor("m")
    assert route.call_count == 1


@respx.mock
def test_429_and_refused_connections_on_trigger_are_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    route = respx.post(f"{FAKE}/monitors/m/trigger").mock(
        side_effect=[
            httpx.ConnectError("refused"),
            httpx.Response(429, json={"error": "slow down", "tag": "RATE_LIMIT_EXCEEDED"}),
            httpx.Response(200, json={"triggered": True}),
        ]
    )
    assert _respx_hook(monkeypatch).trigger_monitor("m") == {"triggered": True}
    assert route.call_count == 3


@respx.mock
def test_read_timeout_on_trigger_is_unclear(monkeypatch: pytest.MonkeyPatch) -> None:
    route = respx.post(f"{FAKE}/monitors/m/trigger").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(UnclearRequestError):
        _respx_hook(monkeypatch).trigger_monitor("m")
    assert route.call_count == 1


@respx.mock
def test_repeated_cursor_is_a_pagination_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    page = {"data": [run_json("r1", createdAt="2026-03-01T12:00:00Z")], "hasMore": True, "nextCursor": "same"}
    respx.get(f"{FAKE}/monitors/m/runs").mock(return_value=httpx.Response(200, json=page))
    with pytest.raises(PaginationLoopError, match="'same' twice"):
        list(_respx_hook(monkeypatch).iter_runs("m"))


@respx.mock
def test_ids_are_encoded_as_single_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    route = respx.get(url__regex=r".*").mock(return_value=httpx.Response(200, json=run_json("x")))
    _respx_hook(monkeypatch).get_run("../admin", "a/b?c")
    _respx_hook(monkeypatch).get_run("..", "r")
    assert route.calls[0].request.url.raw_path == b"/monitors/..%2Fadmin/runs/a%2Fb%3Fc"
    assert route.calls[1].request.url.raw_path == b"/monitors/%2E%2E/runs/r"
    with pytest.raises(ConfigError, match="monitor_id"):
        _respx_hook(monkeypatch).get_run("  ", "r")


@respx.mock
def test_non_json_success_body_is_a_response_error(monkeypatch: pytest.MonkeyPatch) -> None:
    respx.get(f"{FAKE}/monitors/m/runs/r").mock(return_value=httpx.Response(200, text="<html>maintenance</html>"))
    with pytest.raises(ResponseError, match="not JSON"):
        _respx_hook(monkeypatch).get_run("m", "r")


def test_default_base_url_and_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_EXA_NOHOST", json.dumps({"conn_type": "exa", "password": EXA_KEY}))
    assert ExaHook("exa_nohost").settings.base_url == "https://api.exa.ai"
    monkeypatch.setenv("AIRFLOW_CONN_EXA_NOKEY", json.dumps({"conn_type": "exa", "host": FAKE}))
    ok, message = ExaHook("exa_nokey").test_connection()
    assert not ok and "no API key" in message
