"""Exa monitor run -> DAG run: webhook versus polling, and what 10 watchers on one monitor cost.

Part 1, latency, on a real Airflow (api-server, scheduler, dag-processor, triggerer; SQLite,
LocalExecutor; tests/integration/cluster.py) with the emulator as Exa, in one run:

* **webhook**: the emulator signs and posts ``monitor.run.completed`` to the provider's receiver;
  latency = the DAG run's ``queued_at`` (its creation) minus the moment the delivery was sent;
* **polling**: the watcher at the default ``poll_interval`` (60 s); latency = the DAG run's creation
  minus the moment the run completed (runs end every ``--gap`` seconds, out of step with the polls).

Each DAG run is matched to the monitor run through its triggering asset events. Prints p50/p99
(nearest rank) and the maximum over ``--runs`` runs of each.

Part 2, cost, in-process: 10 watchers on one monitor for ``--seconds`` at a 1 s interval, each polling on its own
(``run()``, as on Airflow 3.0-3.2) and through one shared stream (Airflow 3.3+'s
``SharedStreamManager``), the emulator counting the listings; scaled to requests per hour at the
default interval (60 s) and at the webhook safety-net interval (900 s).

Run: .venv/bin/python benchmarks/exa_webhook_latency.py [--runs 50] [--gap 7] [--skip-cluster]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from airflow_monid.testing import Emulator
from tests._support import EXA_KEY, FAST_EXTRAS

SECRET = "whsec_bench_webhook_secret_0123456789"
DAGS = {
    "bench_webhook": ("mon_bench_hook", "exa_bench_hook"),
    "bench_polling": ("mon_bench_poll", "exa_bench_poll"),
}


def _dag_file() -> str:
    parts = ["import pendulum", "from airflow.sdk import DAG, Asset, AssetWatcher, task", ""]
    parts.append("from airflow_monid.triggers.exa import ExaMonitorRunWatcher")
    for dag_id, (monitor, conn) in DAGS.items():
        parts.append(
            textwrap.dedent(
                f"""
                with DAG(
                    "{dag_id}",
                    schedule=[Asset("exa-monitor://{monitor}", watchers=[AssetWatcher(
                        name="{dag_id}", trigger=ExaMonitorRunWatcher(monitor_id="{monitor}", exa_conn_id="{conn}"))])],
                    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
                    catchup=False,
                ):
                    @task
                    def noop():
                        return None

                    noop()
                """
            )
        )
    return "\n".join(parts)


def _percentiles(values: list[float]) -> str:
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]

    return (
        f"n={len(ordered)} p50 {rank(50):.2f} s, p99 {rank(99):.2f} s, max {ordered[-1]:.2f} s, "
        f"mean {statistics.fmean(ordered):.2f} s"
    )


def _created(c: Any, dag_id: str) -> dict[str, float]:
    """monitor run id -> epoch seconds of the creation of the DAG run its asset event triggered."""
    rows = c.sql(
        "SELECT dr.queued_at AS queued_at, ae.extra AS extra FROM dag_run dr "
        "JOIN dagrun_asset_event dae ON dae.dag_run_id = dr.id JOIN asset_event ae ON ae.id = dae.event_id "
        "WHERE dr.dag_id = ?",
        (dag_id,),
    )
    out: dict[str, float] = {}
    for r in rows:
        extra = json.loads(r["extra"]) if isinstance(r["extra"], str) else r["extra"]
        run_id = ((extra or {}).get("payload") or {}).get("run_id")
        queued = datetime.fromisoformat(str(r["queued_at"])).replace(tzinfo=UTC).timestamp()
        if run_id and (run_id not in out or queued < out[run_id]):
            out[run_id] = queued
    return out


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(what)


def latency(runs: int, gap: float) -> None:
    from tests.integration.cluster import AirflowCluster

    emu = Emulator(exa_api_key=EXA_KEY).start()
    home = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    dags = home / "dags"
    dags.mkdir()
    (dags / "bench_dags.py").write_text(_dag_file())
    extra = {**FAST_EXTRAS, "timeout": 10}
    env = {
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "True",
        "AIRFLOW_CONN_EXA_BENCH_HOOK": json.dumps(
            {"conn_type": "exa", "host": emu.url, "password": EXA_KEY, "extra": {**extra, "webhook_secret": SECRET}}
        ),
        "AIRFLOW_CONN_EXA_BENCH_POLL": json.dumps(
            {"conn_type": "exa", "host": emu.url, "password": EXA_KEY, "extra": extra}
        ),
    }
    for monitor, _ in DAGS.values():
        emu.exa.add_monitor(monitor)
        emu.exa.add_run(monitor, run_id=f"{monitor}_base", status="completed", created_at=time.time() - 60)
    c = AirflowCluster(home, dags, env)
    try:
        c.start(timeout=300)
        for dag_id, (monitor, _) in DAGS.items():
            c.wait_dag(dag_id, timeout=180)
            _wait(lambda m=monitor: emu.requests("GET", f"/monitors/{m}/runs"), 180, f"{dag_id}'s watcher")
        url = f"{c.base_url}/monid/api/v1/exa/webhooks/exa_bench_hook"

        sent: dict[str, float] = {}
        for i in range(runs):
            run_id = f"hook_{i:03d}"
            emu.exa.add_run("mon_bench_hook", run_id=run_id, status="running", polls_to_finish=None)
            emu.exa.finish_run("mon_bench_hook", run_id)
            answer = emu.exa.deliver_webhook(url, SECRET, "mon_bench_hook", run_id)
            assert answer["status"] == 200, answer
            sent[run_id] = answer["sent_at"]
            # One at a time: the next delivery once this one's DAG run exists.
            _wait(lambda r=run_id: r in _created(c, "bench_webhook"), 120, f"the DAG run of {run_id}")
        created = _created(c, "bench_webhook")
        print("webhook (delivery -> DAG run created):", _percentiles([created[r] - t for r, t in sent.items()]))

        ended: dict[str, float] = {}
        for i in range(runs):
            run_id = f"poll_{i:03d}"
            emu.exa.add_run("mon_bench_poll", run_id=run_id, status="running", polls_to_finish=None)
            emu.exa.finish_run("mon_bench_poll", run_id)
            ended[run_id] = time.time()
            time.sleep(gap)  # the pacing of the runs ending (the benchmark's input), not a synchronisation
        # Airflow's asset queue can hold events that arrive while a DAG run is being created until
        # the next event (apache/airflow#56050): unmeasured runs keep ending until every measured
        # run has its DAG run, as a live monitor's next runs would.
        deadline = time.monotonic() + 900
        tail = 0
        while not set(ended) <= set(_created(c, "bench_polling")):
            if time.monotonic() > deadline:
                raise TimeoutError("the polled DAG runs")
            emu.exa.add_run("mon_bench_poll", run_id=f"tail_{tail:03d}", status="running", polls_to_finish=None)
            emu.exa.finish_run("mon_bench_poll", f"tail_{tail:03d}")
            tail += 1
            time.sleep(gap)  # pacing, as above
        created = _created(c, "bench_polling")
        late = sum(1 for r, t in ended.items() if created[r] - t > 75)
        print(f"polling: {tail} unmeasured runs ended afterwards; {late} measured run(s) waited past one interval")
        print(
            "polling at 60 s (run completed -> DAG run created):",
            _percentiles([created[r] - t for r, t in ended.items()]),
        )
    finally:
        c.stop()
        emu.stop()


async def cost(seconds: float, interval: float = 1.0) -> None:
    """Ten watchers for ``seconds`` at ``interval`` (a scaled-down 60 s), each mode; listings counted."""
    from airflow_monid._exa import watermark as _watermark
    from airflow_monid.triggers import exa as exa_triggers
    from airflow_monid.triggers.exa import WEBHOOK_POLL_INTERVAL, ExaMonitorRunWatcher

    exa_triggers.SHARED_POLL = True  # the default; set here so that the measurement says what it measures

    emu = Emulator(exa_api_key=EXA_KEY).start()
    os.environ["AIRFLOW_CONN_EXA_DEFAULT"] = json.dumps(
        {"conn_type": "exa", "host": emu.url, "password": EXA_KEY, "extra": FAST_EXTRAS}
    )
    _watermark.ACK_GRACE = 0.0
    results: dict[str, float] = {}
    try:
        for mode in ("standalone (3.0-3.2)", "shared stream (3.3+)"):
            emu.reset()
            emu.exa.add_monitor("mon_cost")
            watchers = [ExaMonitorRunWatcher(monitor_id="mon_cost", poll_interval=interval) for _ in range(10)]
            manager = None
            if mode.startswith("standalone"):
                tasks = [asyncio.ensure_future(_drain(w.run())) for w in watchers]
            else:
                from airflow.triggers.shared_stream import SharedStreamManager

                manager = SharedStreamManager()
                streams = [
                    manager.subscribe(trigger_id=i, trigger=w, key=w.shared_stream_key())
                    for i, w in enumerate(watchers)
                ]
                tasks = [
                    asyncio.ensure_future(_drain(w.filter_shared_stream(s)))
                    for w, s in zip(watchers, streams, strict=True)
                ]
            await asyncio.sleep(seconds)  # the measurement window
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if manager is not None:
                await manager.stop_all()
            results[mode] = len(emu.requests("GET", "/monitors/mon_cost/runs")) / (seconds / interval)
    finally:
        emu.stop()
    for mode, per_interval in results.items():
        print(
            f"10 watchers on one monitor, {mode}: {per_interval:.1f} listing(s) per interval -> "
            f"{per_interval * 3600 / 60:.0f} requests/hour at the default 60 s, "
            f"{per_interval * 3600 / WEBHOOK_POLL_INTERVAL:.0f} at {WEBHOOK_POLL_INTERVAL:.0f} s (webhook safety net)"
        )


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--gap", type=float, default=7.0, help="seconds between polled runs ending")
    parser.add_argument("--seconds", type=float, default=12.0, help="the cost part's measurement window")
    parser.add_argument("--skip-cluster", action="store_true", help="only the in-process cost part")
    args = parser.parse_args()
    asyncio.run(cost(args.seconds))
    if not args.skip_cluster:
        latency(args.runs, args.gap)


if __name__ == "__main__":
    main()
