"""The chaos soak with a money audit (``scripts/soak --seed N --minutes M``).

Starts the emulator and the production shape (PostgreSQL, CeleryExecutor on Redis, two workers, two
triggerers: tests/integration/production_cluster.py), runs the seeded plan of tests/soak/schedule.py for
``minutes`` (workload waves over every path, API faults through the emulator's HTTP control surface,
process faults with signals and service restarts), revives everything, waits until every DAG run has
ended (bounded), then hands the emulator's request log and runs and Airflow's task-instance rows to the
auditor (tests/soak/auditor.py) and prints its table last. Exit status 1 on any violation (or if the soak
could not run), 0 otherwise. Everything listens on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from airflow_monid.testing.emulator import Emulator
from tests._support import EXA_KEY, FAST_EXTRAS, MONID_KEY
from tests.integration.cluster import REPO_ROOT, ClusterError, _wait_until
from tests.integration.production_cluster import ProductionCluster, production_unavailable_reason
from tests.integration.provider_support import TriggerRowReader
from tests.soak import auditor, schedule
from tests.soak.auditor import FaultWindow, PlanItem, ti_key

SOAK_DAGS = Path(__file__).resolve().parent / "dags"
ARTIFACTS = REPO_ROOT / "test-artifacts" / "soak"
FINAL_STATES = ("success", "failed")


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Control:
    """The emulator's HTTP control surface (``/_emulator/...``), as an out-of-process test uses it."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=f"{url}/_emulator", trust_env=False, timeout=30)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        r = self.http.request(method, path, json=body)
        r.raise_for_status()
        return r.json()

    def fault(self, method: str, path: str, **kw: Any) -> None:
        self.call("POST", "/faults", {"method": method, "path": path, **kw})


def restart_service(svc: Any, sig: int, user: str | None = None, cwd: Path | None = None) -> None:
    """Stop a PostgreSQL / Redis server of the cluster and start it again with the same command line."""
    args = list(svc.proc.args)
    svc.stop(sig)
    svc.spawn(args, user=user, cwd=cwd)


def setup_emulator(ctl: Control) -> None:
    for kind, script in schedule.ASYNC_KINDS.items():
        ctl.call("POST", "/monid/endpoints", {"provider": "soak", "endpoint": f"/async/{kind}", "delay": 4, **script})
    ctl.call("POST", "/monid/endpoints", {"provider": "soak", "endpoint": "/async/never", "polls_to_finish": None})
    for kind in schedule.SYNC_KINDS:
        ctl.call(
            "POST",
            "/monid/endpoints",
            {"provider": "soak", "endpoint": f"/sync/{kind}", "mode": "sync", **schedule.ASYNC_KINDS[kind]},
        )
    ctl.call("POST", "/monid/settings", {"balance": 1_000_000.0})
    ctl.call("POST", "/exa/settings", {"trigger_polls_to_finish": 2})


