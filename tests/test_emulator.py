"""Real-HTTP tests of the Monid/Exa emulator (airflow_monid.testing). No sleeps: state is driven by polls."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from airflow_monid.testing import Emulator, RecordedRequest

MONID_KEY = "emu-test-monid-key-5b1f"
EXA_KEY = "emu-test-exa-key-9c2d"
TWEETS = ("apify", "/apidojo/tweet-scraper")


@pytest.fixture(scope="module")
def emu_server() -> Iterator[Emulator]:
    with Emulator(monid_api_key=MONID_KEY, exa_api_key=EXA_KEY) as emu:
        yield emu


@pytest.fixture
def emu(emu_server: Emulator) -> Iterator[Emulator]:
    emu_server.reset()
    if not emu_server.running:
        emu_server.start()
    yield emu_server
    emu_server.reset()


@pytest.fixture
def monid(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.url, headers={"Authorization": f"Bearer {MONID_KEY}"}, timeout=5) as client:
        yield client


@pytest.fixture
def exa(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.url, headers={"x-api-key": EXA_KEY}, timeout=5) as client:
        yield client


def run_body(provider: str, endpoint: str, **inp: Any) -> dict[str, Any]:
    return {"provider": provider, "endpoint": endpoint, "input": inp}


# ----- Monid: POST /v1/run + polling ---------------------------------------------------------------


def test_sync_run_answers_200_with_finished_run(monid: httpx.Client) -> None:
    resp = monid.post("/v1/run", json=run_body("pdl", "/person/enrich", email="jane@corp.example"))
    assert resp.status_code == 200
    assert resp.headers["x-request-id"].startswith("req_")
    run = resp.json()
    assert len(run["runId"]) == 26 and run["runId"].isupper()
    assert run["status"] == "COMPLETED"
    assert run["providerResponse"] == {"httpStatus": 200}
    assert run["output"]["work_email"] == "jane@corp.example"
    assert run["input"] == {"email": "jane@corp.example"}
    assert run["billing"]["reportedCost"]["value"] == 3000
    assert run["createdAt"].endswith("Z")


def test_sync_provider_miss_is_completed_with_provider_404(monid: httpx.Client) -> None:
    resp = monid.post("/v1/run", json=run_body("pdl", "/person/enrich", email="x@nomatch.example"))
    assert resp.status_code == 200
    run = resp.json()
    assert run["status"] == "COMPLETED" and run["output"] is None
    assert run["providerResponse"] == {
        "httpStatus": 404,
        "error": {"status": 404, "message": "No match found for the given query"},
    }
    assert run["billing"]["reportedCost"]["value"] == 0
    assert monid.get(f"/v1/runs/{run['runId']}").json()["cost"] == {"value": 0, "currency": "USD"}


def test_async_run_202_then_polls_to_completed(monid: httpx.Client) -> None:
    resp = monid.post("/v1/run", json=run_body(*TWEETS, searchTerms=["airflow"], maxItems=3))
    assert resp.status_code == 202
    accepted = resp.json()
    assert set(accepted) == {"runId", "provider", "endpoint", "status", "price", "createdAt"}
    assert accepted["status"] == "RUNNING"
    first = monid.get(f"/v1/runs/{accepted['runId']}")
    assert first.json()["status"] == "RUNNING" and first.json()["output"] is None
    assert "cache-control" not in first.headers
    second = monid.get(f"/v1/runs/{accepted['runId']}")
    run = second.json()
    assert run["status"] == "COMPLETED" and second.headers["cache-control"] == "max-age=300"
    assert len(run["output"]) == 3 and all("airflow" in t["text"] for t in run["output"])
    assert run["completedAt"] is not None and run["cost"]["value"] > 0


def test_spec_style_mirrors_provider_status_with_run_body(emu: Emulator, monid: httpx.Client) -> None:
    emu.monid.set_endpoint("pdl", "/person/enrich", response_style="spec")
    resp = monid.post("/v1/run", json=run_body("pdl", "/person/enrich", email="a@nomatch.example"))
    assert resp.status_code == 404
    assert resp.json()["runId"] and resp.json()["status"] == "COMPLETED"
    emu.monid.set_endpoint("pdl", "/company/enrich", response_style="spec", provider_status=402)
    resp = monid.post("/v1/run", json=run_body("pdl", "/company/enrich", website="x.example"))
    assert resp.status_code == 502 and resp.json()["providerResponse"]["httpStatus"] == 402


def test_timed_out_sync_run_is_408_with_run_body(emu: Emulator, monid: httpx.Client) -> None:
    emu.monid.set_endpoint("pdl", "/company/enrich", response_style="spec", final_status="TIMED_OUT")
    resp = monid.post("/v1/run", json=run_body("pdl", "/company/enrich", website="slow.example"))
    assert resp.status_code == 408
    assert resp.json()["status"] == "TIMED_OUT" and resp.json()["cost"]["value"] == 0


def test_status_steps_and_unknown_status(emu: Emulator, monid: httpx.Client) -> None:
    emu.monid.set_endpoint("acme", "/steps", final_status=["RUNNING", "WEIRD_STATUS", "COMPLETED"])
    run_id = monid.post("/v1/run", json=run_body("acme", "/steps")).json()["runId"]
    seen = [monid.get(f"/v1/runs/{run_id}").json()["status"] for _ in range(4)]
    assert seen == ["RUNNING", "WEIRD_STATUS", "COMPLETED", "COMPLETED"]
    emu.monid.set_endpoint("acme", "/odd", final_status="SOMETHING_NEW")
    run_id = monid.post("/v1/run", json=run_body("acme", "/odd")).json()["runId"]
    assert [monid.get(f"/v1/runs/{run_id}").json()["status"] for _ in range(2)] == ["SOMETHING_NEW"] * 2


def test_runs_finish_on_command(emu: Emulator, monid: httpx.Client) -> None:
    emu.monid.set_endpoint(*TWEETS, polls_to_finish=None)
    run_id = monid.post("/v1/run", json=run_body(*TWEETS, searchTerms=["x"])).json()["runId"]
    assert [monid.get(f"/v1/runs/{run_id}").json()["status"] for _ in range(3)] == ["RUNNING"] * 3
    emu.monid.complete_run(run_id, provider_status=500)
    run = monid.get(f"/v1/runs/{run_id}").json()
    assert run["status"] == "COMPLETED" and run["providerResponse"]["httpStatus"] == 500
    other = monid.post("/v1/run", json=run_body(*TWEETS, searchTerms=["y"])).json()["runId"]
    emu.monid.fail_run(other, reason="pipeline crashed")
    assert monid.get(f"/v1/runs/{other}").json()["reason"] == "pipeline crashed"
    assert emu.monid.get_run(other)["status"] == "FAILED"
    emu.monid.set_endpoint("acme", "/timed", delay=0.0)
    timed = monid.post("/v1/run", json=run_body("acme", "/timed")).json()["runId"]
    assert emu.monid.get_run(timed)["status"] == "COMPLETED"


def test_run_validation_and_unknown_endpoint(emu: Emulator, monid: httpx.Client) -> None:
    assert monid.post("/v1/run", content=b"{not json", headers={"content-type": "application/json"}).status_code == 400
    assert monid.post("/v1/run", json={"provider": "", "endpoint": "/x", "input": {}}).status_code == 400
    assert monid.post("/v1/run", json={"provider": "pdl", "endpoint": "/person/enrich"}).status_code == 400
    missing = monid.post("/v1/run", json=run_body("nobody", "/nothing"))
    assert missing.status_code == 404 and set(missing.json()) == {"code", "message"}
    emu.monid.set_endpoint("acme", "/composite", input_shape="composite")
    assert monid.post("/v1/run", json=run_body("acme", "/composite", q="x")).status_code == 400
    ok = monid.post("/v1/run", json=run_body("acme", "/composite", body={"q": "x"}, queryParams={}))
    assert ok.status_code == 202
    assert monid.get("/v1/runs/UNKNOWNRUN").json() == {"code": 404, "message": "Run not found"}


def test_wrong_keys_are_401_in_each_api_shape(emu: Emulator) -> None:
    with httpx.Client(base_url=emu.url) as client:
        bad = client.get("/v1/runs", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.json() == {"code": 401, "message": "Invalid API key"}
        assert bad.headers["x-request-id"].startswith("req_")
        assert client.get("/v1/wallet/balance").status_code == 401
        emu.exa.add_monitor("mon_a")
        exa_bad = client.get("/monitors/mon_a", headers={"x-api-key": "nope"})
        body = exa_bad.json()
        assert exa_bad.status_code == 401 and body["tag"] == "INVALID_API_KEY"
        assert body["requestId"] == exa_bad.headers["x-request-id"]
        bearer = client.get("/monitors/mon_a", headers={"Authorization": f"Bearer {EXA_KEY}"})
        assert bearer.status_code == 200


# ----- Monid: list, stop, wallet, discover ---------------------------------------------------------


def _all_pages(monid: httpx.Client, limit: int) -> tuple[list[str], list[dict[str, Any]]]:
    ids: list[str] = []
    pages: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        page = monid.get("/v1/runs", params=params).json()
        pages.append(page)
        ids += [item["runId"] for item in page["items"]]
        if not page.get("cursor"):
            return ids, pages
        params["cursor"] = page["cursor"]


def test_list_runs_newest_first_with_null_or_absent_last_cursor(emu: Emulator, monid: httpx.Client) -> None:
    created = [monid.post("/v1/run", json=run_body("pdl", "/company/enrich", n=i)).json()["runId"] for i in range(5)]
    ids, pages = _all_pages(monid, 2)
    assert ids == created[::-1] and len(pages) == 3
    assert pages[-1]["cursor"] is None and "cursor" in pages[-1]
    assert "input" not in pages[0]["items"][0] and "output" not in pages[0]["items"][0]
    emu.monid.last_page_cursor = "absent"
    _, pages = _all_pages(monid, 2)
    assert "cursor" not in pages[-1]
    emu.monid.last_page_cursor = ""
    _, pages = _all_pages(monid, 10)
    assert pages[-1]["cursor"] == ""
    assert monid.get("/v1/runs", params={"limit": 0}).status_code == 400
    assert monid.get("/v1/runs", params={"cursor": "garbage!"}).status_code == 400


def test_cursor_loop_mode_repeats_cursor(emu: Emulator, monid: httpx.Client) -> None:
    for i in range(3):
        monid.post("/v1/run", json=run_body("pdl", "/company/enrich", n=i))
    emu.monid.cursor_loop = True
    first = monid.get("/v1/runs", params={"limit": 1}).json()
    second = monid.get("/v1/runs", params={"limit": 1, "cursor": first["cursor"]}).json()
    assert second["cursor"] == first["cursor"]


def test_stop_run(emu: Emulator, monid: httpx.Client) -> None:
    emu.monid.set_endpoint(*TWEETS, polls_to_finish=None)
    run_id = monid.post("/v1/run", json=run_body(*TWEETS, searchTerms=["x"])).json()["runId"]
    assert monid.get(f"/v1/runs/{run_id}").json()["stoppable"] is True
    stop = monid.post(f"/v1/runs/{run_id}/stop")
    assert stop.status_code == 202 and stop.json()["status"] == "STOPPING"
    assert monid.get(f"/v1/runs/{run_id}").json()["status"] == "STOPPED"
    assert monid.post(f"/v1/runs/{run_id}/stop").status_code == 409
    assert monid.post("/v1/runs/NOPE/stop").status_code == 404


def test_wallet_discover_inspect(emu: Emulator, monid: httpx.Client) -> None:
    emu.monid.balance = 12.5
    assert monid.get("/v1/wallet/balance").json()["balance"] == {"value": 12.5, "currency": "USD"}
    found = monid.post("/v1/discover", json={"query": "company enrich", "limit": 1}).json()
    assert found["count"] == 1 and found["results"][0]["endpoint"] == "/company/enrich"
    details = monid.post("/v1/inspect", json={"provider": "pdl", "endpoint": "/person/enrich"})
    assert details.status_code == 200 and details.json()["providerName"] == "People Data Labs"
    assert details.json()["input"]["body"]["properties"]["email"]["type"] == "string"
    emu.monid.set_endpoint("pdl", "/person/enrich", input_schema={"type": "object"}, schema_style="flat")
    flat = monid.post("/v1/inspect", json={"provider": "pdl", "endpoint": "/person/enrich"}).json()
    assert flat["inputSchema"] == {"type": "object"} and "input" not in flat
    assert monid.post("/v1/inspect", json={"provider": "pdl", "endpoint": "/nope"}).status_code == 404


def test_odd_run_ids_are_percent_decoded(emu: Emulator, monid: httpx.Client, exa: httpx.Client) -> None:
    emu.monid.add_run(run_id="run/with space", status="COMPLETED")
    resp = monid.get("/v1/runs/run%2Fwith%20space")
    assert resp.status_code == 200 and resp.json()["runId"] == "run/with space"
    assert emu.requests("GET")[-1].path == "/v1/runs/run%2Fwith%20space"
    assert emu.count("GET", path="/v1/runs/run/with space") == 1
    emu.exa.add_monitor("mon/odd")
    emu.exa.add_run("mon/odd", run_id="r/1", status="completed")
    assert exa.get("/monitors/mon%2Fodd/runs/r%2F1").json()["id"] == "r/1"


# ----- faults --------------------------------------------------------------------------------------


def test_fault_respond_with_retry_after_then_normal(emu: Emulator, monid: httpx.Client) -> None:
    emu.add_fault("GET", r"/v1/wallet/balance", status=429, headers={"Retry-After": "1"}, times=2)
    for _ in range(2):
        resp = monid.get("/v1/wallet/balance")
        assert resp.status_code == 429 and resp.headers["retry-after"] == "1"
        assert resp.json() == {"code": 429, "message": "Emulated fault (429)"}
    assert monid.get("/v1/wallet/balance").status_code == 200
    assert [r.status for r in emu.requests("GET", "/v1/wallet/balance")] == [429, 429, 200]


def test_fault_reset_truncate_html(emu: Emulator, monid: httpx.Client) -> None:
    emu.add_fault("GET", r"/v1/runs", action="reset")
    with pytest.raises(httpx.TransportError):
        monid.get("/v1/runs")
    emu.add_fault("GET", r"/v1/runs", action="truncate", after_handling=True)
    with pytest.raises(httpx.RemoteProtocolError):
        monid.get("/v1/runs")
    emu.add_fault("GET", r"/v1/runs", action="html")
    page = monid.get("/v1/runs")
    assert page.status_code == 502 and page.headers["content-type"] == "text/html"
    assert page.text.startswith("<html>")
    assert monid.get("/v1/runs").status_code == 200
    assert [r.fault for r in emu.requests("GET", "/v1/runs")] == ["reset", "truncate", "html", None]


def test_fault_hang_times_out_client_and_is_released_by_reset(emu: Emulator) -> None:
    emu.add_fault("GET", r"/v1/runs/.*", action="hang", hang_seconds=0.2)
    with httpx.Client(base_url=emu.url, headers={"Authorization": f"Bearer {MONID_KEY}"}) as client:
        with pytest.raises(httpx.RemoteProtocolError):  # hang elapses, then the server closes
            client.get("/v1/runs/ANY", timeout=5)
        emu.add_fault("GET", r"/v1/runs/.*", action="hang", hang_seconds=60)
        with pytest.raises(httpx.ReadTimeout):
            client.get("/v1/runs/ANY", timeout=0.3)
        outcome: list[BaseException] = []

        def hang() -> None:
            emu.add_fault("GET", r"/v1/runs/.*", action="hang", hang_seconds=60)
            try:
                client.get("/v1/runs/THIRD", timeout=30)
            except httpx.TransportError as exc:
                outcome.append(exc)

        worker = threading.Thread(target=hang)
        worker.start()
        emu.wait_for_request(lambda r: r.fault == "hang" and r.path == "/v1/runs/THIRD", 5)
        emu.reset()  # must release the hung handler promptly, not after 60 s
        worker.join(5)
        assert not worker.is_alive() and isinstance(outcome[0], httpx.RemoteProtocolError)


def test_after_handling_reset_still_creates_the_run(emu: Emulator, monid: httpx.Client) -> None:
    emu.add_fault("POST", r"/v1/run", action="reset", after_handling=True)
    with pytest.raises(httpx.TransportError):
        monid.post("/v1/run", json=run_body(*TWEETS, searchTerms=["lost"]))
    runs = emu.monid.runs()
    assert len(runs) == 1 and runs[0]["input"] == {"searchTerms": ["lost"]}
    listed = monid.get("/v1/runs").json()["items"]
    assert [item["runId"] for item in listed] == [runs[0]["runId"]]


def test_exa_fault_default_body_uses_exa_shape(emu: Emulator, exa: httpx.Client) -> None:
    emu.exa.add_monitor("mon_a")
    emu.add_fault("*", r"/monitors/.*", status=503)
    body = exa.get("/monitors/mon_a").json()
    assert set(body) == {"requestId", "error", "tag"}


# ----- request log ---------------------------------------------------------------------------------


def test_request_log_strips_keys_and_records_details(emu: Emulator, monid: httpx.Client, exa: httpx.Client) -> None:
    monid.post("/v1/run", json=run_body("pdl", "/company/enrich", website="a.example"))
    monid.get("/v1/runs", params={"limit": "3"})
    emu.exa.add_monitor("mon_a")
    exa.get("/monitors/mon_a")
    post, listing, exa_get = emu.requests()
    assert post.body == run_body("pdl", "/company/enrich", website="a.example") and post.status == 200
    assert listing.query == {"limit": "3"} and listing.path == "/v1/runs"
    for record in (post, listing, exa_get):
        assert "authorization" not in record.headers and "x-api-key" not in record.headers
        assert MONID_KEY not in repr(record) and EXA_KEY not in repr(record)
    assert emu.count("GET") == 2 and emu.count("GET", path_prefix="/monitors") == 1
    over_http = httpx.get(f"{emu.url}/_emulator/requests").json()
    assert len(over_http) == 3 and MONID_KEY not in str(over_http)


def test_wait_for_request_and_on_request(emu: Emulator, monid: httpx.Client) -> None:
    seen: list[RecordedRequest] = []
    emu.on_request(seen.append)
    worker = threading.Thread(target=lambda: monid.get("/v1/wallet/balance"))
    worker.start()
    record = emu.wait_for_request(lambda r: r.path == "/v1/wallet/balance", timeout=5)
    worker.join(5)
    assert record.status == 200 and seen == [record]
    with pytest.raises(TimeoutError):
        emu.wait_for_request(lambda r: r.path == "/never", timeout=0.05)


def test_control_surface_over_http(emu: Emulator, monid: httpx.Client) -> None:
    with httpx.Client(base_url=f"{emu.url}/_emulator") as ctl:
        assert ctl.post("/monid/endpoints", json={"provider": "acme", "endpoint": "/x", "mode": "sync"}).is_success
        assert ctl.post("/faults", json={"method": "GET", "path": "/v1/wallet/balance", "status": 503}).is_success
        assert monid.post("/v1/run", json=run_body("acme", "/x")).status_code == 200
        assert monid.get("/v1/wallet/balance").status_code == 503
        emu.monid.set_endpoint(*TWEETS, polls_to_finish=None)
        run_id = monid.post("/v1/run", json=run_body(*TWEETS)).json()["runId"]
        assert ctl.post(f"/runs/{run_id}/complete", json={"provider_status": 200}).is_success
        assert monid.get(f"/v1/runs/{run_id}").json()["status"] == "COMPLETED"
        assert ctl.post("/exa/monitors", json={"monitor_id": "m1"}).is_success
        assert ctl.post("/exa/runs", json={"monitor_id": "m1", "run_id": "r1"}).is_success
        assert ctl.post("/monid/endpoints", json={"provider": "a", "endpoint": "/b", "bogus": 1}).status_code == 400
        assert emu.exa.get_run("m1", "r1")["status"] == "pending"
        assert len(ctl.get("/requests").json()) == 4  # control calls are not logged
        assert ctl.post("/reset").is_success
        assert emu.requests() == [] and emu.monid.runs() == []


def test_stop_and_restart_on_same_port(emu: Emulator, monid: httpx.Client) -> None:
    url = emu.url
    assert monid.get("/v1/wallet/balance").status_code == 200
    emu.stop()
    with pytest.raises(httpx.TransportError):
        monid.get("/v1/wallet/balance")
    emu.start()
    assert emu.url == url and monid.get("/v1/wallet/balance").status_code == 200


# ----- Exa -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/monitors", "/search-monitors"])
def test_search_monitor_runs_under_both_prefixes(emu: Emulator, exa: httpx.Client, prefix: str) -> None:
    emu.exa.add_monitor("mon_a", name="Funding")
    emu.exa.add_run("mon_a", run_id="run_old", created_at="2026-01-01T00:00:00Z", status="completed")
    emu.exa.add_run("mon_a", run_id="run_new", polls_to_finish=2)
    monitor = exa.get(f"{prefix}/mon_a").json()
    assert monitor["status"] == "active" and monitor["name"] == "Funding"
    listed = exa.get(f"{prefix}/mon_a/runs").json()
    assert [r["id"] for r in listed["data"]] == ["run_new", "run_old"]
    assert listed["hasMore"] is False and listed["nextCursor"] is None
    statuses = []
    for _ in range(2):
        run = exa.get(f"{prefix}/mon_a/runs/run_new").json()
        statuses.append(run["status"])
    assert statuses == ["running", "completed"]
    assert run["output"]["results"] and run["output"]["grounding"] and run["durationMs"] is not None
    assert ("object" in run) is (prefix == "/search-monitors")
    page = exa.get(f"{prefix}/mon_a/runs", params={"limit": 1}).json()
    assert page["hasMore"] is True
    rest = exa.get(f"{prefix}/mon_a/runs", params={"limit": 1, "cursor": page["nextCursor"]}).json()
    assert [r["id"] for r in rest["data"]] == ["run_old"] and rest["nextCursor"] is None
    assert [m["id"] for m in exa.get(prefix).json()["data"]] == ["mon_a"]


def test_search_run_failure_fields(emu: Emulator, exa: httpx.Client) -> None:
    emu.exa.add_monitor("mon_a")
    emu.exa.add_run("mon_a", run_id="r1", final_status="failed", fail_reason="rate_limited")
    run = exa.get("/monitors/mon_a/runs/r1").json()
    assert run["status"] == "failed" and run["failReason"] == "rate_limited" and run["failedAt"]
    emu.exa.add_run("mon_a", run_id="r2", polls_to_finish=None)
    emu.exa.finish_run("mon_a", "r2", status="cancelled")
    assert exa.get("/monitors/mon_a/runs/r2").json()["cancelledAt"] is not None


def test_trigger_creates_a_pending_run(emu: Emulator, exa: httpx.Client) -> None:
    emu.exa.add_monitor("mon_a", status="paused")
    resp = exa.post("/monitors/mon_a/trigger")
    assert resp.status_code == 200 and resp.json() == {"triggered": True}
    runs = exa.get("/monitors/mon_a/runs", params={"limit": 5}).json()["data"]
    assert len(runs) == 1 and runs[0]["status"] == "pending"
    assert exa.get(f"/monitors/mon_a/runs/{runs[0]['id']}").json()["status"] == "completed"
    emu.exa.trigger_response = {"triggered": False}
    assert exa.post("/monitors/mon_a/trigger").json() == {"triggered": False}
    assert len(emu.exa.runs("mon_a")) == 1


def test_websets_monitor_runs(emu: Emulator, exa: httpx.Client) -> None:
    emu.exa.add_monitor("wsmon", family="websets")
    emu.exa.add_run("wsmon", run_id="wr1", polls_to_finish=2)
    emu.exa.add_run("wsmon", run_id="wr2", polls_to_finish=1, final_status="failed", fail_reason="boom")
    monitor = exa.get("/websets/v0/monitors/wsmon").json()
    assert monitor["status"] == "enabled" and monitor["object"] == "monitor"
    listed = exa.get("/websets/v0/monitors/wsmon/runs").json()
    assert listed["data"][0]["status"] == "created" and listed["data"][0]["object"] == "monitor_run"
    assert [exa.get("/websets/v0/monitors/wsmon/runs/wr1").json()["status"] for _ in range(2)] == [
        "running",
        "completed",
    ]
    failed = exa.get("/websets/v0/monitors/wsmon/runs/wr2").json()
    assert failed["failedReason"] == "boom" and "failReason" not in failed and "output" not in failed
    emu.exa.add_run("wsmon", run_id="wr3", polls_to_finish=None)
    emu.exa.finish_run("wsmon", "wr3", status="cancelled")
    assert exa.get("/websets/v0/monitors/wsmon/runs/wr3").json()["status"] == "canceled"
    assert exa.post("/websets/v0/monitors/wsmon/trigger").status_code == 404


def test_unknown_monitor_and_run_are_404(emu: Emulator, exa: httpx.Client) -> None:
    resp = exa.get("/monitors/nope/runs")
    assert resp.status_code == 404 and resp.json()["tag"] == "NOT_FOUND"
    emu.exa.add_monitor("wsmon", family="websets")
    assert exa.get("/monitors/wsmon").status_code == 404  # other family
    emu.exa.add_monitor("mon_a")
    assert exa.get("/monitors/mon_a/runs/nope").json()["tag"] == "NOT_FOUND"


# ----- process entry point -------------------------------------------------------------------------


def test_module_entry_point_serves_seeded_monitors() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_monid.testing", "--seed-exa", "--exa-key", "cli-key"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Emulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1].strip()
        runs = httpx.get(f"{url}/monitors/mon_funding/runs", headers={"x-api-key": "cli-key"}).json()
        assert runs["data"][0]["status"] == "completed"
        ws = httpx.get(f"{url}/websets/v0/monitors/wsmon_demo/runs", headers={"x-api-key": "cli-key"}).json()
        assert ws["data"][0]["status"] == "completed"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
