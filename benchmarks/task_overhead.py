"""The provider's per-task overhead: N mapped MonidRunOperator tasks against N bare ``httpx.post`` tasks.

One real Airflow 3.3 (api-server, scheduler, dag-processor, triggerer; SQLite, LocalExecutor, started by
``tests/integration/cluster.py``) and ``benchmarks/_fake_monid.py`` (a fast fake of the Monid API; sync
``POST /v1/run``, ``POST /v1/inspect``). Two DAGs in ``benchmarks/overhead_dags/``, run one after the
other in the same cluster (order ``--order``, default A then B):

* A ``overhead_monid``: ``MonidRunOperator.partial(...).expand(input=[{"i": 0}, ...])`` with the defaults
  (``validate_input``, durable run ledger, spend record, shared inspect cache); the ``monid_default``
  connection is stored in the metadata database, as in production, so the worker reads it through the
  Execution API;
* B ``overhead_bare``: a ``@task`` mapped N ways that makes the same ``POST /v1/run`` with ``httpx.post``
  and returns the run's output (A returns it too).

Printed for both and A/B: wall time from the DAG run's creation (``queued_at``) to its ``end_date``;
task duration p50/p95; CPU seconds per task of the scheduler's process group (scheduler, LocalExecutor
workers and, through their children's CPU, the supervisors and task processes they reaped) and of the
api-server; Execution-API calls per task; requests per task to the fake API, by path. Then the
Execution-API calls per task by route for A and B and their difference: what the provider adds.

Execution-API calls are counted from the api-server's access log (``HttpAccessLogMiddleware``: one
``request finished`` event per request, with method and path): the log's bytes written while one DAG
run was in flight, requests under ``/execution/`` only. Only task supervisors call it over HTTP here (the
triggerer and dag-processor use the in-process client); the benchmark's own REST polling is under
``/api/v2`` and not counted. A sanity check prints the ``/run`` calls (one per task start).

Before the measured runs, one unmeasured run of B warms the api-server up (its first Execution-API
requests take seconds: lazy imports); ``--no-warmup`` skips it. The api-server's milliseconds per
route (the access log's ``duration_us``) are summed too.

The cluster imports a copy of ``airflow_monid`` taken at start, not the checkout: in a shared checkout
a package edited or moved during the run made tasks fail to import their DAG file and wait a minute
for their reschedule (the run's ``/run`` calls beyond one per task are printed as a warning).

Bounded: the cluster start, each DAG run and the whole benchmark have deadlines (``--budget``, default
14 minutes); a DAG run that does not end in time is reported as such and the cluster is stopped.

Run: .venv/bin/python benchmarks/task_overhead.py [--tasks 200] [--order monid,bare]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.triggerer_scale import _pct  # noqa: E402
from tests.integration.cluster import AirflowCluster, free_port  # noqa: E402

KEY = "mk_bench_key"
DAGS = {"monid": "overhead_monid", "bare": "overhead_bare"}
LABEL = {"monid": "A monid", "bare": "B bare"}
SETTINGS = {
    "AIRFLOW__CORE__PARALLELISM": "8",  # the cluster's default: 8 LocalExecutor workers
    "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "1000",
    # Parsed once at start; no re-parse of both files every 10 s during the measurement.
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
}
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_FIELD = re.compile(r"""(?:^|\s)(method|path|status_code|duration_us)=(?:'([^']*)'|"([^"]*)"|(\S+))""")


# --------------------------------------------------------------------------- Execution-API counting


def route(path: str) -> str:
    """``/execution/xcoms/<dag>/<run>/<task>/run_id`` -> ``xcoms/{dag}/{run}/{task}/run_id`` etc."""
    parts = [unquote(p) for p in path[len("/execution/") :].split("/")]
    head = parts[0]
    if head == "task-instances" and len(parts) > 2 and _UUID.match(parts[1]):
        return "task-instances/{ti}/" + "/".join(parts[2:])
    if head == "xcoms" and len(parts) > 4:
        key = "/".join(parts[4:])
        if key.startswith("monid_spend."):
            key = "monid_spend.{run}" + ("/" + key.split("/", 1)[1] if "/" in key else "")
        return "xcoms/{dag}/{run}/{task}/" + key
    if head == "store" and len(parts) > 3 and parts[1] == "ti":
        return "store/ti/{ti}/" + "/".join(parts[3:])
    if head == "variables" and len(parts) > 1 and parts[1].startswith("monid_inspect_"):
        return "variables/monid_inspect_{digest}"
    return "/".join(parts)


