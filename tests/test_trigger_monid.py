"""MonidRunTrigger polling each run on its own (``batch_status_polling: false``) against the emulator.

Its async generator is run directly on pytest-asyncio's loop. The shared poller (the default) has
its own tests in test_status_poller.py.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import socket
import time
import uuid
from typing import Any

import pytest
from airflow.triggers.base import TriggerEvent

from airflow_monid._http import transport as _http
from airflow_monid.hooks.monid import MonidHook
from airflow_monid.models.events import parse_event
from airflow_monid.testing.emulator import Emulator
from airflow_monid.triggers.monid import MonidRunSensorTrigger, MonidRunTrigger
from tests._support import MONID_KEY, monid_conn

TWEETS = ("apify", "/apidojo/tweet-scraper")
KWARGS = {"run_id", "monid_conn_id", "poll_interval", "end_time", "created_at"}
PER_RUN = {"batch_status_polling": False}


@pytest.fixture(autouse=True)
def per_run_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """``monid_default`` (set by the ``connections`` fixture) with the shared poller switched off."""
    real = monid_conn

    def per_run(url: str, key: str = MONID_KEY, **extra: Any) -> str:
        return real(url, key, **{**PER_RUN, **extra})

    monkeypatch.setattr("tests._support.monid_conn", per_run)


def conn_for(monkeypatch: pytest.MonkeyPatch, url: str, key: str | None = MONID_KEY, **extras: Any) -> str:
    """A connection with a tiny retry budget: two attempts per poll, millisecond backoff."""
    conn_id = f"monid_trig_{uuid.uuid4().hex[:10]}"
    if key is None:
        value = json.dumps({"conn_type": "monid", "host": url})
    else:
        fast = {"max_attempts": 2, "backoff_base": 0.001, "backoff_max": 0.001, **PER_RUN, **extras}
        value = monid_conn(url, key, **fast)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)
    return conn_id


def trigger_for(run_id: str, conn_id: str = "monid_default", *, deadline: float = 30.0, **kw: Any) -> MonidRunTrigger:
    kw.setdefault("poll_interval", 0.01)
    return MonidRunTrigger(run_id=run_id, monid_conn_id=conn_id, end_time=time.time() + deadline, **kw)


async def events_of(trigger: MonidRunTrigger) -> list[TriggerEvent]:
    return [event async for event in trigger.run()]


async def only_event(trigger: MonidRunTrigger) -> dict[str, Any]:
    events = await events_of(trigger)
    assert len(events) == 1, events  # exactly one event, then the generator ends
    payload = events[0].payload
    assert parse_event(payload).run_id == trigger.run_id  # the task can resume on it
    return payload


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def methods(emu: Emulator) -> set[str]:
    return {r.method for r in emu.requests()}


# ----- serialisation -------------------------------------------------------------------------------


async def test_kwargs_are_plain_values_without_the_key(connections: Emulator) -> None:
    run_id = connections.monid.add_run(status="COMPLETED")["runId"]
    trigger = MonidRunTrigger(run_id, "monid_default", poll_interval=5, end_time=1_900_000_000)
    await only_event(trigger)  # loads the connection (and the key) into the trigger's hook
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_monid.triggers.monid.MonidRunTrigger"
    module, _, name = classpath.rpartition(".")
    assert getattr(importlib.import_module(module), name) is MonidRunTrigger
    assert set(kwargs) == KWARGS
    assert kwargs == {
        "run_id": run_id,
        "monid_conn_id": "monid_default",
        "poll_interval": 5.0,
        "end_time": 1_900_000_000.0,
        "created_at": None,
    }
    assert isinstance(kwargs["end_time"], float) and isinstance(kwargs["poll_interval"], float)
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert MonidRunTrigger(**kwargs).serialize() == (classpath, kwargs)
    for text in (repr(trigger), str(trigger), json.dumps(kwargs), repr(trigger._hook())):
        assert MONID_KEY not in text
    assert run_id in repr(trigger)


def test_sensor_trigger_serialises_to_its_own_class() -> None:
    classpath, kwargs = MonidRunSensorTrigger("R1", "c", poll_interval=1, end_time=2).serialize()
    assert classpath == "airflow_monid.triggers.monid.MonidRunSensorTrigger"
    assert set(kwargs) == KWARGS


# ----- events --------------------------------------------------------------------------------------


async def test_terminal_event_after_polling(connections: Emulator) -> None:
    emu = connections
    run_id = emu.monid.add_run(status="RUNNING", polls_to_finish=3)["runId"]
    event = await only_event(trigger_for(run_id))
    assert event == {"status": "terminal", "run_id": run_id, "run_status": "COMPLETED", "message": ""}
    assert emu.count("GET", f"/v1/runs/{run_id}") == 3
    assert methods(emu) == {"GET"}


@pytest.mark.parametrize("status", ["FAILED", "STOPPED", "BLOCKED", "TIMED_OUT", "TIME_OUT", "COMPLETED"])
async def test_every_terminal_status_ends_the_wait(connections: Emulator, status: str) -> None:
    run_id = connections.monid.add_run(status=status)["runId"]
    event = await only_event(trigger_for(run_id))
    assert (event["status"], event["run_status"]) == ("terminal", status)
    assert connections.count() == 1


async def test_unknown_status_keeps_waiting(connections: Emulator) -> None:
    emu = connections
    emu.monid.set_endpoint(*TWEETS, final_status=["MYSTERY_STATE", "STOPPING", "COMPLETED"])
    run_id = MonidHook().submit_run(*TWEETS, {"searchTerms": ["x"]}).run_id
    event = await only_event(trigger_for(run_id))
    assert event["run_status"] == "COMPLETED"
    assert emu.count("GET", f"/v1/runs/{run_id}") == 3


async def test_deadline_in_the_past_gives_a_timeout_after_one_last_look(connections: Emulator) -> None:
    emu = connections
    run_id = emu.monid.add_run(status="RUNNING")["runId"]
    trigger = MonidRunTrigger(run_id, "monid_default", poll_interval=60, end_time=time.time() - 10)
    event = await only_event(trigger)
    assert event["status"] == "timeout" and event["run_status"] == "RUNNING"
    assert "was not terminal at the deadline" in event["message"]
    assert emu.count("GET", f"/v1/runs/{run_id}") == 1


async def test_near_deadline_gives_a_timeout(connections: Emulator) -> None:
    emu = connections
    run_id = emu.monid.add_run(status="RUNNING")["runId"]  # never finishes on its own
    event = await only_event(trigger_for(run_id, deadline=0.3, poll_interval=0.05))
    assert event["status"] == "timeout"
    assert emu.count("GET", f"/v1/runs/{run_id}") >= 1
    assert methods(emu) == {"GET"}


async def test_transient_failures_while_polling_do_not_end_the_wait(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = connections
    run_id = emu.monid.add_run(status="RUNNING", polls_to_finish=1)["runId"]
    path = f"/v1/runs/{run_id}"
    # Each fault outlasts one hook call (2 attempts), so the trigger itself sees four failed polls.
    for fault in ({"status": 500}, {"status": 503}, {"action": "reset"}, {"action": "html", "status": 502}):
        emu.add_fault("GET", path, times=2, **fault)
    trigger = trigger_for(run_id, conn_for(monkeypatch, emu.url))
    event = await only_event(trigger)
    assert (event["status"], event["run_status"]) == ("terminal", "COMPLETED")
    assert [r.fault for r in emu.requests()] == ["respond"] * 4 + ["reset"] * 2 + ["html"] * 2 + [None]
    assert methods(emu) == {"GET"}


async def test_rate_limit_while_polling_does_not_end_the_wait(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = connections
    run_id = emu.monid.add_run(status="RUNNING", polls_to_finish=1)["runId"]
    emu.add_fault("GET", f"/v1/runs/{run_id}", status=429, headers={"Retry-After": "0"}, times=3)
    event = await only_event(trigger_for(run_id, conn_for(monkeypatch, emu.url)))
    assert event["status"] == "terminal"
    assert emu.count("GET") == 4


async def test_unknown_run_is_an_error_event(connections: Emulator) -> None:
    event = await only_event(trigger_for("01NOSUCHRUN"))
    assert event["status"] == "error" and event["run_status"] is None
    assert "HTTP 404: Run not found" in event["message"]
    assert connections.count() == 1


async def test_bad_key_is_an_error_event(connections: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = connections.monid.add_run(status="RUNNING")["runId"]
    event = await only_event(trigger_for(run_id, conn_for(monkeypatch, connections.url, key="mk_bad")))
    assert event["status"] == "error" and "HTTP 401" in event["message"]
    assert "mk_bad" not in event["message"]
    assert connections.count() == 1


async def test_missing_key_is_an_error_event_without_requests(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = await only_event(trigger_for("R1", conn_for(monkeypatch, connections.url, key=None)))
    assert event["status"] == "error" and "has no API key" in event["message"]
    assert connections.requests() == []


# ----- on_kill ---------------------------------------------------------------------------------------


@pytest.fixture
def task_state(monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    """Stands in for the Task SDK's GetTaskStates answer (there is no supervisor in a unit test)."""
    state: dict[str, str | None] = {"value": "failed"}

    async def fake(ti: object, seconds: float) -> str | None:
        return state["value"]

    monkeypatch.setattr("airflow_monid.triggers.monid.task_state_now", fake)
    return state


