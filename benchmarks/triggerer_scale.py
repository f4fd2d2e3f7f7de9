"""One real triggerer holding N deferred Monid runs: the shared status poller against its baselines.

For each N and each mode it starts a real Airflow 3.3 (api-server, scheduler, dag-processor,
triggerer; SQLite, LocalExecutor) with ``benchmarks/scale_dags/bench_scale.py``: N mapped tasks that
start in the triggerer (``start_from_trigger``, so no worker start-up is measured, only the wait),
each waiting for its own run on ``benchmarks/_fake_monid.py`` - a minimal fast fake of the Monid
API, not the emulator, which would be the bottleneck at 1,000 requests per second. The fake's list
holds 5 % runs of other callers besides the ones waited for.

Modes, side by side in the same run:

* ``sleep``: a trigger that only sleeps with the same wake-ups (Airflow's own floor);
* ``per_run``: MonidRunTrigger with ``batch_status_polling: false`` (one GET per run per interval);
* ``batched``: MonidRunTrigger with the shared poller (the default).

Printed per N and mode: seconds until every trigger runs; missed polls (runs whose status went
unread for longer than the interval + 1 s during the window) and the longest such gap; triggerer
RSS growth over the idle triggerer and CPU (supervisor + runner) over a steady window; API requests per second and per
in-flight run per interval; completion-to-event latency p50/p99 on a sample of 50 runs completed one
by one; event-loop lag (p99/max of a 0.5 s sleeper in the triggerer); the triggerer's "blocked" and
"deadlocked" warnings. The Airflow limits that would otherwise decide the result are set and printed.

Run: .venv/bin/python benchmarks/triggerer_scale.py [--sizes 1000,3000,10000] [--modes sleep,per_run,batched]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.cluster import AirflowCluster, free_port  # noqa: E402

INTERVAL = 10.0
STEADY_SECONDS = 30.0
SAMPLE = 50
KEY = "mk_bench_key"

LIMITS = {
    "AIRFLOW__CORE__MAX_MAP_LENGTH": "20000",  # default 1024: a 10,000-way map fails to expand
    "AIRFLOW__TRIGGERER__CAPACITY": "20000",  # default 1000 triggers per triggerer
    "AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP": "2000",  # default 50 per loop: minutes to load
    "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "20000",  # default 16
    "AIRFLOW__CORE__PARALLELISM": "8",  # only the 50 sampled tasks resume on a worker
}


def _proc_stats(pids: list[int]) -> tuple[float, float]:
    """(RSS MiB, CPU seconds) summed over ``pids``."""
    rss = cpu = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        rss += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")) / 1024
        cpu += (int(stat[11]) + int(stat[12])) / tick
    return rss, cpu


def _probe(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"started": 0, "events": {}, "lags": []}


def _wait(predicate: Any, timeout: float, what: str, step: float = 0.5) -> float:
    """Seconds until ``predicate()``; the benchmark polls the probe file, nothing here is a test."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what} not reached in {timeout:.0f} s")
        time.sleep(step)
    return time.monotonic() - start