def access_events(text: str) -> list[tuple[str, str, str, float]]:
    """(method, path, status, ms spent in the api-server) of every ``request finished`` event (console
    or JSON log lines)."""
    events = []
    for line in text.splitlines():
        if "request finished" not in line:
            continue
        fields: dict[str, str] = {}
        start = line.find("{")
        if start >= 0:
            try:
                data = json.loads(line[start:])
                fields = {k: str(data[k]) for k in ("method", "path", "status_code", "duration_us") if k in data}
            except ValueError:
                fields = {}
        if "path" not in fields:
            for m in _FIELD.finditer(line):
                fields[m.group(1)] = next(g for g in m.groups()[1:] if g is not None)
        if "path" in fields:
            micros = fields.get("duration_us", "")
            ms = int(micros) / 1000 if micros.isdigit() else 0.0
            events.append((fields.get("method", "?"), fields["path"], fields.get("status_code", "?"), ms))
    return events


def execution_calls(text: str) -> tuple[Counter[str], dict[str, float], Counter[str]]:
    """Execution-API calls by ``METHOD route``, the api-server's milliseconds by route, and the
    answers >= 400 by ``METHOD route -> status``."""
    calls: Counter[str] = Counter()
    millis: dict[str, float] = {}
    errors: Counter[str] = Counter()
    for method, path, status, ms in access_events(text):
        if not path.startswith("/execution/"):
            continue
        name = f"{method} {route(path)}"
        calls[name] += 1
        millis[name] = millis.get(name, 0.0) + ms
        if status.isdigit() and int(status) >= 400:
            errors[f"{name} -> {status}"] += 1
    return calls, millis, errors


# --------------------------------------------------------------------------------------- helpers


