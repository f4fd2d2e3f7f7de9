"""Signed Exa webhooks on a real Airflow 3.3 cluster: a delivery starts the DAG; bad ones start nothing;
a delivery and a poll of the same run start one DAG run.

The DAG ``exa_webhook_it`` is written into the cluster's DAGs folder by this test (and removed after);
its watcher follows ``mon_webhook_it`` through connection ``exa_webhook_it``, created through the REST
API with a ``webhook_secret``, and polls every 3 s (its safety-net interval here). The emulator signs
and posts the deliveries to the API server's receiver. Every wait polls a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests._support import EXA_KEY, FAST_EXTRAS
from tests.integration.cluster import AirflowCluster
from tests.integration.test_exa_watcher_cluster import _wait, asset_scheduling

pytestmark = pytest.mark.integration

DAG_ID = "exa_webhook_it"
MON = "mon_webhook_it"
CONN = "exa_webhook_it"
SECRET = "whsec_it_LEAKCANARY_webhook_3Jk8Pq1Wz6"


def dag_file(monitor: str = MON) -> str:
    """The DAG file, its watcher following ``monitor``."""
    return textwrap.dedent(
        f'''
    """exa_webhook_it: written by tests/integration/test_exa_webhook_cluster.py."""
    import pendulum
    from airflow.sdk import DAG, Asset, AssetWatcher, task

    from airflow_monid.triggers.exa import ExaMonitorRunWatcher

    runs = Asset(
        "exa-monitor://{monitor}",
        watchers=[
            AssetWatcher(
                name="{DAG_ID}",
                trigger=ExaMonitorRunWatcher(
                    monitor_id="{monitor}", exa_conn_id="{CONN}", poll_interval=1, webhook_poll_interval=3
                ),
            )
        ],
    )

    with DAG("{DAG_ID}", schedule=[runs], start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):

        @task
        def record(triggering_asset_events=None):
            return [e.extra["payload"]["run_id"] for evs in triggering_asset_events.values() for e in evs]

        record()
    '''
    )


@contextlib.contextmanager
def webhook_dag_on(c: AirflowCluster, emu: Any, monitor: str = MON) -> Iterator[AirflowCluster]:
    """``exa_webhook_it`` on cluster ``c``, its watcher following ``monitor``, unpaused with asset
    scheduling on, and its connection."""
    emu.exa.add_monitor(monitor, name="Webhook integration monitor")
    # Ended before the watcher starts: its baseline, so older runs are below its watermark.
    emu.exa.add_run(monitor, status="completed", created_at=time.time() - 600)
    body = {
        "connection_id": CONN,
        "conn_type": "exa",
        "host": emu.url,
        "password": EXA_KEY,
        "extra": json.dumps({**FAST_EXTRAS, "timeout": 10, "webhook_secret": SECRET}),
    }
    c.api.delete(f"/connections/{CONN}")
    assert c.api.post("/connections", json=body).status_code == 201
    path = c.dags_folder / "exa_webhook_it.py"
    path.write_text(dag_file(monitor))
    try:
        c.wait_dag(DAG_ID, timeout=120)
        with asset_scheduling(c, DAG_ID):
            yield c
    finally:
        c.api.patch(f"/dags/{DAG_ID}", json={"is_paused": True})
        path.unlink(missing_ok=True)
        c.api.delete(f"/connections/{CONN}")


@pytest.fixture
def webhook_dag(airflow_cluster: AirflowCluster, cluster_emulator: Any) -> Iterator[AirflowCluster]:
    with webhook_dag_on(airflow_cluster, cluster_emulator) as c:
        yield c


def _dag_runs(c: AirflowCluster) -> list[dict[str, Any]]:
    r = c.api.get(f"/dags/{DAG_ID}/dagRuns", params={"limit": 100})
    return r.json()["dag_runs"] if r.status_code == 200 else []


def event_runs(c: AirflowCluster, monitor: str = MON) -> list[str]:
    """The run id of every asset event of the monitor's asset, oldest first (repeats included)."""
    rows = c.sql(
        "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.name = ? ORDER BY e.id",
        (f"exa-monitor://{monitor}",),  # the name as written (Airflow normalises the uri to end with "/")
    )
    extras = [json.loads(r["extra"]) if isinstance(r["extra"], str) else r["extra"] for r in rows]
    return [((e or {}).get("payload") or {}).get("run_id") for e in extras]


def watcher_polled(emu: Any, monitor: str = MON) -> int:
    return len(emu.requests("GET", f"/monitors/{monitor}/runs"))


