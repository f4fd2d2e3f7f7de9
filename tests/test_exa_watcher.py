"""ExaMonitorRunWatcher against the emulator, driven the way the triggerer drives it.

The watcher's ``run()`` is iterated by a pump task (the triggerer's ``async for``); cycles are stepped
one at a time by replacing the pause between them, so no test waits on a clock. A dict-backed
stand-in plays the Airflow 3.3 ``asset_state_store``; "restart" cancels the pump and builds a new
watcher from the same kwargs and store, as a triggerer does after a crash.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from airflow_monid._exa import watermark as _watermark
from airflow_monid.exceptions import ConfigError
from airflow_monid.models._base import parse_time
from airflow_monid.models.exa_events import ExaMonitorRunEvent, exa_runs_from_events
from airflow_monid.testing.emulator import Emulator
from airflow_monid.triggers import exa as exa_triggers
from airflow_monid.triggers.exa import ExaMonitorRunWatcher
from airflow_monid.version_compat import AIRFLOW_V_3_3_PLUS
from tests._support import EXA_KEY, exa_conn

MON = "mon_watch"
WS = "wmon_watch"
EVENT_KEYS = {"monitor_id", "monitor_type", "run_id", "status", "created_at", "completed_at"}
T0 = "2026-11-01T09:00:00Z"


def at(minute: int) -> str:
    return f"2026-11-01T{9 + minute // 60:02d}:{minute % 60:02d}:00Z"


class StandInStore:
    """The subset of Airflow 3.3's ``AssetStateStoreAccessors`` the watcher uses."""

    def __init__(self, refuse: bool = False) -> None:
        self.data: dict[str, Any] = {}
        self.refuse = refuse
        self.writes = 0

    async def aget(self, key: str, default: Any = None) -> Any:
        if self.refuse:  # what the single-asset accessor does when one trigger serves two assets
            raise ValueError("Task has 2 concrete inlets and outlets — use context['asset_state_store'][MY_ASSET]")
        return self.data.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        if self.refuse:
            raise ValueError("refused")
        assert value is not None
        self.data[key] = value
        self.writes += 1