def run_one(n: int, mode: str, workdir: Path) -> dict[str, Any]:
    fake_port = free_port()
    fake = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "_fake_monid.py"), str(fake_port)])
    api = httpx.Client(base_url=f"http://127.0.0.1:{fake_port}", timeout=30)
    _wait(lambda: _fake_up(api), 30, "fake API", 0.1)
    created_at = api.post("/_ctl/setup", json={"n": n, "noise": n // 20}).json()["created_at"]
    home = workdir / f"{mode}-{n}"
    probe_file = home / "probe.json"
    conn = {"conn_type": "monid", "host": f"http://127.0.0.1:{fake_port}", "password": KEY}
    env = {
        **LIMITS,
        "BENCH_N": str(n),
        "BENCH_MODE": mode,
        "BENCH_INTERVAL": str(INTERVAL),
        "BENCH_END_TIME": str(time.time() + 3600),
        "BENCH_CREATED_AT": str(created_at),
        "BENCH_PROBE_FILE": str(probe_file),
        "AIRFLOW_CONN_MONID_DEFAULT": json.dumps(conn),
        "AIRFLOW_CONN_MONID_PER_RUN": json.dumps({**conn, "extra": {"batch_status_polling": False}}),
    }
    cluster = AirflowCluster(home, REPO / "benchmarks" / "scale_dags", env=env)
    result: dict[str, Any] = {"n": n, "mode": mode}
    try:
        cluster.start(timeout=240)
        cluster.wait_dag("bench_scale", timeout=180)
        idle_rss, _ = _proc_stats(cluster.pids("triggerer"))
        started = time.monotonic()
        cluster.trigger_dag("bench_scale")
        result["all_running_s"] = started_s = _wait(
            lambda: _probe(probe_file)["started"] >= n, 900, f"{n} triggers running"
        )
        del started_s
        result["ramp_s"] = time.monotonic() - started
        time.sleep(INTERVAL)  # one full interval so that every run is in its steady rhythm
        before = api.get("/_ctl/stats").json()
        api.get("/_ctl/gaps")  # starts the window
        rss0, cpu0 = _proc_stats(cluster.pids("triggerer"))
        t0 = time.time()
        time.sleep(STEADY_SECONDS)
        after = api.get("/_ctl/stats").json()
        gaps = api.get("/_ctl/gaps").json()["gaps"]
        rss1, cpu1 = _proc_stats(cluster.pids("triggerer"))
        wall = time.time() - t0
        requests = (after["list"] + after["single"]) - (before["list"] + before["single"])
        result.update(
            rss_growth_mib=max(rss0, rss1) - idle_rss,
            cpu_pct=100 * (cpu1 - cpu0) / wall,
            req_per_s=requests / wall,
            req_per_run_interval=requests / wall * INTERVAL / n,
            single_share=(after["single"] - before["single"]) / requests if requests else 0.0,
        )
        if mode != "sleep":
            # A missed poll: a run whose status went unread for longer than its interval (+1 s).
            result["missed"] = sum(1 for gap in gaps if gap > INTERVAL + 1)
            result["gap_max_s"] = max(gaps, default=0.0)
        lags = [lag for at, lag in _probe(probe_file)["lags"] if t0 <= at <= t0 + wall]
        result["lag_p99_s"] = _pct(lags, 99)
        result["lag_max_s"] = max(lags, default=0.0)
        if mode != "sleep":
            sample = [f"bench-{i}" for i in range(0, n, max(1, n // SAMPLE))][:SAMPLE]
            for run_id in sample:  # one by one, so completions fall at every phase of a poll cycle
                api.post("/_ctl/complete", json={"ids": [run_id]})
                time.sleep(INTERVAL / SAMPLE)
            indices = [int(r.split("-")[1]) for r in sample]
            _wait(
                lambda: all(str(i) in _probe(probe_file)["events"] for i in indices),
                INTERVAL * 6 + 60,
                "sample events",
            )
            done = api.get("/_ctl/stats").json()["completed_at"]
            events = _probe(probe_file)["events"]
            latencies = [events[str(i)] - done[f"bench-{i}"] for i in indices]
            result["latency_p50_s"] = _pct(latencies, 50)
            result["latency_p99_s"] = _pct(latencies, 99)
        log = cluster.log_path("triggerer").read_text(errors="replace")
        result["blocked"] = log.count("was blocked for")
        result["deadlocked"] = log.count("deadlocked")
    except Exception as exc:  # a mode that cannot hold N is a result too
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        cluster.stop()
        fake.kill()
        fake.wait()
    return result


def _fake_up(api: httpx.Client) -> bool:
    try:
        return api.get("/_ctl/stats").status_code == 200
    except httpx.HTTPError:
        return False


def _pct(values: list[float], pct: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def _row(r: dict[str, Any]) -> str:
    if "error" in r and "cpu_pct" not in r:
        return f"{r['n']:>6} {r['mode']:>8}  failed: {r['error']}"

    def f(key: str, fmt: str) -> str:
        value = r.get(key)
        return format(value, fmt) if isinstance(value, (int, float)) else "-"

    return (
        f"{r['n']:>6} {r['mode']:>8} {f('all_running_s', '9.1f')} {f('rss_growth_mib', '9.0f')} "
        f"{f('cpu_pct', '6.0f')} {f('req_per_s', '8.1f')} {f('req_per_run_interval', '9.3f')} "
        f"{f('latency_p50_s', '7.1f')} {f('latency_p99_s', '7.1f')} {f('lag_p99_s', '7.3f')} "
        f"{f('lag_max_s', '7.3f')} {f('missed', '6d')} {f('gap_max_s', '6.1f')} {f('blocked', '7d')} "
        f"{f('deadlocked', '6d')}" + (f"  ({r['error']})" if "error" in r else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,3000,10000")
    parser.add_argument("--modes", default="sleep,per_run,batched")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = args.modes.split(",")
    print("Airflow limits set:", ", ".join(f"{k.split('__', 2)[2].lower()}={v}" for k, v in LIMITS.items()))
    print(f"poll interval {INTERVAL:.0f} s; steady window {STEADY_SECONDS:.0f} s; latency sample {SAMPLE} runs")
    header = (
        "     N     mode  running_s  RSS+MiB  CPU%    req/s  req/run/i  lat_p50 lat_p99 lag_p99 lag_max missed "
        "gap_max blocked deadlk"
    )
    print(header, flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="triggerer-scale-") as tmp:
        for n in sizes:
            for mode in modes:
                result = run_one(n, mode, Path(tmp))
                results.append(result)
                print(_row(result), flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
