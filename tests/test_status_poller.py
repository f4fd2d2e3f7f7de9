"""The shared status poller (the default): MonidRunTriggers on one loop read statuses from GET /v1/runs.

Each test runs real triggers against the emulator over HTTP and checks every run's event and the
requests the API saw. Figures (requests per run, memory, latency at 10,000 runs) live in
benchmarks/triggerer_scale.py.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import pytest

from airflow_monid._http.policy import ApiSettings
from airflow_monid._monid.status_poller import PollingOptions, StatusPoller
from airflow_monid.hooks.monid import MONID_PROFILE
from airflow_monid.testing.emulator import Emulator
from airflow_monid.triggers.monid import MonidRunSensorTrigger, MonidRunTrigger
from tests._support import MONID_KEY, monid_conn

TWEETS = ("apify", "/apidojo/tweet-scraper")


def trigger_for(
    emu: Emulator, run_id: str, conn_id: str = "monid_default", *, deadline: float = 30.0, **kw: Any
) -> MonidRunTrigger:
    kw.setdefault("poll_interval", 0.05)
    if "created_at" not in kw:
        kw["created_at"] = emu.monid.get_run(run_id)["createdAt"]
    return MonidRunTrigger(run_id=run_id, monid_conn_id=conn_id, end_time=time.time() + deadline, **kw)


async def only_event(trigger: MonidRunTrigger) -> dict[str, Any]:
    events = [event async for event in trigger.run()]
    assert len(events) == 1, events
    return dict(events[0].payload)


def list_reads(emu: Emulator) -> int:
    return emu.count("GET", path="/v1/runs")


def single_reads(emu: Emulator) -> int:
    return emu.count("GET", path_prefix="/v1/runs/")


def conn(monkeypatch: pytest.MonkeyPatch, name: str, url: str, key: str = MONID_KEY, **extras: Any) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{name.upper()}", monid_conn(url, key, **extras))
    return name


async def test_many_runs_are_read_from_list_pages_not_one_by_one(connections: Emulator) -> None:
    emu = connections
    ids = [emu.monid.add_run(status="RUNNING", polls_to_finish=3)["runId"] for _ in range(250)]
    events = await asyncio.gather(*(only_event(trigger_for(emu, r)) for r in ids))
    assert {(e["run_id"], e["status"], e["run_status"]) for e in events} == {(r, "terminal", "COMPLETED") for r in ids}
    assert single_reads(emu) == 0  # every status came from the list
    # Each run finishes on its third observation; a cycle reads at most three pages (100 runs each).
    assert 3 <= list_reads(emu) <= 3 * 3 * 2
    assert {r.method for r in emu.requests()} == {"GET"}
    assert StatusPoller.active() == []  # stopped with the last trigger


async def test_runs_finishing_in_any_order_get_their_own_status(connections: Emulator) -> None:
    emu = connections
    ids = [emu.monid.add_run(status="RUNNING")["runId"] for _ in range(40)]
    rng = random.Random(19)  # seeded: a failure replays with the same statuses and order
    finals = {run_id: rng.choice(["COMPLETED", "FAILED", "STOPPED", "BLOCKED", "TIMED_OUT"]) for run_id in ids}
    tasks = [asyncio.ensure_future(only_event(trigger_for(emu, r))) for r in ids]
    await asyncio.to_thread(emu.wait_for_request, lambda r: r.path == "/v1/runs", 10)
    order = list(ids)
    rng.shuffle(order)
    for run_id in order:
        emu.monid.set_status(run_id, finals[run_id])
        await asyncio.sleep(0)  # let the loop run between changes: some cycles see part of them
    events = await asyncio.gather(*tasks)
    assert {e["run_id"]: e["run_status"] for e in events} == finals
    assert all(e["status"] == "terminal" for e in events)
    assert single_reads(emu) == 0


async def test_unknown_status_in_the_list_keeps_waiting(connections: Emulator) -> None:
    emu = connections
    run_id = emu.monid.add_run(status="RUNNING")["runId"]
    task = asyncio.ensure_future(only_event(trigger_for(emu, run_id)))
    emu.monid.set_status(run_id, "MYSTERY_STATE")
    since, later = time.time(), []

    def third_read_since(record: Any) -> bool:
        if record.path == "/v1/runs" and record.time > since:
            later.append(record)
        return len(later) >= 3

    await asyncio.to_thread(emu.wait_for_request, third_read_since, 10)
    assert not task.done()  # several cycles saw the unknown status: still waiting
    emu.monid.set_status(run_id, "COMPLETED")
    event = await task
    assert (event["status"], event["run_status"]) == ("terminal", "COMPLETED")


async def test_runs_missing_from_the_list_or_older_than_its_window_are_read_on_their_own(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = connections
    old = emu.monid.add_run(status="RUNNING", polls_to_finish=2, created_at=time.time() - 3600)["runId"]
    for _ in range(150):  # newer runs of other callers push it past a one-page budget
        emu.monid.add_run(status="COMPLETED")
    hidden = emu.monid.add_run(status="RUNNING", polls_to_finish=2)["runId"]
    emu.monid.unlisted.add(hidden)
    listed = emu.monid.add_run(status="RUNNING", polls_to_finish=2)["runId"]
    conn_id = conn(monkeypatch, "monid_one_page", emu.url, status_page_budget=1)
    events = await asyncio.gather(*(only_event(trigger_for(emu, r, conn_id)) for r in (old, hidden, listed)))
    assert [(e["run_id"], e["run_status"]) for e in events] == [(r, "COMPLETED") for r in (old, hidden, listed)]
    assert emu.count("GET", f"/v1/runs/{old}") >= 1 and emu.count("GET", f"/v1/runs/{hidden}") >= 1
    assert emu.count("GET", f"/v1/runs/{listed}") == 0
    assert all(int(r.query.get("limit", 0)) == 100 for r in emu.requests("GET", "/v1/runs"))


async def test_deadline_gives_a_timeout_with_the_last_status(connections: Emulator) -> None:
    emu = connections
    run_id = emu.monid.add_run(status="RUNNING")["runId"]
    event = await only_event(trigger_for(emu, run_id, deadline=0.3))
    assert (event["status"], event["run_status"]) == ("timeout", "RUNNING")
    assert "was not terminal at the deadline" in event["message"]
    past = await only_event(trigger_for(emu, run_id, deadline=-5))
    assert past["status"] == "timeout"


async def test_a_run_that_vanished_is_an_error_event(connections: Emulator) -> None:
    emu = connections
    event = await only_event(trigger_for(emu, "01NOSUCHRUN", created_at=time.time()))
    assert event["status"] == "error" and "HTTP 404" in event["message"]
    assert emu.count("GET", "/v1/runs/01NOSUCHRUN") == 1


async def test_trigger_rows_without_created_at_learn_it_with_one_get(connections: Emulator) -> None:
    emu = connections
    ids = [emu.monid.add_run(status="RUNNING", polls_to_finish=3)["runId"] for _ in range(5)]
    events = await asyncio.gather(*(only_event(trigger_for(emu, r, created_at=None)) for r in ids))
    assert all(e["run_status"] == "COMPLETED" for e in events)
    for run_id in ids:
        assert emu.count("GET", f"/v1/runs/{run_id}") == 1  # the rest came from the list
    assert list_reads(emu) >= 2


async def test_rate_limit_on_the_list_backs_off_once_for_every_run(connections: Emulator) -> None:
    emu = connections
    ids = [emu.monid.add_run(status="RUNNING", polls_to_finish=2)["runId"] for _ in range(30)]
    emu.add_fault("GET", "/v1/runs", status=429, headers={"Retry-After": "0.2"}, times=1)
    events = await asyncio.gather(*(only_event(trigger_for(emu, r)) for r in ids))
    assert all((e["status"], e["run_status"]) == ("terminal", "COMPLETED") for e in events)
    reads = emu.requests("GET", "/v1/runs")
    assert [r.status for r in reads][:3] == [429, 200, 200]  # one refused read, then the cycles
    assert all(r.status == 200 for r in reads[1:])
    assert reads[1].time - reads[0].time >= 0.2  # Retry-After honoured once, for all 30
    assert single_reads(emu) == 0


async def test_list_outage_keeps_waiting_then_reads_runs_one_by_one(connections: Emulator) -> None:
    emu = connections
    run_id = emu.monid.add_run(status="RUNNING", polls_to_finish=1)["runId"]
    emu.add_fault("GET", "/v1/runs", status=503, times=None)  # the list endpoint is down for good
    event = await only_event(trigger_for(emu, run_id))
    assert (event["status"], event["run_status"]) == ("terminal", "COMPLETED")
    assert [r.status for r in emu.requests("GET", "/v1/runs")] == [503, 503, 503]
    assert emu.count("GET", f"/v1/runs/{run_id}") == 1


async def test_a_list_the_key_may_not_read_switches_to_per_run_polling(connections: Emulator) -> None:
    emu = connections
    run_id = emu.monid.add_run(status="RUNNING", polls_to_finish=2)["runId"]
    emu.add_fault("GET", "/v1/runs", status=403, times=None)
    event = await only_event(trigger_for(emu, run_id))
    assert event["run_status"] == "COMPLETED"
    assert emu.count("GET", "/v1/runs") == 1  # refused once: never asked again
    assert emu.count("GET", f"/v1/runs/{run_id}") == 2


async def test_cancelled_triggers_stop_the_poller(connections: Emulator) -> None:
    emu = connections
    ids = [emu.monid.add_run(status="RUNNING")["runId"] for _ in range(3)]
    triggers = [trigger_for(emu, r) for r in ids]
    tasks = [asyncio.ensure_future(only_event(t)) for t in triggers]
    await asyncio.to_thread(emu.wait_for_request, lambda r: r.path == "/v1/runs", 10)
    (poller,) = StatusPoller.active()
    assert poller.size == 3
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for trigger in triggers:
        await trigger.cleanup()  # what the triggerer calls after a cancel: safe after run()'s own release
    assert StatusPoller.active() == []
    await asyncio.sleep(0)  # the cancelled poller task finishes on the next turn of the loop
    assert poller._task is not None and poller._task.done()


async def test_two_connections_share_nothing(connections: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    other = Emulator(monid_api_key="mk_other_key").start()
    try:
        run_id = connections.monid.add_run(status="RUNNING", polls_to_finish=2)["runId"]
        other.monid.add_run(run_id=run_id, status="RUNNING")  # the same id, never finishing there
        there = conn(monkeypatch, "monid_other", other.url, key="mk_other_key")
        here = asyncio.ensure_future(only_event(trigger_for(connections, run_id)))
        far = asyncio.ensure_future(only_event(trigger_for(other, run_id, there, deadline=1.0)))
        await asyncio.to_thread(other.wait_for_request, lambda r: r.path == "/v1/runs", 10)
        assert len(StatusPoller.active()) == 2
        assert (await here)["run_status"] == "COMPLETED"
        far_event = await far
        assert (far_event["status"], far_event["run_status"]) == ("timeout", "RUNNING")
    finally:
        other.stop()


async def test_pollers_are_per_key_and_per_url() -> None:
    def settings(url: str, key: str) -> ApiSettings:
        return ApiSettings(profile=MONID_PROFILE, base_url=url, api_key=key)

    options = PollingOptions()
    a = StatusPoller.shared(settings("http://a", "k1"), options)
    assert StatusPoller.shared(settings("http://a", "k1"), options) is a
    assert StatusPoller.shared(settings("http://a", "k2"), options) is not a
    assert StatusPoller.shared(settings("http://b", "k1"), options) is not a
    assert StatusPoller.shared(settings("http://a", "k1"), PollingOptions(page_budget=3)) is not a
    assert all(
        "k1" not in repr(key) and "k2" not in repr(key) for key in StatusPoller._registry[asyncio.get_running_loop()]
    )


async def test_sensor_trigger_uses_the_same_poller(connections: Emulator) -> None:
    emu = connections
    ids = [emu.monid.add_run(status="RUNNING", polls_to_finish=2)["runId"] for _ in range(4)]
    sensor = MonidRunSensorTrigger(
        run_id=ids[0],
        monid_conn_id="monid_default",
        poll_interval=0.05,
        end_time=time.time() + 30,
        created_at=emu.monid.get_run(ids[0])["createdAt"],
    )
    events = await asyncio.gather(only_event(sensor), *(only_event(trigger_for(emu, r)) for r in ids[1:]))
    assert all(e["run_status"] == "COMPLETED" for e in events)
    assert single_reads(emu) == 0 and 2 <= list_reads(emu) <= 4


async def test_quiet_at_scale_no_line_per_poll(connections: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    emu = connections
    ids = [emu.monid.add_run(status="RUNNING", polls_to_finish=6)["runId"] for _ in range(50)]
    with caplog.at_level(logging.INFO, logger="airflow_monid"):
        await asyncio.gather(*(only_event(trigger_for(emu, r)) for r in ids))
    lines = [r for r in caplog.records if r.name.startswith("airflow_monid")]
    # Each run logs its two state changes (RUNNING, COMPLETED); the poller one line per cycle that
    # finished something: never a line per poll (6 cycles x 50 runs).
    per_run = [r for r in lines if r.name == "airflow_monid.triggers.monid"]
    assert len(per_run) == 2 * len(ids)
    assert len([r for r in lines if r.name.endswith("_status_poller")]) <= 2


def test_options_from_connection_extras() -> None:
    assert PollingOptions.from_extras({}) == PollingOptions(batch=True, page_budget=200)
    assert PollingOptions.from_extras({"batch_status_polling": "false", "status_page_budget": "7"}) == PollingOptions(
        batch=False, page_budget=7
    )
    assert PollingOptions.from_extras({"extra__monid__batch_status_polling": False}).batch is False
    with pytest.raises(Exception, match="status_page_budget"):
        PollingOptions.from_extras({"status_page_budget": 0}, "c1")


async def test_a_failing_cycle_pauses_and_the_waits_go_on(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = connections
    run_id = emu.monid.add_run(status="RUNNING", polls_to_finish=1)["runId"]
    real = StatusPoller._page
    calls = []

    async def broken_once(self: StatusPoller, targets: Any, pending: Any) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return await real(self, targets, pending)

    monkeypatch.setattr(StatusPoller, "_page", broken_once)
    event = await only_event(trigger_for(emu, run_id))
    assert (event["status"], event["run_status"]) == ("terminal", "COMPLETED")
    assert len(calls) == 2


async def test_one_connection_lookup_serves_every_trigger_of_the_loop(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a triggerer each lookup is a round trip through its supervisor: 10,000 triggers, one lookup."""
    from airflow_monid._http import base_hook as _api_hook

    emu = connections
    real = _api_hook.get_async_connection
    lookups: list[str] = []

    async def counted(conn_id: str, hook: Any = None) -> Any:
        lookups.append(conn_id)
        return await real(conn_id, hook=hook)

    monkeypatch.setattr(_api_hook, "get_async_connection", counted)
    ids = [emu.monid.add_run(status="RUNNING", polls_to_finish=1)["runId"] for _ in range(20)]
    events = await asyncio.gather(*(only_event(trigger_for(emu, r)) for r in ids))
    assert all(e["run_status"] == "COMPLETED" for e in events)
    assert lookups == ["monid_default"]


async def test_a_failed_connection_lookup_is_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_monid.hooks.monid import MonidHook

    monkeypatch.delenv("AIRFLOW_CONN_MONID_LATER", raising=False)
    with pytest.raises(Exception, match="monid_later"):
        await MonidHook("monid_later").asettings()
    monkeypatch.setenv("AIRFLOW_CONN_MONID_LATER", monid_conn("http://127.0.0.1:9"))
    assert (await MonidHook("monid_later").asettings()).base_url == "http://127.0.0.1:9"
