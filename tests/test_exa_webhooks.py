"""The Exa webhook receiver: signature, replay, stale, size, unknown monitor, and dedupe with the poll.

Deliveries are signed and posted by the emulator (``ExaState.deliver_webhook``, its own HMAC code) to
the provider's plugin app served by a real HTTP server on 127.0.0.1, with the metadata database of
the unit suite: a watcher's trigger row and its asset are real rows, and so are the asset events the
receiver registers. The watcher side is stepped cycle by cycle as in test_exa_watcher.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_monid._exa import watermark as _watermark
from airflow_monid._exa.webhooks import (
    FUTURE_SKEW,
    MAX_BODY_BYTES,
    TOLERANCE,
    ReplayStore,
    WebhookRejected,
    expected_signature,
    parse_record,
    record_key,
    verify_signature,
)
from airflow_monid.testing.emulator import Emulator
from airflow_monid.triggers import exa as exa_triggers
from airflow_monid.triggers.exa import WEBHOOK_POLL_INTERVAL, ExaMonitorRunWatcher
from airflow_monid.version_compat import AIRFLOW_V_3_3_PLUS
from tests._support import EXA_KEY, exa_conn
from tests.test_exa_watcher import Driver

SECRET = "whsec_test_LEAKCANARY_webhook_9Zq2Lm5Tx8Rv"
MON = "mon_hooked"
CONN = "exa_hooked"
ASSET_URI = "exa-monitor://mon_hooked"

# --- signature ---------------------------------------------------------------------------------------


def _header(t: int, body: bytes, secret: str = SECRET) -> str:
    return f"t={t},v1={expected_signature(secret, t, body)}"


def test_a_valid_signature_passes_and_any_v1_may_match() -> None:
    body, now = b'{"id":"event_1"}', 1_800_000_000
    assert verify_signature(SECRET, _header(now, body), body, now=now) == now
    rotated = f"t={now},v1={'ab' * 32},v1={expected_signature(SECRET, now, body)}"
    assert verify_signature(SECRET, rotated, body, now=now) == now


@pytest.mark.parametrize(
    "case",
    ["unsigned", "malformed", "no_v1", "wrong_secret", "body_changed", "stale", "future", "t_changed"],
)
def test_every_bad_signature_is_401_with_one_answer(case: str) -> None:
    body, now = b'{"id":"event_1"}', 1_800_000_000
    header: str | None = _header(now, body)
    sent = body
    if case == "unsigned":
        header = None
    elif case == "malformed":
        header = "v1=abc,t=notanumber"
    elif case == "no_v1":
        header = f"t={now}"
    elif case == "wrong_secret":
        header = _header(now, body, secret="another")
    elif case == "body_changed":
        sent = b'{"id":"event_2"}'
    elif case == "stale":
        header = _header(int(now - TOLERANCE - 1), body)
    elif case == "future":
        header = _header(int(now + FUTURE_SKEW + 1), body)
    elif case == "t_changed":
        header = f"t={now - 1},v1={expected_signature(SECRET, now, body)}"
    with pytest.raises(WebhookRejected) as info:
        verify_signature(SECRET, header, sent, now=now)
    assert info.value.status == 401 and info.value.public == "Signature verification failed."
    assert SECRET not in info.value.reason


def test_a_timestamp_within_the_tolerance_and_the_skew_passes() -> None:
    body, now = b"{}", 1_800_000_000
    for t in (int(now - TOLERANCE + 1), int(now + FUTURE_SKEW - 1)):
        assert verify_signature(SECRET, _header(t, body), body, now=now) == t


def test_replay_store_remembers_ids_for_its_window_only() -> None:
    store = ReplayStore(window=10)
    assert store.claim("event_a", now=100.0)
    assert not store.claim("event_a", now=105.0)  # a replay
    assert store.claim("event_b", now=105.0)
    assert store.claim("event_a", now=111.0)  # past the window: the timestamp check refuses it anyway
    store.release("event_b")
    assert store.claim("event_b", now=111.0)  # a failed delivery does not block Exa's retry


# --- the receiver on an HTTP server, with real rows ---------------------------------------------------


class Receiver:
    """The plugin app (spend page and receiver) served by uvicorn on 127.0.0.1 in a thread."""

    def __init__(self) -> None:
        import socket

        import uvicorn
        from fastapi import FastAPI

        from airflow_monid.plugins.exa_webhooks import add_routes

        app = FastAPI()
        add_routes(app)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Receiver:
        import httpx

        self.thread.start()
        for _ in range(200):  # until it answers (a bounded readiness poll)
            try:
                httpx.get(self.url + "/docs", timeout=1)
                return self
            except httpx.HTTPError:
                threading.Event().wait(0.05)
        raise RuntimeError("the receiver did not start")

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def hook_url(self, conn_id: str = CONN) -> str:
        return f"{self.url}/api/v1/exa/webhooks/{conn_id}"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def hooked(airflow_db: Path, connections: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A monitor, a connection with a webhook secret, and a watcher's trigger row on an asset."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session

    emu = connections
    emu.exa.add_monitor(MON)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", exa_conn(emu.url, webhook_secret=SECRET))
    watcher = ExaMonitorRunWatcher(monitor_id=MON, exa_conn_id=CONN, poll_interval=30)
    classpath, kwargs = watcher.serialize()
    with create_session() as session:
        asset = AssetModel(name=ASSET_URI, uri=ASSET_URI, group="asset")
        trigger = Trigger(classpath=classpath, kwargs=kwargs)
        session.add_all([asset, trigger])
        session.flush()
        _link(session, asset, trigger)
        ids = {"asset_id": asset.id, "trigger_id": trigger.id}
    yield {"emu": emu, **ids}
    with create_session() as session:
        from sqlalchemy import delete

        session.execute(delete(AssetEvent).where(AssetEvent.asset_id == ids["asset_id"]))
        if AIRFLOW_V_3_3_PLUS:
            from airflow.models.asset_state_store import AssetStateStoreModel

            session.execute(delete(AssetStateStoreModel).where(AssetStateStoreModel.asset_id == ids["asset_id"]))
        _unlink(session, ids["asset_id"], ids["trigger_id"])
        session.execute(delete(Trigger).where(Trigger.id == ids["trigger_id"]))
        session.execute(delete(AssetModel).where(AssetModel.id == ids["asset_id"]))


def _link(session: Any, asset: Any, trigger: Any) -> None:
    try:
        from airflow.models.asset import AssetWatcherModel
    except ImportError:  # Airflow 3.0: an association table
        trigger.assets.append(asset)
        return
    session.add(AssetWatcherModel(name="hooked", asset_id=asset.id, trigger_id=trigger.id))


def _unlink(session: Any, asset_id: int, trigger_id: int) -> None:
    from sqlalchemy import delete

    try:
        from airflow.models.asset import AssetWatcherModel
    except ImportError:
        from airflow.models.asset import asset_trigger_association_table as table

        session.execute(delete(table).where(table.c.asset_id == asset_id))
        return
    session.execute(delete(AssetWatcherModel).where(AssetWatcherModel.asset_id == asset_id))


def _events(asset_id: int) -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(AssetEvent.extra).where(AssetEvent.asset_id == asset_id).order_by(AssetEvent.id))
        return [dict(e or {}) for e in rows]


def _finished_run(emu: Emulator, run_id: str) -> None:
    emu.exa.add_run(MON, run_id=run_id, status="completed")


def test_a_signed_delivery_becomes_the_watchers_asset_event(
    hooked: dict[str, Any], receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    emu = hooked["emu"]
    _finished_run(emu, "r1")
    caplog.set_level(logging.DEBUG)
    sent = emu.exa.deliver_webhook(receiver.hook_url(), SECRET, MON, "r1")
    assert sent["status"] == 200 and sent["body"] == {"status": "delivered", "asset_events": 1}
    [event] = _events(hooked["asset_id"])
    run = emu.exa.get_run(MON, "r1")
    assert event["from_trigger"] is True and event["exa_webhook_event"] == sent["event_id"]
    assert event["payload"] == {
        "monitor_id": MON,
        "monitor_type": "search",
        "run_id": "r1",
        "status": "completed",
        "created_at": run["createdAt"],
        "completed_at": run["completedAt"],
    }
    # The same payload the watcher emits for that run.
    assert event["payload"] == ExaMonitorRunWatcher(monitor_id=MON)._event(_as_run(run))
    assert SECRET not in caplog.text and "Two new items" not in caplog.text  # ids only, never the body
    assert sent["event_id"] in caplog.text


def _as_run(raw: dict[str, Any]) -> Any:
    from airflow_monid.models.exa import ExaMonitorRun

    return ExaMonitorRun.from_api(raw)


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        ({"signature": "wrong"}, 401),
        ({"signature": "none"}, 401),
        ({"timestamp_offset": -(TOLERANCE + 60)}, 401),
        ({"timestamp_offset": FUTURE_SKEW + 60}, 401),
        ({"pad_to_bytes": MAX_BODY_BYTES + 1}, 413),
    ],
    ids=["forged", "unsigned", "stale", "future", "oversized"],
)
def test_bad_deliveries_start_nothing(
    hooked: dict[str, Any], receiver: Receiver, caplog: pytest.LogCaptureFixture, fault: dict[str, Any], status: int
) -> None:
    emu = hooked["emu"]
    _finished_run(emu, "r1")
    sent = emu.exa.deliver_webhook(receiver.hook_url(), SECRET, MON, "r1", **fault)
    assert sent["status"] == status
    assert SECRET not in json.dumps(sent["body"]) and "r1" not in json.dumps(sent["body"])  # nothing to learn
    assert _events(hooked["asset_id"]) == []
    assert SECRET not in caplog.text


def test_a_replayed_event_is_409_and_starts_nothing_more(hooked: dict[str, Any], receiver: Receiver) -> None:
    emu = hooked["emu"]
    _finished_run(emu, "r1")
    first = emu.exa.deliver_webhook(receiver.hook_url(), SECRET, MON, "r1")
    assert first["status"] == 200
    again = emu.exa.deliver_webhook(receiver.hook_url(), SECRET, replay=first["event_id"])
    assert again["status"] == 409
    assert len(_events(hooked["asset_id"])) == 1


def test_a_retried_delivery_with_a_new_event_id_registers_nothing_twice(
    hooked: dict[str, Any], receiver: Receiver
) -> None:
    emu = hooked["emu"]
    _finished_run(emu, "r1")
    assert emu.exa.deliver_webhook(receiver.hook_url(), SECRET, MON, "r1")["body"]["status"] == "delivered"
    retry = emu.exa.deliver_webhook(receiver.hook_url(), SECRET, MON, "r1")
    assert retry["status"] == 200 and retry["body"] == {"status": "duplicate", "asset_events": 0}
    assert len(_events(hooked["asset_id"])) == 1


@pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="the delivery record lives in Airflow 3.3's asset state store")
def test_losing_the_race_to_insert_the_first_record_retries_and_registers_nothing_twice(
    hooked: dict[str, Any], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another API-server process registers the run between this one's locked read (no record row yet)
    and its insert: the insert fails on the row's key, the transaction is retried, and the retry finds
    the run in the record (the production test races real processes on PostgreSQL)."""
    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.utils.session import create_session

    from airflow_monid._exa.webhooks import record_value
    from airflow_monid.plugins import exa_webhooks

    emu = hooked["emu"]
    _finished_run(emu, "r1")
    reads: list[Any] = []

    def parse_then_lose_the_race(value: Any) -> dict[str, Any]:
        reads.append(value)
        if len(reads) == 1:  # the other process commits the record after this one read none
            with create_session() as other:
                other.add(
                    AssetStateStoreModel(
                        asset_id=hooked["asset_id"],
                        key=record_key("search", MON),
                        value=json.dumps(record_value({"r1": "webhook"})),
                        last_updated_by_kind="api",
                    )
                )
        return parse_record(value)

    monkeypatch.setattr(exa_webhooks, "parse_record", parse_then_lose_the_race)
    sent = emu.exa.deliver_webhook(receiver.hook_url(), SECRET, MON, "r1")
    assert sent["status"] == 200 and sent["body"] == {"status": "duplicate", "asset_events": 0}
    assert reads[0] is None and len(reads) == 2  # read no row, lost the insert, read the winner's row
    assert _events(hooked["asset_id"]) == []


