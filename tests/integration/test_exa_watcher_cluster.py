"""ExaMonitorRunWatcher on a real Airflow 3.3 cluster: monitor runs become DAG runs, none missed.

The DAG ``exa_watcher_it`` (tests/integration/dags/exa_watcher_it.py) exists only while this test
has written its flag file. Runs are created and completed on the session emulator through its
``/_emulator`` control surface; every wait polls a condition (DAG runs, the asset state row) with
a deadline, and nothing is timed.
"""

from __future__ import annotations

import collections
import contextlib
import json
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.integration.cluster import AirflowCluster

pytestmark = pytest.mark.integration

DAG_ID = "exa_watcher_it"
MON = "mon_watch_it"
STATE_KEY = f"search:{MON}"


def _control(emu: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{emu.url}/_emulator/{path}", json=body, timeout=10)
    r.raise_for_status()
    return r.json()


def _add_run(emu: Any, run_id: str, status: str, minutes_ago: float) -> datetime:
    when = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    created = when.isoformat()
    _control(
        emu,
        "exa/runs",
        {"monitor_id": MON, "run_id": run_id, "status": status, "created_at": created, "polls_to_finish": None},
    )
    return when


def _finish(emu: Any, run_id: str) -> None:
    _control(emu, "exa/runs/finish", {"monitor_id": MON, "run_id": run_id, "status": "completed"})


def _wait(c: AirflowCluster, what: str, check: Callable[[], Any], timeout: float = 180, alive: bool = True) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if alive:  # False while the test itself has killed a component
            c.check_alive()
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.5)  # polling interval of a condition check, not a synchronisation


def _dag_runs(c: AirflowCluster) -> list[dict[str, Any]]:
    r = c.api.get(f"/dags/{DAG_ID}/dagRuns", params={"limit": 100, "order_by": "run_after"})
    return r.json()["dag_runs"] if r.status_code == 200 else []


def _triggering_run_ids(c: AirflowCluster, dag_run_id: str) -> list[str]:
    r = c.api.get(f"/dags/{DAG_ID}/dagRuns/{dag_run_id}/upstreamAssetEvents")
    r.raise_for_status()
    return [((e.get("extra") or {}).get("payload") or {}).get("run_id") for e in r.json()["asset_events"]]


def _finished(c: AirflowCluster) -> dict[str, dict[str, Any]]:
    """dag run id -> {"events": run ids of its triggering events, "record": the task's XCom}, once all ended."""
    runs = _dag_runs(c)
    if any(r["state"] not in ("success", "failed") for r in runs):
        return {}
    out = {}
    for r in runs:
        assert r["state"] == "success", f"DAG run {r['dag_run_id']} failed: {c.task_states(DAG_ID, r['dag_run_id'])}"
        out[r["dag_run_id"]] = {
            "events": _triggering_run_ids(c, r["dag_run_id"]),
            "record": c.xcom(DAG_ID, r["dag_run_id"], "record"),
        }
    return out


def _wait_delivered(c: AirflowCluster, expected: set[str], alive: bool = True) -> dict[str, dict[str, Any]]:
    def check() -> dict[str, dict[str, Any]] | None:
        done = _finished(c)
        named = {run_id for d in done.values() for run_id in d["events"]}
        return done if expected <= named else None

    return _wait(c, f"DAG runs triggered by {sorted(expected)}", check, alive=alive)


def _state(c: AirflowCluster) -> dict[str, Any] | None:
    rows = c.sql("SELECT value FROM asset_state_store WHERE key = ?", (STATE_KEY,))
    if not rows:
        return None
    value = rows[0]["value"]
    return json.loads(value) if isinstance(value, str) else value


def _emitted(c: AirflowCluster) -> list[str]:
    """Run ids of every asset event the watcher produced, repeats included, oldest first."""
    rows = c.sql("SELECT extra FROM asset_event ORDER BY id")
    extras = [json.loads(r["extra"]) if isinstance(r["extra"], str) else r["extra"] for r in rows]
    return [((e or {}).get("payload") or {}).get("run_id") for e in extras if (e or {}).get("from_trigger")]


def _settled(c: AirflowCluster) -> bool:
    """No DAG run queued or running, and no asset event waiting for one."""
    if c.sql("SELECT COUNT(*) AS n FROM asset_dag_run_queue")[0]["n"]:
        return False
    return all(r["state"] in ("success", "failed") for r in _dag_runs(c))


def _watcher_rows(c: AirflowCluster) -> list[dict[str, Any]]:
    return [t for t in c.trigger_assignments() if t["classpath"].endswith("ExaMonitorRunWatcher")]


USE_JOB_SCHEDULE = "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"


@contextlib.contextmanager
def asset_scheduling(c: AirflowCluster, dag_id: str = DAG_ID) -> Iterator[None]:
    """Asset-triggered DAG runs of ``dag_id`` for the duration of the test.

    The harness turns ``[scheduler] use_job_schedule`` off (cron example DAGs would start by
    themselves), and that also stops the scheduler from creating asset-triggered DAG runs. So: pause
    every other DAG, restart the scheduler with it on, and undo both afterwards.
    """
    dags = c.api.get("/dags", params={"limit": 1000}).json()["dags"]
    unpaused = [d["dag_id"] for d in dags if not d["is_paused"] and d["dag_id"] != dag_id]
    for other in unpaused:
        assert c.api.patch(f"/dags/{other}", json={"is_paused": True}).status_code == 200
    before = c.env.get(USE_JOB_SCHEDULE)
    c.env[USE_JOB_SCHEDULE] = "True"
    c.restart_component("scheduler", sig=signal.SIGTERM)
    try:
        yield
    finally:
        if before is None:
            c.env.pop(USE_JOB_SCHEDULE, None)
        else:
            c.env[USE_JOB_SCHEDULE] = before
        c.restart_component("scheduler", sig=signal.SIGTERM)
        for other in unpaused:
            c.api.patch(f"/dags/{other}", json={"is_paused": False})