@pytest.mark.parametrize("state", ["deferred", "running", "queued", "scheduled", "up_for_retry", None])
async def test_on_kill_leaves_a_run_that_is_still_waited_for(
    connections: Emulator, task_state: dict[str, str | None], state: str | None
) -> None:
    """Reassigned to another triggerer (deferred), cleared or retried: the run goes on (issue 8 #11)."""
    task_state["value"] = state
    run_id = connections.monid.add_run(status="RUNNING")["runId"]
    await trigger_for(run_id).on_kill()
    assert connections.requests("POST") == []
    assert connections.monid.get_run(run_id)["status"] == "RUNNING"


async def test_on_kill_stops_the_run_and_run_itself_only_gets(
    connections: Emulator, task_state: dict[str, str | None]
) -> None:
    emu = connections
    run_id = emu.monid.add_run(status="RUNNING")["runId"]
    trigger = trigger_for(run_id, poll_interval=0.05)
    task = asyncio.ensure_future(events_of(trigger))
    # The triggerer cancels run() and then calls on_kill(); wait for real polls first.
    await asyncio.to_thread(emu.wait_for_request, lambda r: r.method == "GET", 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert methods(emu) == {"GET"}  # polling never stops or submits anything
    await trigger.on_kill()
    (post,) = emu.requests("POST")
    assert post.path == f"/v1/runs/{run_id}/stop" and post.status == 202
    assert emu.monid.get_run(run_id)["status"] == "STOPPING"


async def test_sensor_trigger_on_kill_sends_nothing(connections: Emulator) -> None:
    run_id = connections.monid.add_run(status="RUNNING")["runId"]
    await MonidRunSensorTrigger(run_id, "monid_default", poll_interval=1, end_time=time.time() + 30).on_kill()
    assert connections.requests() == []
    assert connections.monid.get_run(run_id)["status"] == "RUNNING"


async def test_on_kill_of_a_terminal_run_is_quiet(connections: Emulator, task_state: dict[str, str | None]) -> None:
    run_id = connections.monid.add_run(status="COMPLETED")["runId"]
    await trigger_for(run_id).on_kill()  # 409 from the API: nothing to stop, no error
    assert [(r.method, r.status) for r in connections.requests()] == [("POST", 409)]


async def test_on_kill_when_the_api_is_down_does_not_raise(
    monkeypatch: pytest.MonkeyPatch, task_state: dict[str, str | None], caplog: pytest.LogCaptureFixture
) -> None:
    conn_id = conn_for(monkeypatch, f"http://127.0.0.1:{closed_port()}")
    with caplog.at_level(logging.INFO, logger="airflow_monid"):
        await trigger_for("R1", conn_id).on_kill()  # best effort: logged, never raised
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "airflow_monid.triggers.monid"]
    assert len(warnings) == 1 and "Could not stop Monid run R1 on kill" in warnings[0].getMessage()
    assert not [r for r in caplog.records if "Stop requested" in r.getMessage()]  # it does not claim a stop