def test_an_unknown_monitor_or_connection_starts_nothing(hooked: dict[str, Any], receiver: Receiver) -> None:
    emu = hooked["emu"]
    emu.exa.add_monitor("mon_nobody_watches")
    emu.exa.add_run("mon_nobody_watches", run_id="x1", status="completed")
    sent = emu.exa.deliver_webhook(receiver.hook_url(), SECRET, "mon_nobody_watches", "x1")
    assert sent["status"] == 404
    _finished_run(emu, "r1")
    # A connection without a secret (exa_default) or none at all: the answer of a wrong signature.
    for conn_id in ("exa_default", "no_such_connection"):
        assert emu.exa.deliver_webhook(receiver.hook_url(conn_id), SECRET, MON, "r1")["status"] == 401
    assert _events(hooked["asset_id"]) == []


def test_other_events_and_statuses_are_acknowledged_without_an_asset_event(
    hooked: dict[str, Any], receiver: Receiver
) -> None:
    emu = hooked["emu"]
    emu.exa.add_run(MON, run_id="r_running", status="running", polls_to_finish=None)
    created = emu.exa.deliver_webhook(receiver.hook_url(), SECRET, MON, "r_running", event_type="monitor.run.created")
    assert created["status"] == 202
    emu.exa.add_run(MON, run_id="r_failed", status="failed")
    failed = emu.exa.deliver_webhook(receiver.hook_url(), SECRET, MON, "r_failed")  # the watcher emits completed only
    assert failed["status"] == 202
    assert _events(hooked["asset_id"]) == []