def test_signed_webhooks_start_the_dag_once_and_bad_ones_start_nothing(
    webhook_dag: AirflowCluster, cluster_emulator: Any
) -> None:
    c, emu = webhook_dag, cluster_emulator
    url = f"{c.base_url}/monid/api/v1/exa/webhooks/{CONN}"
    # The watcher is up and has taken its starting point (it polls the monitor).
    _wait(c, "the watcher's first poll", lambda: watcher_polled(emu) >= 1, timeout=120)

    # 1. Bad deliveries of a completed run the poll never emits (created below the watermark, r0):
    # whatever registers it can only be the receiver. Each is a 4xx and registers nothing.
    emu.exa.add_run(MON, run_id="r_bad", status="completed", created_at=time.time() - 1200)
    answers = {
        "forged": emu.exa.deliver_webhook(url, SECRET, MON, "r_bad", signature="wrong")["status"],
        "unsigned": emu.exa.deliver_webhook(url, SECRET, MON, "r_bad", signature="none")["status"],
        "stale": emu.exa.deliver_webhook(url, SECRET, MON, "r_bad", timestamp_offset=-600)["status"],
        "future": emu.exa.deliver_webhook(url, SECRET, MON, "r_bad", timestamp_offset=600)["status"],
        "oversized": emu.exa.deliver_webhook(url, SECRET, MON, "r_bad", pad_to_bytes=2_000_000)["status"],
    }
    emu.exa.add_monitor("mon_unknown_it")
    emu.exa.add_run("mon_unknown_it", run_id="x1", status="completed")
    answers["unknown monitor"] = emu.exa.deliver_webhook(url, SECRET, "mon_unknown_it", "x1")["status"]
    assert answers == {
        "forged": 401,
        "unsigned": 401,
        "stale": 401,
        "future": 401,
        "oversized": 413,
        "unknown monitor": 404,
    }
    polls = watcher_polled(emu)
    _wait(c, "two more polls after the bad deliveries", lambda: watcher_polled(emu) >= polls + 2)
    assert event_runs(c) == [] and _dag_runs(c) == []

    # 2. A valid delivery starts the DAG; its replay is refused; the poll that follows adds nothing.
    # The watcher's next listing is held while r1 ends and is delivered, then answered: that poll
    # sees r1 completed, as a poll racing a delivery would.
    emu.exa.add_run(MON, run_id="r1", status="running", polls_to_finish=None)
    held = emu.hold("GET", f"/monitors/{MON}/runs")
    held.wait_arrived()
    try:
        emu.exa.finish_run(MON, "r1")
        first = emu.exa.deliver_webhook(url, SECRET, MON, "r1")
        assert first["status"] == 200 and first["body"] == {"status": "delivered", "asset_events": 1}
        assert emu.exa.deliver_webhook(url, SECRET, replay=first["event_id"])["status"] == 409
        retried = emu.exa.deliver_webhook(url, SECRET, MON, "r1")  # Exa's retry: a new event id, same run
        assert retried["status"] == 200 and retried["body"]["status"] == "duplicate"
    finally:
        held.release()
    polls = watcher_polled(emu)
    _wait(c, "two more safety-net polls after r1's delivery", lambda: watcher_polled(emu) >= polls + 2)

    # 3. A run whose delivery comes after the poll emitted it: one event.
    emu.exa.add_run(MON, run_id="r2", status="running", polls_to_finish=None)
    emu.exa.finish_run(MON, "r2")
    _wait(c, "the poll to deliver r2", lambda: "r2" in event_runs(c))
    late = emu.exa.deliver_webhook(url, SECRET, MON, "r2")
    assert late["status"] == 200 and late["body"]["status"] == "duplicate"

    def settled() -> list[dict[str, Any]] | None:
        runs = _dag_runs(c)
        done = all(r["state"] in ("success", "failed") for r in runs)
        named = {x for r in runs for x in (c.xcom(DAG_ID, r["dag_run_id"], "record") or [])} if done else set()
        return runs if done and {"r1", "r2"} <= named else None

    runs = _wait(c, "the DAG runs of r1 and r2", settled)
    assert sorted(event_runs(c)) == ["r1", "r2"]  # one asset event per monitor run
    delivered = sorted(x for r in runs for x in c.xcom(DAG_ID, r["dag_run_id"], "record"))
    assert delivered == ["r1", "r2"]  # each in one DAG run, none twice
    assert all(r["state"] == "success" for r in runs)
    assert "r_bad" not in event_runs(c) and "x1" not in event_runs(c)
    logs = "".join(p.read_text(errors="replace") for p in c.log_files() if p.is_file())
    assert SECRET not in logs