class Driver:
    """Runs one watcher as the triggerer does and steps it cycle by cycle."""

    def __init__(self, watcher: ExaMonitorRunWatcher, monkeypatch: pytest.MonkeyPatch) -> None:
        self.watcher = watcher
        self.events: list[dict[str, Any]] = []
        self.waits: list[float] = []
        self._go = asyncio.Semaphore(0)
        self._paused = asyncio.Event()
        monkeypatch.setattr(exa_triggers, "_watcher_sleep", self._sleep)
        self._task: asyncio.Task[None] | None = None

    async def _sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self._paused.set()
        await self._go.acquire()

    async def _pump(self) -> None:
        async for event in self.watcher.run():
            self.events.append(event.payload)

    async def start(self) -> Driver:
        """Start ``run()`` and let it finish its first cycle."""
        self._task = asyncio.ensure_future(self._pump())
        await self._until_paused()
        return self

    async def cycle(self, n: int = 1) -> list[dict[str, Any]]:
        """Let ``n`` more cycles run; returns the events they yielded."""
        before = len(self.events)
        for _ in range(n):
            self._paused.clear()
            self._go.release()
            await self._until_paused()
        return self.events[before:]

    async def _until_paused(self) -> None:
        waiter = asyncio.ensure_future(self._paused.wait())
        assert self._task is not None
        done, _ = await asyncio.wait({waiter, self._task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        assert self._task not in done, f"run() ended: {self._task.exception() if self._task.done() else ''}"
        assert done, "the watcher did not finish its cycle"

    async def stop(self) -> None:
        """What a SIGKILL leaves behind: nothing runs after the last completed step."""
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task


def watcher(store: StandInStore | None = None, **kwargs: Any) -> ExaMonitorRunWatcher:
    kwargs.setdefault("monitor_id", MON)
    w = ExaMonitorRunWatcher(poll_interval=30, **kwargs)
    if store is not None:
        w.asset_state_store = store  # type: ignore[assignment]  # injected by the triggerer on 3.3
    return w


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["run_id"] for e in events]


@pytest.fixture(autouse=True)
def no_ack_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    # The one-cycle delay stays; the seconds-long grace would need a real clock (tested separately).
    monkeypatch.setattr(_watermark, "ACK_GRACE", 0.0)


# --- what is emitted, when, in which order -----------------------------------------------------------


@pytest.mark.parametrize("family", ["search", "websets"])
async def test_first_start_emits_only_runs_that_end_afterwards(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch, family: str
) -> None:
    emu = connections
    mon = MON if family == "search" else WS
    emu.exa.add_monitor(mon, family=family)
    emu.exa.add_run(mon, run_id="old_done", status="completed", created_at=at(0))
    emu.exa.add_run(mon, run_id="in_flight", status="running", created_at=at(10), polls_to_finish=None)

    d = await Driver(watcher(monitor_id=mon, monitor_type=family), monkeypatch).start()
    assert d.events == []  # old_done ended before the watcher started
    assert await d.cycle() == []

    emu.exa.finish_run(mon, "in_flight", "completed")
    emu.exa.add_run(mon, run_id="new_one", status="running", created_at=at(20), polls_to_finish=None)
    events = await d.cycle()
    assert ids(events) == ["in_flight"]  # created before the start, emitted when it finished
    emu.exa.finish_run(mon, "new_one", "completed")
    assert ids(await d.cycle()) == ["new_one"]
    assert await d.cycle(2) == []  # nothing twice
    await d.stop()

    for event in d.events:
        assert set(event) == EVENT_KEYS  # small: never the output
        assert event["monitor_id"] == mon and event["monitor_type"] == family and event["status"] == "completed"
        assert parse_time(event["completed_at"]) >= parse_time(event["created_at"])


async def test_runs_ending_in_one_cycle_are_emitted_oldest_first(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = connections
    emu.exa.add_monitor(MON)
    for i, run_id in enumerate(["a", "b", "c"]):
        emu.exa.add_run(MON, run_id=run_id, status="running", created_at=at(i), polls_to_finish=None)
    d = await Driver(watcher(), monkeypatch).start()
    for run_id in ["c", "a", "b"]:  # finishing order differs from creation order
        emu.exa.finish_run(MON, run_id, "completed")
    assert ids(await d.cycle()) == ["a", "b", "c"]
    await d.stop()


async def test_statuses_choose_which_terminal_runs_are_emitted(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = connections
    emu.exa.add_monitor(MON)
    for i, run_id in enumerate(["ok", "bad", "gone"]):
        emu.exa.add_run(MON, run_id=run_id, status="running", created_at=at(i), polls_to_finish=None)
    d = await Driver(watcher(statuses=["failed", "canceled"]), monkeypatch).start()
    emu.exa.finish_run(MON, "ok", "completed")
    emu.exa.finish_run(MON, "bad", "failed", fail_reason="rate_limited")
    emu.exa.finish_run(MON, "gone", "cancelled")
    events = await d.cycle()
    await d.stop()
    assert [(e["run_id"], e["status"]) for e in events] == [("bad", "failed"), ("gone", "cancelled")]
    assert events[0]["completed_at"] is not None  # failedAt counts as the end


def test_statuses_must_be_terminal() -> None:
    with pytest.raises(ConfigError, match="terminal"):
        ExaMonitorRunWatcher(monitor_id=MON, statuses=["running"])
    with pytest.raises(ConfigError, match="at least one"):
        ExaMonitorRunWatcher(monitor_id=MON, statuses=[])
    with pytest.raises(ConfigError, match="poll_interval"):
        ExaMonitorRunWatcher(monitor_id=MON, poll_interval=0)
    with pytest.raises(ConfigError, match="monitor_type"):
        ExaMonitorRunWatcher(monitor_id=MON, monitor_type="agent")


# --- restarts, outages, catch-up (Airflow 3.3 store) ------------------------------------------------


async def test_restart_with_a_store_misses_nothing(connections: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = connections
    emu.exa.add_monitor(MON)
    emu.exa.add_run(MON, run_id="before", status="completed", created_at=at(0))
    emu.exa.add_run(MON, run_id="r1", status="running", created_at=at(1), polls_to_finish=None)
    store = StandInStore()
    d = await Driver(watcher(store), monkeypatch).start()
    emu.exa.finish_run(MON, "r1", "completed")
    assert ids(await d.cycle()) == ["r1"]
    await d.cycle()  # commits r1
    await d.stop()
    assert store.data["search:" + MON]["emitted"] == ["r1"]  # key namespaced by monitor type and id

    # No triggerer runs: two runs end, one more starts.
    emu.exa.add_run(MON, run_id="r2", status="completed", created_at=at(2))
    emu.exa.add_run(MON, run_id="r3", status="failed", created_at=at(3))
    emu.exa.add_run(MON, run_id="r4", status="completed", created_at=at(4))
    emu.exa.add_run(MON, run_id="r5", status="running", created_at=at(5), polls_to_finish=None)

    d2 = await Driver(watcher(store), monkeypatch).start()  # the re-created trigger, same kwargs
    assert ids(d2.events) == ["r2", "r4"]  # caught up, oldest first; r3 failed (not in statuses)
    emu.exa.finish_run(MON, "r5", "completed")
    assert ids(await d2.cycle()) == ["r5"]
    await d2.stop()


async def test_crash_between_yield_and_commit_repeats_and_the_helper_removes_it(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = connections
    emu.exa.add_monitor(MON)
    emu.exa.add_run(MON, run_id="r1", status="running", created_at=at(1), polls_to_finish=None)
    store = StandInStore()
    d = await Driver(watcher(store), monkeypatch).start()
    emu.exa.finish_run(MON, "r1", "completed")
    first = await d.cycle()
    await d.stop()  # killed before the next cycle could commit r1
    assert "r1" not in store.data["search:" + MON]["emitted"]

    d2 = await Driver(watcher(store), monkeypatch).start()
    assert ids(first) == ids(d2.events) == ["r1"]  # at least once: repeated, not lost
    await d2.cycle()
    await d2.stop()

    # The two events as the DAG sees them: the repeat landed in a later DAG run.
    earlier = [{"timestamp": "2026-11-01T10:00:00Z", "extra": {"from_trigger": True, "payload": first[0]}}]
    later = {"asset": [{"timestamp": "2026-11-01T10:05:00Z", "extra": {"from_trigger": True, "payload": d2.events[0]}}]}
    assert exa_runs_from_events(later, earlier_events=earlier) == []
    assert [r.run_id for r in exa_runs_from_events(later)] == ["r1"]


async def test_commit_waits_for_the_ack_grace(connections: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_watermark, "ACK_GRACE", 3600.0)
    emu = connections
    emu.exa.add_monitor(MON)
    emu.exa.add_run(MON, run_id="r1", status="running", created_at=at(1), polls_to_finish=None)
    store = StandInStore()
    d = await Driver(watcher(store), monkeypatch).start()
    emu.exa.finish_run(MON, "r1", "completed")
    await d.cycle(3)
    await d.stop()
    state = store.data["search:" + MON]
    assert "r1" not in state["emitted"] and parse_time(state["watermark"]) <= parse_time(at(1))


async def test_catch_up_is_capped(connections: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = connections
    emu.exa.add_monitor(MON)
    emu.exa.add_run(MON, run_id="r0", status="completed", created_at=at(0))
    store = StandInStore()
    d = await Driver(watcher(store, catch_up_limit=3), monkeypatch).start()
    await d.stop()
    for i in range(1, 6):
        emu.exa.add_run(MON, run_id=f"r{i}", status="completed", created_at=at(i))
    d2 = await Driver(watcher(store, catch_up_limit=3), monkeypatch).start()
    await d2.cycle(2)
    await d2.stop()
    assert ids(d2.events) == ["r3", "r4", "r5"]  # the newest three; r1, r2 skipped with a warning


async def test_re_created_trigger_after_pause_catches_up(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pausing a DAG removes its watcher (on_kill, a no-op); the asset and its state stay. Unpausing
    # creates the trigger again from the same kwargs: runs that ended meanwhile are emitted.
    emu = connections
    emu.exa.add_monitor(MON)
    store = StandInStore()
    w = watcher(store)
    d = await Driver(w, monkeypatch).start()
    await w.on_kill()
    await d.stop()
    emu.exa.add_run(MON, run_id="while_paused", status="completed", created_at=at(5))
    d2 = await Driver(watcher(store), monkeypatch).start()
    await d2.stop()
    assert ids(d2.events) == ["while_paused"]


async def test_without_a_store_each_start_is_from_now(connections: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = connections
    emu.exa.add_monitor(MON)
    d = await Driver(watcher(), monkeypatch).start()
    await d.stop()
    emu.exa.add_run(MON, run_id="while_down", status="completed", created_at=at(1))
    emu.exa.add_run(MON, run_id="open", status="running", created_at=at(2), polls_to_finish=None)
    d2 = await Driver(watcher(), monkeypatch).start()
    assert d2.events == []  # what Airflow 3.0-3.2 means: runs ended while no watcher ran are not emitted
    emu.exa.finish_run(MON, "open", "completed")
    assert ids(await d2.cycle()) == ["open"]  # but a run in flight at the start is
    await d2.stop()


async def test_a_store_serving_several_assets_is_refused_once(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    emu = connections
    emu.exa.add_monitor(MON)
    emu.exa.add_run(MON, run_id="r1", status="running", created_at=at(1), polls_to_finish=None)
    store = StandInStore(refuse=True)
    with caplog.at_level(logging.WARNING, logger="airflow_monid"):
        d = await Driver(watcher(store), monkeypatch).start()
        emu.exa.finish_run(MON, "r1", "completed")
        assert ids(await d.cycle(3)) == ["r1"]  # works as without a store
        await d.stop()
    refusals = [r for r in caplog.records if "exactly one Asset" in r.getMessage()]
    assert len(refusals) == 1 and store.writes == 0


async def test_transient_errors_back_off_and_never_end_run(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = connections
    emu.exa.add_monitor(MON)
    emu.exa.add_run(MON, run_id="r1", status="running", created_at=at(1), polls_to_finish=None)
    d = await Driver(watcher(), monkeypatch).start()
    emu.exa.finish_run(MON, "r1", "completed")
    # Each cycle's call retries 4 times in the hook (FAST_EXTRAS); 8 failures = two failed cycles.
    emu.add_fault("GET", rf"/monitors/{MON}/runs(\?.*)?", status=503, times=8)
    assert await d.cycle(2) == []
    assert d.waits[-2:] == [30.0, 60.0]  # exponential backoff from poll_interval
    assert ids(await d.cycle()) == ["r1"]  # recovered; nothing lost
    assert d.waits[-1] == 30.0
    await d.stop()


async def test_permanent_errors_are_logged_at_a_low_rate(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    emu = connections  # the monitor does not exist yet: 404
    with caplog.at_level(logging.INFO, logger="airflow_monid"):
        d = await Driver(watcher(), monkeypatch).start()
        await d.cycle(4)
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "404" in errors[0].getMessage() and MON in errors[0].getMessage()
        assert set(d.waits) == {exa_triggers.WATCHER_PERMANENT_RETRY}
        emu.exa.add_monitor(MON)  # the monitor appears: the same watcher resumes by itself
        await d.cycle()
        emu.exa.add_run(MON, run_id="r1", status="completed", created_at=at(1))
        assert ids(await d.cycle()) == ["r1"]
        await d.stop()
    assert emu.count("GET", f"/monitors/{MON}/runs") == 7
    lines_per_cycle = len([r for r in caplog.records if r.name.startswith("airflow_monid.triggers")]) / 7
    assert lines_per_cycle < 1  # no log line per poll


async def test_a_wrong_key_is_permanent_and_never_logged(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    emu = connections
    emu.exa.add_monitor(MON)
    monkeypatch.setenv("AIRFLOW_CONN_EXA_WRONG", exa_conn(emu.url, key="wrong_" + EXA_KEY))
    with caplog.at_level(logging.DEBUG):
        d = await Driver(watcher(exa_conn_id="exa_wrong"), monkeypatch).start()
        await d.cycle(2)
        await d.stop()
    assert "401" in caplog.text
    assert EXA_KEY not in caplog.text and d.waits[0] == exa_triggers.WATCHER_PERMANENT_RETRY


# --- Websets: no cursor ------------------------------------------------------------------------------


async def test_websets_runs_are_read_from_the_first_page_only(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = connections
    emu.exa.add_monitor(WS, family="websets")
    emu.exa.add_run(WS, run_id="seen", status="running", created_at=at(0), polls_to_finish=None)
    d = await Driver(watcher(monitor_id=WS, monitor_type="websets"), monkeypatch).start()
    for i in range(1, 31):  # more than one (emulated, 25-run) page appears within one poll
        emu.exa.add_run(WS, run_id=f"n{i:02d}", status="completed", created_at=at(i))
    events = await d.cycle()
    await d.stop()
    assert ids(events) == [f"n{i:02d}" for i in range(6, 31)]  # the documented loss: older than page 1
    lists = emu.requests("GET", f"/websets/v0/monitors/{WS}/runs")
    assert lists and all("cursor" not in r.query and "limit" not in r.query for r in lists)


# --- kwargs, repr, on_kill ---------------------------------------------------------------------------


def test_kwargs_are_plain_stable_and_hash_alike() -> None:
    from airflow.triggers.base import BaseEventTrigger

    a, b = ExaMonitorRunWatcher(monitor_id=MON), ExaMonitorRunWatcher(monitor_id=MON, poll_interval=60)
    classpath, kwargs = a.serialize()
    assert classpath == "airflow_monid.triggers.exa.ExaMonitorRunWatcher"
    assert kwargs == {
        "monitor_id": MON,
        "monitor_type": "search",
        "exa_conn_id": "exa_default",
        "poll_interval": 60.0,
        "statuses": ["completed"],
        "search_monitors_path": None,
        "catch_up_limit": 100,
    }
    assert all(isinstance(v, (str, int, float, list, type(None))) for v in kwargs.values())
    assert BaseEventTrigger.hash(*a.serialize()) == BaseEventTrigger.hash(*b.serialize())
    rebuilt = ExaMonitorRunWatcher(**kwargs)
    assert rebuilt.serialize() == a.serialize()
    assert EXA_KEY not in repr(a) and EXA_KEY not in repr(kwargs)


async def test_on_kill_does_nothing(connections: Emulator) -> None:
    await ExaMonitorRunWatcher(monitor_id=MON).on_kill()
    assert connections.count() == 0


# --- helpers -----------------------------------------------------------------------------------------


def _asset_event(payload: Any, ts: str = T0) -> dict[str, Any]:
    return {"timestamp": ts, "extra": {"from_trigger": True, "payload": payload}}


def test_exa_runs_from_events_removes_repeats_and_orders_by_creation() -> None:
    def p(run_id: str, created: str, mon: str = MON) -> dict[str, Any]:
        return {"monitor_id": mon, "monitor_type": "search", "run_id": run_id, "status": "completed",
                "created_at": created, "completed_at": created}  # fmt: skip

    events = {
        "asset_a": [_asset_event(p("r2", at(2))), _asset_event(p("r1", at(1))), _asset_event(p("r2", at(2)))],
        "asset_b": [_asset_event(p("x1", at(0), mon="other")), {"extra": {"note": "not ours"}}],
    }
    runs = exa_runs_from_events(events)
    assert [(r.monitor_id, r.run_id) for r in runs] == [("other", "x1"), (MON, "r1"), (MON, "r2")]
    assert [r.run_id for r in exa_runs_from_events(events, monitor_id=MON)] == ["r1", "r2"]
    assert exa_runs_from_events(None) == []
    assert ExaMonitorRunEvent.from_asset_event({"extra": {"payload": {"run_id": 1}}}) is None


def test_parse_time_reads_epoch_seconds_and_milliseconds() -> None:
    assert parse_time(1_767_225_600) == parse_time("2026-01-01T00:00:00Z")
    assert parse_time(1_767_225_600_000) == parse_time("2026-01-01T00:00:00Z")
    assert parse_time(1_767_225_600.5) == parse_time("2026-01-01T00:00:00.500Z")
    assert parse_time(True) is None and parse_time(float("nan")) is None and parse_time(float("inf")) is None


# --- the example DAG ---------------------------------------------------------------------------------


def test_example_dag_fetches_each_distinct_run_once(dag_env: Emulator) -> None:
    from airflow_monid.testing.__main__ import seed_exa
    from tests._support import EXAMPLE_DAGS, load_dag, xcoms

    emu = dag_env
    seed_exa(emu)
    (seeded,) = emu.exa.runs("mon_funding")
    dag = load_dag(EXAMPLE_DAGS / "exa_monitor_event_driven.py")
    (asset,) = dag.get_task("fetch_results").inlets  # the scheduling asset, an inlet for inlet_events
    assert asset.uri.startswith("exa-monitor://mon_funding")
    (watcher_,) = asset.watchers
    assert isinstance(watcher_.trigger, ExaMonitorRunWatcher) and watcher_.trigger.monitor_id == "mon_funding"

    if AIRFLOW_V_3_3_PLUS:
        # Airflow 3.0.6's dag.test() does not mark the asset active, and a task with an inactive inlet
        # fails before it starts (AirflowInactiveAssetInInletOrOutletException); a deployment's
        # dag-processor activates it. 3.3.2's dag.test() does.
        dr = dag.test()  # a manual run: no triggering events, nothing fetched
        assert dr.state == "success" and xcoms(dag.dag_id, dr.run_id)[("fetch_results", "return_value", -1)] == []

    payload = {
        "monitor_id": "mon_funding",
        "monitor_type": "search",
        "run_id": seeded["id"],
        "status": "completed",
        "created_at": seeded["createdAt"],
        "completed_at": seeded["completedAt"],
    }

    class Inlets:
        def __init__(self, events: list[Any]) -> None:
            self.events = events

        def __getitem__(self, _asset: Any) -> list[Any]:
            return self.events

    folded = {asset.name: [_asset_event(payload, at(30)), _asset_event(payload, at(31))]}  # one repeat
    body = dag.get_task("fetch_results").python_callable
    before = emu.count("GET", f"/monitors/mon_funding/runs/{seeded['id']}")
    summary = body(triggering_asset_events=folded, inlet_events=Inlets([]))
    assert summary == [
        {
            "run_id": seeded["id"],
            "count": 2,
            "urls": [f"https://news.example.com/mon_funding/{i}" for i in (1, 2)],
        }
    ]
    assert emu.count("GET", f"/monitors/mon_funding/runs/{seeded['id']}") == before + 1  # fetched once
    # The same run delivered again in a later DAG run: nothing to do.
    assert body(triggering_asset_events=folded, inlet_events=Inlets([_asset_event(payload, at(0))])) == []