def test_monitor_runs_become_dag_runs_across_a_triggerer_kill_and_a_pause(
    airflow_cluster: AirflowCluster, cluster_emulator: Any
) -> None:
    c, emu = airflow_cluster, cluster_emulator
    flag = c.home / "exa_watcher_it.json"
    _control(emu, "exa/monitors", {"monitor_id": MON, "name": "Watcher integration monitor"})
    _add_run(emu, "pre", "completed", minutes_ago=180)  # ended before the watcher existed: never emitted
    r1_created = _add_run(emu, "r1", "running", minutes_ago=120)  # in flight when the watcher starts
    with asset_scheduling(c):
        _run_scenario(c, emu, flag, r1_created)


def _run_scenario(c: AirflowCluster, emu: Any, flag: Any, r1_created: datetime) -> None:
    flag.write_text(json.dumps({"monitor_id": MON, "poll_interval": 2}))
    try:
        c.wait_dag(DAG_ID, timeout=120)
        # The watcher has run a cycle and committed its starting point in the asset's state store.
        state = _wait(c, "the watcher's first state", lambda: _state(c), timeout=120)
        # Its watermark is the run still in flight; "pre" lies below it, settled.
        r1_ms = r1_created.replace(microsecond=r1_created.microsecond // 1000 * 1000)  # Exa's precision
        assert datetime.fromisoformat(state["watermark"]) == r1_ms and state["emitted"] == []

        # 1. Three runs complete, one after another: DAG runs whose triggering events name exactly them.
        _finish(emu, "r1")
        _wait_delivered(c, {"r1"})
        _add_run(emu, "r2", "running", minutes_ago=1)
        _finish(emu, "r2")
        _wait_delivered(c, {"r2"})
        _add_run(emu, "r3", "completed", minutes_ago=0.5)
        _wait(c, "the watcher to emit r3", lambda: "r3" in _emitted(c))
        # 2. SIGKILL the triggerer at once: r3 is most likely not committed yet (10 s ack grace).
        c.kill_component("triggerer")
        first = _wait_delivered(c, {"r1", "r2", "r3"}, alive=False)
        assert sorted(run_id for d in first.values() for run_id in d["events"]) == ["r1", "r2", "r3"]
        assert sorted(run_id for d in first.values() for run_id in d["record"]["runs"]) == ["r1", "r2", "r3"]

        # Runs end while no triggerer runs; one is still in flight when it returns.
        _add_run(emu, "r4", "completed", minutes_ago=0.4)
        _add_run(emu, "r5", "completed", minutes_ago=0.3)
        _add_run(emu, "r6", "running", minutes_ago=0.2)
        c.start_component("triggerer", wait=True)
        _wait(c, "the catch-up of r4 and r5", lambda: {"r4", "r5"} <= set(_emitted(c)))
        # A burst of asset events can wait for the next one before a DAG run takes it (Airflow's
        # queue race, apache/airflow#56050 and #62501): let the scheduler settle before r6 ends.
        _wait(c, "the scheduler to settle", lambda: _settled(c))
        _finish(emu, "r6")
        _wait_delivered(c, {"r4", "r5", "r6"})
        _wait(c, "r6 committed", lambda: "r6" in ((_state(c) or {}).get("emitted") or []))

        # 3. Pause: the watcher goes; a run ends; unpause: it is caught up.
        assert c.api.patch(f"/dags/{DAG_ID}", json={"is_paused": True}).status_code == 200
        _wait(c, "the watcher's trigger to go", lambda: not _watcher_rows(c), timeout=120)
        _add_run(emu, "r7", "completed", minutes_ago=0.1)
        assert c.api.patch(f"/dags/{DAG_ID}", json={"is_paused": False}).status_code == 200
        final = _wait_delivered(c, {"r7"})

        expected = [f"r{i}" for i in range(1, 8)]
        events = [run_id for d in final.values() for run_id in d["events"]]
        kept = [run_id for d in final.values() for run_id in d["record"]["runs"]]
        assert set(events) == set(expected)  # none missed, "pre" never, nothing foreign
        assert sorted(kept) == expected  # every repeat removed by the helper, each run handled once
        for d in final.values():  # the task saw exactly its DAG run's events
            assert sorted(d["record"]["raw"]) == sorted(d["events"])
        repeats = {k: n for k, n in collections.Counter(events).items() if n > 1}
        print(f"exa watcher: {len(final)} DAG runs, {len(events)} events, repeats {repeats}, all {_emitted(c)}")
        # The real triggerer commits what it emitted (one cycle and the ack grace later).
        _wait(c, "r7 committed to the asset state", lambda: "r7" in ((_state(c) or {}).get("emitted") or []))
    finally:
        c.api.patch(f"/dags/{DAG_ID}", json={"is_paused": True})
        flag.unlink(missing_ok=True)