# ----- the pooled async client ---------------------------------------------------------------------


async def test_two_triggers_on_one_loop_share_one_client(connections: Emulator) -> None:
    emu = connections
    before = _http.pool_size()[1]
    ids = [emu.monid.add_run(status="RUNNING", polls_to_finish=2)["runId"] for _ in range(2)]
    first, second = trigger_for(ids[0]), trigger_for(ids[1])
    events = await asyncio.gather(only_event(first), only_event(second))
    assert [e["status"] for e in events] == ["terminal", "terminal"]
    assert _http.pool_size()[1] == before + 1
    loop = asyncio.get_running_loop()
    (client,) = _http._async_clients[loop].values()
    settings = [await t._hook().asettings() for t in (first, second)]
    assert _http.async_client(settings[0]) is client is _http.async_client(settings[1])


def test_a_new_event_loop_gets_its_own_client(connections: Emulator) -> None:
    run_id = connections.monid.add_run(status="COMPLETED")["runId"]
    live_before = _http.pool_size()[1]

    async def poll_once() -> tuple[asyncio.AbstractEventLoop, Any]:
        hook = MonidHook()
        await hook.aget_run(run_id)
        return asyncio.get_running_loop(), _http.async_client(await hook.asettings())

    first_loop, first_client = asyncio.run(poll_once())
    second_loop, second_client = asyncio.run(poll_once())  # the first loop is closed: no stale client reused
    assert first_loop is not second_loop and first_client is not second_client
    assert connections.count("GET") == 2
    assert first_loop not in _http._async_clients  # a closed loop's clients are dropped
    assert _http.pool_size()[1] == live_before  # both loops are closed: their clients do not count