def _cpu(pids: list[int], children: bool) -> float:
    """CPU seconds of ``pids``; with ``children`` also of the children they have reaped."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        fields = stat[11:15] if children else stat[11:13]  # utime stime [cutime cstime]
        total += sum(int(f) for f in fields) / tick
    return total


def _wait(predicate: Any, timeout: float, what: str, step: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout:.0f} s")
        time.sleep(step)


def _fake_paths(api: httpx.Client) -> Counter[str]:
    return Counter(api.get("/_ctl/stats").json()["paths"])


def _fake_up(api: httpx.Client) -> bool:
    try:
        return api.get("/_ctl/stats").status_code == 200
    except httpx.HTTPError:
        return False


def _ts(value: str | None) -> float | None:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def snapshot_provider(dest: Path) -> Path:
    """Copy ``airflow_monid`` from the checkout: the cluster imports the copy (first on PYTHONPATH), so an
    edit or a move of the package by someone else during the run cannot break or mix the tasks' code."""
    shutil.copytree(REPO / "airflow_monid", dest / "airflow_monid", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def task_instances(cluster: AirflowCluster, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """Every task instance of the run (the REST API answers at most 100 per page)."""
    out: list[dict[str, Any]] = []
    while len(out) < 10_000:
        page = cluster.api.get(
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100, "offset": len(out)}
        )
        page.raise_for_status()
        items = page.json()["task_instances"]
        out.extend(items)
        if len(items) < 100:
            break
    return out


def import_cost(src: Path, repeats: int = 3) -> float:
    """Seconds to import the operator's module in a fresh interpreter that has already imported the
    Task SDK (what a task process pays on top of a bare @task file): the best of ``repeats``."""
    code = (
        "import time, airflow.sdk, httpx; t = time.perf_counter(); "
        "import airflow_monid.operators.monid; print(time.perf_counter() - t)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["PYTHONPATH"] = str(src)
    best = float("inf")
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=src, capture_output=True, text=True, timeout=120
        )
        if out.returncode == 0:
            best = min(best, float(out.stdout.strip().splitlines()[-1]))
    return best


# ----------------------------------------------------------------------------------------- one run


def run_dag(cluster: AirflowCluster, fake: httpx.Client, mode: str, n: int, timeout: float) -> dict[str, Any]:
    dag_id = DAGS[mode]
    result: dict[str, Any] = {"mode": mode, "dag_id": dag_id}
    log = cluster.log_path("api-server")
    paths0 = _fake_paths(fake)
    offset = log.stat().st_size
    sched0 = _cpu(cluster.pids("scheduler"), children=True)
    api0 = _cpu(cluster.pids("api-server"), children=True)
    t0 = time.monotonic()
    run_id = cluster.trigger_dag(dag_id)
    state = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cluster.check_alive()
        state = cluster.dag_run(dag_id, run_id)["state"]
        if state in ("success", "failed"):
            break
        time.sleep(1.0)
    result["client_wall_s"] = time.monotonic() - t0
    time.sleep(2.0)  # requests still in flight when the run's end was read are logged by now
    result["sched_cpu_s"] = _cpu(cluster.pids("scheduler"), children=True) - sched0
    result["api_cpu_s"] = _cpu(cluster.pids("api-server"), children=True) - api0
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    calls, millis, errors = execution_calls(text)
    result["calls"], result["errors"] = dict(calls), dict(errors)
    result["server_ms"] = {k: round(v, 1) for k, v in millis.items()}
    result["fake"] = dict(_fake_paths(fake) - paths0)
    run = cluster.dag_run(dag_id, run_id)
    result["state"] = run["state"]
    queued, end = _ts(run.get("queued_at")), _ts(run.get("end_date"))
    result["wall_s"] = end - queued if queued and end else None
    tis = task_instances(cluster, dag_id, run_id)
    result["task_states"] = dict(Counter(str(ti["state"]) for ti in tis))
    durations = [float(ti["duration"]) for ti in tis if ti.get("duration") is not None]
    result["duration_p50_s"], result["duration_p95_s"] = _pct(durations, 50), _pct(durations, 95)
    # Steady pace: the time between the 10th and the 90th percentile task end, per task in between
    # (the ramp-up and the last stragglers left out).
    ends = sorted(t for t in (_ts(ti.get("end_date")) for ti in tis) if t is not None)
    lo, hi = len(ends) // 10, len(ends) * 9 // 10
    if hi - lo >= 2 and ends[hi - 1] > ends[lo]:
        result["steady_ms"] = 1000 * (ends[hi - 1] - ends[lo]) / (hi - 1 - lo)
    result["restarts"] = calls.get("PATCH task-instances/{ti}/run", 0) - len(tis)
    if state not in ("success", "failed"):
        result["error"] = f"the DAG run did not end within {timeout:.0f} s (last state {state})"
    return result


# ----------------------------------------------------------------------------------------- report


def _f(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and value == value else "-"


def report(results: dict[str, dict[str, Any]], n: int) -> None:
    a, b = results.get("monid", {}), results.get("bare", {})

    def ratio(x: Any, y: Any) -> str:
        return _f(x / y, "7.2f") if isinstance(x, (int, float)) and isinstance(y, (int, float)) and y else "-"

    def row(name: str, x: Any, y: Any, fmt: str) -> None:
        print(f"{name:<42} {_f(x, fmt):>10} {_f(y, fmt):>10} {ratio(x, y):>7}")

    def per_task(r: dict[str, Any], key: str) -> float | None:
        value = r.get(key)
        return value / n if isinstance(value, (int, float)) else None

    def total(r: dict[str, Any], key: str) -> float | None:
        return sum(r[key].values()) / n if key in r else None

    print(f"\n{'':<42} {'A monid':>10} {'B bare':>10} {'A/B':>7}")
    row("DAG run wall s (queued_at -> end_date)", a.get("wall_s"), b.get("wall_s"), "10.1f")
    row("  wall per task, ms", (a.get("wall_s") or 0) * 1000 / n, (b.get("wall_s") or 0) * 1000 / n, "10.0f")
    row("  steady ms per task (10th-90th pct ends)", a.get("steady_ms"), b.get("steady_ms"), "10.0f")
    row("task duration p50 s", a.get("duration_p50_s"), b.get("duration_p50_s"), "10.3f")
    row("task duration p95 s", a.get("duration_p95_s"), b.get("duration_p95_s"), "10.3f")
    row("CPU s/task, scheduler+workers+tasks", per_task(a, "sched_cpu_s"), per_task(b, "sched_cpu_s"), "10.3f")
    row("CPU s/task, api-server", per_task(a, "api_cpu_s"), per_task(b, "api_cpu_s"), "10.3f")
    row("Execution-API calls per task", total(a, "calls"), total(b, "calls"), "10.2f")
    row("  api-server ms per task (sum of requests)", total(a, "server_ms"), total(b, "server_ms"), "10.0f")
    row("fake Monid API requests per task", total(a, "fake"), total(b, "fake"), "10.2f")
    for r in (a, b):
        if r:
            starts = r["calls"].get("PATCH task-instances/{ti}/run", 0)
            print(
                f"{LABEL[r['mode']]}: state {r.get('state')}, tasks {r.get('task_states')}, "
                f"/run calls {starts} (one per task start), client wall {r.get('client_wall_s', 0):.1f} s"
                + (f"; {r['error']}" if "error" in r else "")
            )
            if r.get("restarts"):
                print(
                    f"  WARNING: {r['restarts']} extra task starts (a reschedule: e.g. the DAG file failed to "
                    "import in a task); the wall time includes their wait"
                )
            for name, count in sorted(r.get("errors", {}).items()):
                print(f"  answered >= 400: {name}: {count}")

    print("\nExecution-API calls per task by route: A, B, A-B; then api-server ms per task (A, B)")
    names = sorted(set(a.get("calls", {})) | set(b.get("calls", {})), key=lambda k: (k.split(" ", 1)[1], k))
    for name in names:
        x, y = a.get("calls", {}).get(name, 0) / n, b.get("calls", {}).get(name, 0) / n
        mx, my = a.get("server_ms", {}).get(name, 0) / n, b.get("server_ms", {}).get(name, 0) / n
        print(f"  {name:<58} {x:6.2f} {y:6.2f} {x - y:+6.2f}   {mx:7.1f} {my:7.1f}")
    print("\nFake Monid API requests per task, by path (A, B):")
    for name in sorted(set(a.get("fake", {})) | set(b.get("fake", {}))):
        x, y = a.get("fake", {}).get(name, 0) / n, b.get("fake", {}).get(name, 0) / n
        print(f"  {name:<62} {x:7.3f} {y:7.3f}")


# ------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--order", default="monid,bare", help="the DAG runs, one after the other")
    parser.add_argument("--budget", type=float, default=840.0, help="seconds for the whole benchmark")
    parser.add_argument("--home", help="keep AIRFLOW_HOME (logs, database) in this new directory")
    parser.add_argument(
        "--no-warmup", action="store_true", help="skip the unmeasured B run that warms the api-server up first"
    )
    args = parser.parse_args()
    if not 1 <= args.tasks <= 1000:
        parser.error("--tasks must be 1..1000")
    modes = [m.strip() for m in args.order.split(",") if m.strip()]
    if not modes or any(m not in DAGS for m in modes):
        parser.error(f"--order takes {', '.join(DAGS)}")
    n = args.tasks
    began = time.monotonic()
    print(f"tasks per DAG run: {n}; order: {' then '.join(LABEL[m] for m in modes)} (same cluster, sequential)")
    print("Airflow settings:", ", ".join(f"{k.split('__', 2)[2].lower()}={v}" for k, v in SETTINGS.items()))
    tmp = tempfile.mkdtemp(prefix="task-overhead-")
    src = snapshot_provider(Path(tmp) / "src")
    print(f"provider code: a copy of {REPO / 'airflow_monid'} taken at start (first on PYTHONPATH)")
    print(f"import airflow_monid.operators.monid after airflow.sdk + httpx: {import_cost(src):.3f} s (best of 3)")
    fake_port = free_port()
    fake = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "_fake_monid.py"), str(fake_port)])
    api = httpx.Client(base_url=f"http://127.0.0.1:{fake_port}", timeout=30, trust_env=False)
    url = f"http://127.0.0.1:{fake_port}"
    results: dict[str, dict[str, Any]] = {}
    home = Path(args.home) if args.home else Path(tmp) / "home"
    env = {**SETTINGS, "BENCH_N": str(n), "BENCH_MONID_URL": url, "BENCH_MONID_KEY": KEY}
    env["PYTHONPATH"] = os.pathsep.join([str(src), str(REPO)])
    cluster = AirflowCluster(home, REPO / "benchmarks" / "overhead_dags", env=env)
    try:
        _wait(lambda: _fake_up(api), 30, "fake API", 0.1)
        cluster.start(timeout=240)
        print(f"cluster started in {cluster.timings['start_total']:.0f} s", flush=True)
        cluster.create_connection(
            {"connection_id": "monid_default", "conn_type": "monid", "host": url, "password": KEY}
        )
        for mode in modes:
            cluster.wait_dag(DAGS[mode], timeout=120)
        if not args.no_warmup:  # the api-server's first Execution-API requests take seconds (imports)
            warm = run_dag(cluster, api, "bare", n, timeout=max(30.0, args.budget / 4))
            print(f"warm-up (B bare, not counted): {warm.get('state')} in {_f(warm.get('wall_s'), '.1f')} s")
        for mode in modes:
            left = args.budget - (time.monotonic() - began) - 40  # the stop needs its share
            if left < 30:
                results[mode] = {"mode": mode, "error": "no time left in --budget"}
                print(f"{LABEL[mode]}: skipped, no time left", flush=True)
                continue
            results[mode] = run_dag(cluster, api, mode, n, timeout=left)
            r = results[mode]
            print(
                f"{LABEL[mode]}: {r.get('state')} in {_f(r.get('wall_s'), '.1f')} s"
                + (f" ({r['error']})" if "error" in r else ""),
                flush=True,
            )
    except Exception as exc:  # a failed start is a result too: print what there is
        print(f"benchmark error: {type(exc).__name__}: {exc}", flush=True)
    finally:
        cluster.stop()
        api.close()
        fake.kill()
        fake.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    report(results, n)
    print(f"\ntotal {time.monotonic() - began:.0f} s")
    print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