class Soak:
    def __init__(self, seed: int, minutes: float, rate: float, drain: float) -> None:
        self.seed, self.minutes, self.rate, self.drain = seed, minutes, rate, drain
        self.events = schedule.build(seed, minutes, rate)
        self.plan: list[PlanItem] = []
        self.dag_runs: list[tuple[str, str]] = []
        self.windows: list[FaultWindow] = []
        self.process_faults: list[tuple[float, str]] = []
        self.faults = Counter[str]()
        self.drift: list[float] = []
        self.collateral: Counter[str] = Counter()
        self.trigger_texts: list[str] = []
        self.monitor_seq = 0
        self.list_on: dict[str, bool] = {}
        self.skipped: Counter[str] = Counter()
        self.pending_cont: tuple[float, str] | None = None

    # ------------------------------------------------------------------------------- workload
    def wave(self, c: ProductionCluster, ctl: Control, args: dict[str, Any]) -> None:
        for path, kinds in args["dags"].items():
            dag_id = schedule.DAG_OF[path]
            try:
                self._trigger(c, ctl, path, dag_id, kinds)
            except Exception as exc:  # the API server may be restarting: the wave's DAG run is skipped
                self.skipped[dag_id] += 1
                log(f"could not trigger {dag_id}: {str(exc)[:200]}")

    def _trigger(self, c: ProductionCluster, ctl: Control, path: str, dag_id: str, kinds: list[str]) -> None:
        if path in ("exa_trigger", "exa_sensor"):
            mons = []
            after = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)).isoformat()
            for _ in kinds:
                self.monitor_seq += 1
                mon = f"soak-{self.seed}-{self.monitor_seq}"
                ctl.call("POST", "/exa/monitors", {"monitor_id": mon})
                if path == "exa_sensor":
                    ctl.call("POST", "/exa/runs", {"monitor_id": mon, "polls_to_finish": 2})
                mons.append(mon)
            run_id = c.trigger_dag(dag_id, wait_parsed=0, conf={"monitors": mons, "after": after})
            for i, mon in enumerate(mons):
                pays = "exa" if path == "exa_trigger" else None
                retries = 2 if pays else 1
                self.plan.append(PlanItem(ti_key(dag_id, run_id, "run", i), path, "exa", pays, retries, monitor=mon))
            self._helper(dag_id, run_id, "monitors")
        elif path == "submit":
            for kind in kinds:
                endpoint = f"/async/{'p404' if kind == 'p404ok' else kind}"
                run_id = c.trigger_dag(dag_id, wait_parsed=0, conf={"endpoint": endpoint})
                submit = ti_key(dag_id, run_id, "submit", -1)
                self.plan.append(PlanItem(submit, "submit", kind, "monid", 2, wait=False))
                self.plan.append(PlanItem(ti_key(dag_id, run_id, "wait", -1), "sensor", kind, None, 1, linked=submit))
                self.dag_runs.append((dag_id, run_id))
            return
        elif path == "timeout":
            items = [{"endpoint": "/async/never"} for _ in kinds]
            run_id = c.trigger_dag(dag_id, wait_parsed=0, conf={"items": items})
            for task in ("run", "poll"):
                for i in range(len(items)):
                    key = ti_key(dag_id, run_id, task, i)
                    self.plan.append(PlanItem(key, "timeout", "never", "monid", 1, planned_timeout=True))
                self._helper(dag_id, run_id, f"items_{task}")
        else:
            mode = "sync" if path == "sync" else "async"
            items = []
            for kind in kinds:
                base = "p404" if kind == "p404ok" else kind
                items.append({"endpoint": f"/{mode}/{base}", "allowed": [404] if kind == "p404ok" else []})
            run_id = c.trigger_dag(dag_id, wait_parsed=0, conf={"items": items})
            for i, (kind, item) in enumerate(zip(kinds, items, strict=True)):
                key = ti_key(dag_id, run_id, "run", i)
                self.plan.append(PlanItem(key, path, kind, "monid", 2, allowed=tuple(item["allowed"])))
            self._helper(dag_id, run_id, "numbers" if path == "taskflow" else "items")
        self.dag_runs.append((dag_id, run_id))

    def _helper(self, dag_id: str, run_id: str, task: str) -> None:
        self.plan.append(PlanItem(ti_key(dag_id, run_id, task, -1), "helper", "-", None, 0))

    # --------------------------------------------------------------------------------- faults
    def api_fault(self, ctl: Control, kind: str, times: int, now: float) -> None:
        run_post, run_get = r"/v1/run", r"/v1/runs(/[^/]+)?"
        if kind == "429_retry_after":
            ctl.fault("POST", run_post, status=429, headers={"Retry-After": "1"}, times=times)
        elif kind == "5xx_burst":
            ctl.fault("GET", run_get, status=503, times=3 * times)
        elif kind == "post_5xx_unprocessed":
            ctl.fault("POST", run_post, status=502, times=times)
        elif kind == "reset_before_post":
            ctl.fault("POST", run_post, action="reset", times=times)
        elif kind == "reset_after_post":
            ctl.fault("POST", run_post, action="reset", after_handling=True, times=times)
        elif kind == "hang_past_read_timeout":
            ctl.fault("GET", run_get, action="hang", hang_seconds=13, times=times)
        elif kind == "hang_after_post":
            ctl.fault("POST", run_post, action="hang", hang_seconds=13, after_handling=True, times=1)
        elif kind == "truncated_body":
            ctl.fault("GET", run_get, action="truncate", after_handling=True, times=times)
            ctl.fault("POST", run_post, action="truncate", after_handling=True, times=1)
        elif kind == "list_lag":
            ctl.call("POST", "/monid/settings", {"list_lag_seconds": 15})
            self.list_on["list_lag_seconds"] = True
            self.windows.append(FaultWindow("list_lag", now, now + 30, 15))
        elif kind == "list_hides_new_runs":
            ctl.call("POST", "/monid/settings", {"list_hide_new_seconds": 20})
            self.list_on["list_hide_new_seconds"] = True
            self.windows.append(FaultWindow("list_hide_new", now, now + 30, 20))
        elif kind == "exa_5xx_burst":
            ctl.fault("GET", r"/monitors/[^/]+/runs(/[^/]+)?", status=503, times=3 * times)
        elif kind == "exa_reset_after_trigger":
            ctl.fault("POST", r"/monitors/[^/]+/trigger", action="reset", after_handling=True, times=1)
        self.faults[kind] += 1

    def end_windows(self, ctl: Control, now: float, force: bool = False) -> None:
        """Switch a list fault off once its window is over (or now, with ``force``)."""
        for kind, setting in (("list_lag", "list_lag_seconds"), ("list_hide_new", "list_hide_new_seconds")):
            mine = [w for w in self.windows if w.kind == kind]
            if not mine or not self.list_on.get(setting):
                continue
            if force:
                for w in mine:
                    w.end = min(w.end, now)
            if all(w.end <= now for w in mine):
                ctl.call("POST", "/monid/settings", {setting: 0})
                self.list_on[setting] = False

    def process_fault(self, c: ProductionCluster, kind: str, target: str) -> None:
        self.process_faults.append((time.time(), kind))
        worker, triggerer = f"worker-{target}", f"triggerer-{target}"
        if kind == "kill_worker":
            c.kill_worker(worker)
        elif kind == "kill_triggerer":
            c.kill_component(triggerer, signal.SIGKILL)
        elif kind == "stop_cont_triggerer":
            c.signal_component(triggerer, signal.SIGSTOP)
            self.pending_cont = (time.monotonic() + 13, triggerer)
        elif kind == "restart_scheduler":
            c.kill_component("scheduler", signal.SIGTERM)
        elif kind == "restart_api_server":
            c.kill_component("api-server", signal.SIGTERM)
        elif kind == "restart_postgres":
            restart_service(c.postgres, signal.SIGINT, user=c.pg_user, cwd=c.pg_dir)
            _wait_until(lambda: c.sql("SELECT 1"), 60, "PostgreSQL back")
        elif kind == "restart_redis":
            c.broker_monitor.stop()
            restart_service(c.redis, signal.SIGTERM)
            import redis

            _wait_until(lambda: redis.Redis(host="127.0.0.1", port=c.redis_port).ping(), 30, "Redis back")
            args = c.broker_monitor.proc.args if c.broker_monitor.proc else None
            if args:
                c.broker_monitor.spawn(list(args))
        self.faults[kind] += 1
        self.revive(c)

    def revive(self, c: ProductionCluster) -> None:
        """Start what a fault took down, and what died as its collateral (e.g. after a database restart)."""
        for name, proc in c.procs.items():
            if name not in c.down and proc.poll() is not None:
                self.collateral[name] += 1
                c.down.add(name)
        for _ in range(3):
            try:
                c.revive()
                return
            except ClusterError as exc:
                log(f"revive failed, again: {str(exc)[:300]}")
                for name, proc in c.procs.items():
                    if proc.poll() is not None:
                        c.down.add(name)

    # ---------------------------------------------------------------------------------- run
    def run(self) -> int:
        t_start = time.monotonic()
        log(f"seed {self.seed}  minutes {self.minutes}  rate {self.rate}/min  schedule {schedule.digest(self.events)}")
        reason = production_unavailable_reason()
        if reason:
            log(f"cannot run: {reason}")
            return 2
        emu = Emulator(monid_api_key=MONID_KEY, exa_api_key=EXA_KEY).start()
        ctl = Control(emu.url)
        setup_emulator(ctl)
        work = Path(tempfile.mkdtemp(prefix="airflow-soak-"))
        dags = work / "dags"
        dags.mkdir()
        (dags / "soak_dags").symlink_to(SOAK_DAGS, target_is_directory=True)
        extra = {**FAST_EXTRAS, "timeout": 10}
        env = {
            "AIRFLOW_CONN_MONID_DEFAULT": json.dumps(
                {"conn_type": "monid", "host": emu.url, "password": MONID_KEY, "extra": extra}
            ),
            "AIRFLOW_CONN_EXA_DEFAULT": json.dumps(
                {"conn_type": "exa", "host": emu.url, "password": EXA_KEY, "extra": extra}
            ),
            # a Redis restart loses queued Celery messages: requeue them after 60 s, not 600
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "60",
        }
        c = ProductionCluster(work / "home", dags, env)
        status = 1
        try:
            c.start(timeout=300)
            log(f"cluster up in {c.timings.get('start_total', 0):.0f}s; AIRFLOW_HOME {c.home}")
            for dag_id in sorted(set(schedule.DAG_OF.values())):
                c.wait_dag(dag_id, timeout=180)
            status = self._loop(c, ctl)
        except Exception:
            traceback.print_exc()
            log(f"soak aborted (seed {self.seed})")
        finally:
            if status != 0:
                with contextlib.suppress(Exception):
                    dest = ARTIFACTS / f"{time.strftime('%Y%m%dT%H%M%S')}-seed{self.seed}"
                    for p in c.log_files():
                        target = dest / p.relative_to(c.home)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(p, target)
                    log(f"logs copied to {dest}")
            c.stop()
            emu.stop()
            shutil.rmtree(work, ignore_errors=True)
            log(f"wall time {time.monotonic() - t_start:.0f}s")
        return status

    def _loop(self, c: ProductionCluster, ctl: Control) -> int:
        t0 = time.monotonic()
        wall0 = time.time()
        reader = TriggerRowReader(c)
        pending = list(self.events)
        try:
            while pending or self.pending_cont:
                now = time.monotonic() - t0
                if self.pending_cont and time.monotonic() >= self.pending_cont[0]:
                    c.signal_component(self.pending_cont[1], signal.SIGCONT)
                    self.pending_cont = None
                self.end_windows(ctl, time.time())
                if pending and pending[0].at <= now:
                    ev = pending.pop(0)
                    self.drift.append(now - ev.at)
                    log(f"t={now:6.1f}s {ev.kind} {ev.args if ev.kind != 'wave' else ''}")
                    try:
                        if ev.kind == "wave":
                            self.revive(c)  # what died since (e.g. after a database restart)
                            self.wave(c, ctl, ev.args)
                            if ev.args["wave"] % 3 == 1:
                                with contextlib.suppress(Exception):
                                    self.trigger_texts.extend(json.dumps(r, default=str) for r in reader.read())
                        elif ev.kind in schedule.API_FAULTS:
                            self.api_fault(ctl, ev.kind, ev.args["times"], time.time())
                        else:
                            self.process_fault(c, ev.kind, ev.args["target"])
                    except Exception as exc:
                        log(f"event {ev.kind} failed: {exc!r}")
                        self.revive(c)
                    continue
                time.sleep(0.2)  # pacing between planned events, not synchronisation
            log("fault window over: clearing faults, reviving, draining")
            ctl.call("DELETE", "/faults")
            self.end_windows(ctl, time.time(), force=True)
            self.revive(c)
            self._drain(c)
            with contextlib.suppress(Exception):
                self.trigger_texts.extend(json.dumps(r, default=str) for r in reader.read())
        finally:
            reader.close()
        return self._audit(c, ctl, wall0)

    def _drain(self, c: ProductionCluster) -> None:
        deadline = time.monotonic() + self.drain
        left: list[tuple[str, str]] = []
        while time.monotonic() < deadline:
            self.revive(c)
            try:
                rows = c.sql("SELECT dag_id, run_id, state FROM dag_run WHERE dag_id LIKE 'soak_%%'")
            except Exception:
                time.sleep(1)
                continue
            left = [(r["dag_id"], r["run_id"]) for r in rows if r["state"] not in FINAL_STATES]
            if not left:
                log("every DAG run has ended")
                return
            time.sleep(2)
        log(f"drain deadline passed; {len(left)} DAG run(s) not ended")

    def _audit(self, c: ProductionCluster, ctl: Control, wall0: float) -> int:
        cols = "dag_id, run_id, task_id, map_index, state, try_number, start_date, end_date"
        tis = c.sql(f"SELECT {cols} FROM task_instance WHERE dag_id LIKE 'soak_%%'")
        history = c.sql(f"SELECT {cols} FROM task_instance_history WHERE dag_id LIKE 'soak_%%'")
        planned = {p.ti for p in self.plan}
        for t in tis:  # a task instance the plan did not foresee still has to end
            key = ti_key(t["dag_id"], t["run_id"], t["task_id"], t["map_index"])
            if key not in planned:
                self.plan.append(PlanItem(key, "helper", "-", None, 0))
        requests = ctl.call("GET", "/requests")
        monid_runs = ctl.call("GET", "/runs")
        exa_runs = {p.monitor: ctl.call("GET", f"/exa/runs/{p.monitor}") for p in self.plan if p.monitor}
        charges = ctl.call("GET", "/monid/charges")
        texts = {str(p.relative_to(c.home)): p.read_text(errors="replace") for p in c.log_files()}
        texts["table xcom"] = c.xcom_table_text()
        texts["table trigger (decrypted, captured while deferred)"] = "\n".join(self.trigger_texts)
        texts["redis messages"] = "\n".join(c.broker_messages())
        result = auditor.audit(
            plan=self.plan,
            requests=requests,
            monid_runs=monid_runs,
            exa_runs=exa_runs,
            task_instances=tis,
            history=history,
            fault_windows=self.windows,
            process_faults=self.process_faults,
            charges=charges,
            texts=texts,
            secrets=[MONID_KEY, EXA_KEY],
        )
        wall = time.time() - wall0
        extra = {
            "seed": self.seed,
            "schedule digest": schedule.digest(self.events),
            "fault window (min)": self.minutes,
            "faults injected": self.faults,
            "collateral restarts": self.collateral,
            "event delay vs plan (max, mean s)": (
                round(max(self.drift, default=0.0), 1),
                round(sum(self.drift) / len(self.drift), 1) if self.drift else 0.0,
            ),
            "DAG runs": len(self.dag_runs),
            "DAG runs not triggered (API down)": self.skipped,
            "texts scanned for keys": len(texts),
            "soak wall time (s)": round(wall),
        }
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"seed{self.seed}-audit.json").write_text(auditor.to_json(result))
        print(auditor.render(result, seed=self.seed, extra=extra), flush=True)
        return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=None, help="default: a random seed (printed first)")
    ap.add_argument("--minutes", type=float, default=3.0, help="length of the fault window")
    ap.add_argument("--rate", type=float, default=30.0, help="task instances started per minute")
    ap.add_argument("--drain", type=float, default=600.0, help="seconds to wait for every DAG run to end")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    print(f"soak seed: {seed}", flush=True)
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    return Soak(seed, args.minutes, args.rate, args.drain).run()


if __name__ == "__main__":
    sys.exit(main())