# --- dedupe with the watcher's poll -------------------------------------------------------------------


class DbStore:
    """The watcher's ``asset_state_store`` as Airflow 3.3's triggerer serves it: rows of the asset."""

    def __init__(self, asset_id: int) -> None:
        self.asset_id = asset_id

    async def aget(self, key: str, default: Any = None) -> Any:
        from airflow.models.asset_state_store import AssetStateStoreModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            row = session.scalar(
                select(AssetStateStoreModel).where(
                    AssetStateStoreModel.asset_id == self.asset_id, AssetStateStoreModel.key == key
                )
            )
            return json.loads(row.value) if row is not None else default

    async def aset(self, key: str, value: Any) -> None:
        from airflow.models.asset_state_store import AssetStateStoreModel
        from airflow.utils.session import create_session

        with create_session() as session:
            session.merge(AssetStateStoreModel(asset_id=self.asset_id, key=key, value=json.dumps(value)))


class Stepper(Driver):
    """The watcher tests' driver, one cycle per poll, without the acknowledgement grace (no clock)."""

    def __init__(self, watcher: ExaMonitorRunWatcher, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(watcher, monkeypatch)
        monkeypatch.setattr(_watermark, "ACK_GRACE", 0.0)


def _hooked_watcher(hooked: dict[str, Any]) -> ExaMonitorRunWatcher:
    w = ExaMonitorRunWatcher(monitor_id=MON, exa_conn_id=CONN, poll_interval=30)
    if AIRFLOW_V_3_3_PLUS:
        w.asset_state_store = DbStore(hooked["asset_id"])  # type: ignore[assignment]
    return w


def _deliver_off_loop(emu: Emulator, url: str, run_id: str) -> dict[str, Any]:
    return emu.exa.deliver_webhook(url, SECRET, MON, run_id)


@pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="the delivery record lives in Airflow 3.3's asset state store")
async def test_a_delivery_then_the_poll_of_the_same_run_make_one_asset_event(
    hooked: dict[str, Any], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = hooked["emu"]
    d = await Stepper(_hooked_watcher(hooked), monkeypatch).start()
    assert d.waits == [WEBHOOK_POLL_INTERVAL]  # a webhook is configured: the slow safety-net interval
    emu.exa.add_run(MON, run_id="r1", status="running", polls_to_finish=None)
    assert await d.cycle() == []
    emu.exa.finish_run(MON, "r1")
    sent = await asyncio.to_thread(_deliver_off_loop, emu, receiver.hook_url(), "r1")
    assert sent["body"]["status"] == "delivered"
    assert await d.cycle() == []  # the poll sees r1 completed, and the record says it is delivered
    # A run whose delivery was lost is caught by the poll...
    emu.exa.add_run(MON, run_id="r2", status="running", polls_to_finish=None)
    assert await d.cycle() == []
    emu.exa.finish_run(MON, "r2")
    assert [e["run_id"] for e in await d.cycle()] == ["r2"]
    # ...and its late delivery then registers nothing.
    late = await asyncio.to_thread(_deliver_off_loop, emu, receiver.hook_url(), "r2")
    assert late["status"] == 200 and late["body"] == {"status": "duplicate", "asset_events": 0}
    await d.stop()
    runs = [e["payload"]["run_id"] for e in _events(hooked["asset_id"])]
    assert runs == ["r1"]  # the webhook's; r2's came from the trigger (stored by the triggerer, not here)
    record = parse_record(await DbStore(hooked["asset_id"]).aget(record_key("search", MON)))
    assert record["r1"] == "webhook" and record["r2"].startswith("poll:")


async def test_without_a_webhook_secret_the_watcher_polls_at_its_interval(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connections.exa.add_monitor(MON)
    w = ExaMonitorRunWatcher(monitor_id=MON, poll_interval=30)
    d = await Stepper(w, monkeypatch).start()
    await d.cycle()
    await d.stop()
    assert d.waits == [30.0, 30.0]
    fast = ExaMonitorRunWatcher(monitor_id=MON, poll_interval=30, webhook_poll_interval=120)
    assert fast.interval(True) == 120 and fast.interval(False) == 30
    assert "webhook_poll_interval" not in w.serialize()[1]  # existing watchers keep their hash


def test_the_webhook_secret_never_shows_in_the_hooks_repr_or_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_monid.hooks.exa import ExaHook

    monkeypatch.setenv("AIRFLOW_CONN_EXA_SECRETIVE", exa_conn("http://127.0.0.1:9", webhook_secret=SECRET))
    hook = ExaHook("exa_secretive")
    assert hook.webhook_secret() == SECRET
    assert SECRET not in repr(vars(hook)) and SECRET not in repr(hook.connection_extras)
    assert EXA_KEY not in repr(vars(hook))


# --- the shared poll ----------------------------------------------------------------------------------


def test_watchers_of_one_monitor_share_a_stream_key_and_others_do_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exa_triggers, "SHARED_POLL", False)
    assert ExaMonitorRunWatcher(monitor_id=MON).shared_stream_key() is None  # the switch turns sharing off
    monkeypatch.setattr(exa_triggers, "SHARED_POLL", True)
    a = ExaMonitorRunWatcher(monitor_id=MON, poll_interval=30)
    b = ExaMonitorRunWatcher(monitor_id=MON, poll_interval=30, statuses=["failed"])
    other = ExaMonitorRunWatcher(monitor_id="mon_other", poll_interval=30)
    if not AIRFLOW_V_3_3_PLUS:
        assert a.shared_stream_key() is None
        return
    assert a.shared_stream_key() == b.shared_stream_key() is not None
    assert other.shared_stream_key() != a.shared_stream_key()


@pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="shared streams are Airflow 3.3+")
async def test_ten_watchers_on_one_shared_stream_cost_one_listing_per_interval(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The triggerer's SharedStreamManager fans one open_shared_stream out to ten filters."""
    from airflow.triggers.shared_stream import SharedStreamManager

    emu = connections
    emu.exa.add_monitor(MON)
    emu.exa.add_run(MON, run_id="r1", status="running", polls_to_finish=None)
    ticks = asyncio.Queue[None]()

    async def sleep(seconds: float) -> None:
        await ticks.get()

    monkeypatch.setattr(exa_triggers, "_watcher_sleep", sleep)
    monkeypatch.setattr(_watermark, "ACK_GRACE", 0.0)
    monkeypatch.setattr(exa_triggers, "SHARED_POLL", True)
    watchers = [ExaMonitorRunWatcher(monitor_id=MON, poll_interval=30) for _ in range(10)]
    manager = SharedStreamManager()
    events: dict[int, list[str]] = {i: [] for i in range(10)}

    async def consume(i: int, w: ExaMonitorRunWatcher) -> None:
        stream = manager.subscribe(trigger_id=i, trigger=w, key=w.shared_stream_key())
        async for event in w.filter_shared_stream(stream):
            events[i].append(event.payload["run_id"])

    tasks = [asyncio.ensure_future(consume(i, w)) for i, w in enumerate(watchers)]
    listings = f"/monitors/{MON}/runs"
    await _until(lambda: len(emu.requests(path=listings)) >= 1)
    emu.exa.finish_run(MON, "r1")
    for _ in range(3):
        await ticks.put(None)
        await _until(lambda: ticks.empty())
    await _until(lambda: all(v == ["r1"] for v in events.values()))
    listed = len(emu.requests(path=listings))
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await manager.stop_all()
    assert 2 <= listed <= 4  # one listing per interval for all ten (four cycles at most), not ten each


async def _until(check: Any) -> None:
    for _ in range(2000):
        if check():
            return
        await asyncio.sleep(0)  # yield to the watchers' tasks (no clock involved)
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


def test_the_emulator_signs_as_documented(connections: Emulator) -> None:
    """The emulator's header is Exa's: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">."""
    import hashlib
    import hmac

    import httpx

    seen: dict[str, Any] = {}
    emu = connections
    emu.exa.add_monitor(MON)
    emu.exa.add_run(MON, run_id="r1", status="completed")

    def handler(request: httpx.Request) -> httpx.Response:
        seen["header"], seen["body"] = request.headers["Exa-Signature"], request.content
        return httpx.Response(200, json={})

    transport = httpx.MockTransport(handler)
    real_post = httpx.post

    def post(url: str, **kw: Any) -> httpx.Response:
        with httpx.Client(transport=transport) as client:
            return client.post(url, **kw)

    httpx.post = post  # type: ignore[assignment]
    try:
        emu.exa.deliver_webhook("http://receiver.invalid/hook", SECRET, MON, "r1")
    finally:
        httpx.post = real_post  # type: ignore[assignment]
    parts = dict(p.split("=", 1) for p in seen["header"].split(","))
    mac = hmac.new(SECRET.encode(), parts["t"].encode() + b"." + seen["body"], hashlib.sha256).hexdigest()
    assert parts["v1"] == mac and json.loads(seen["body"])["data"]["id"] == "r1"
    assert os.environ.get("AIRFLOW_CONN_EXA_DEFAULT")  # the connections fixture pointed exa_default here


# --- the example DAG ----------------------------------------------------------------------------------


def test_the_webhook_example_dag_fetches_the_delivered_run(dag_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_monid.testing.__main__ import seed_exa
    from airflow_monid.testing.helpers import asset_events
    from tests._support import EXAMPLE_DAGS, load_dag, xcoms

    emu = dag_env
    seed_exa(emu)
    (seeded,) = emu.exa.runs("mon_funding")
    monkeypatch.setenv("AIRFLOW_CONN_EXA_WEBHOOKS", exa_conn(emu.url, webhook_secret=SECRET))
    dag = load_dag(EXAMPLE_DAGS / "exa_monitor_webhook.py")
    (asset,) = dag.get_task("fetch_results").inlets
    (watcher_,) = asset.watchers
    trigger = watcher_.trigger
    assert isinstance(trigger, ExaMonitorRunWatcher) and trigger.exa_conn_id == "exa_webhooks"
    assert trigger.interval(True) == WEBHOOK_POLL_INTERVAL  # with the connection's secret: the safety net
    if AIRFLOW_V_3_3_PLUS:  # 3.0's dag.test() leaves the inlet asset inactive (see test_exa_watcher.py)
        dr = dag.test()
        assert dr.state == "success" and xcoms(dag.dag_id, dr.run_id)[("fetch_results", "return_value", -1)] == []
    payload = ExaMonitorRunWatcher(monitor_id="mon_funding")._event(_as_run(seeded))
    body = dag.get_task("fetch_results").python_callable

    class Inlets:
        def __getitem__(self, _asset: Any) -> list[Any]:
            return []

    summary = body(triggering_asset_events={asset.name: asset_events([payload])}, inlet_events=Inlets())
    assert summary == [
        {"run_id": seeded["id"], "count": 2, "urls": [f"https://news.example.com/mon_funding/{i}" for i in (1, 2)]}
    ]
