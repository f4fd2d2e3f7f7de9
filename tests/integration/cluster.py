"""A real, multi-process Airflow 3.3 cluster for integration tests.

SQLite + LocalExecutor in a throwaway ``AIRFLOW_HOME``; four long-running components
(``api-server``, ``scheduler``, ``dag-processor``, ``triggerer``), each started with
``Popen(start_new_session=True)`` so that it leads its own process group and can be
killed as a unit (including LocalExecutor workers, task supervisors and DAG-parsing
children).  Everything listens on 127.0.0.1 only (serve-logs is disabled with
``--skip-serve-logs``; the scheduler's optional health server stays off).

All waits in this module are *polling* with a deadline (REST API or /proc every 0.5 s),
never a bare sleep used as synchronisation.

See ``tests/integration/README.md`` for the measured timings and pitfalls.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import datetime as dt
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]

#: component name -> key in GET /api/v2/monitor/health (None: no heartbeat, api-server itself)
HEALTH_KEYS: dict[str, str | None] = {
    "api-server": None,
    "scheduler": "scheduler",
    "dag-processor": "dag_processor",
    "triggerer": "triggerer",
}
COMPONENTS: tuple[str, ...] = ("api-server", "scheduler", "dag-processor", "triggerer")

TERMINAL_RUN_STATES = ("success", "failed")
ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin-integration-pw"  # >= 5 chars, otherwise the secrets masker skips it

POLL = 0.5  # seconds between polls of the REST API / process table


class ClusterError(RuntimeError):
    """Raised when the cluster cannot start, a component dies, or a wait times out."""


class TriggerRow(NamedTuple):
    id: int
    classpath: str
    kwargs: dict[str, Any]  # decrypted (Fernet) and deserialized, then made JSON-safe
    repr: str  # repr() of the trigger rebuilt exactly like the triggerer does (cls(**kwargs))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def airflow_cli() -> list[str] | None:
    """The command prefix that runs the Airflow CLI of *this* interpreter's environment."""
    candidate = Path(sys.executable).parent / "airflow"
    if candidate.exists():
        return [str(candidate)]
    try:
        import airflow  # noqa: F401
    except ImportError:
        return None
    return [sys.executable, "-m", "airflow"]


def _isoparse(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _wait_until(predicate: Callable[[], Any], timeout: float, what: str, on_timeout: Callable[[], str] | None = None):
    """Poll ``predicate`` every POLL seconds until it returns something truthy (which is returned)."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except ClusterError:
            raise
        except Exception as exc:  # transient HTTP errors while a component restarts, etc.
            last_exc = exc
        if time.monotonic() >= deadline:
            extra = on_timeout() if on_timeout else ""
            raise ClusterError(
                f"timed out after {timeout:.0f}s waiting for {what}"
                + (f" (last error: {last_exc!r})" if last_exc else "")
                + (f"\n{extra}" if extra else "")
            )
        time.sleep(POLL)


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class AirflowCluster:
    """Drive a real Airflow 3.3 deployment from tests.

    ``env`` is merged last over the generated settings, so it can add ``AIRFLOW_CONN_*``
    connections or override any ``AIRFLOW__SECTION__KEY``.  Inherited ``AIRFLOW_HOME``,
    ``AIRFLOW__*``, ``AIRFLOW_CONN_*`` and ``AIRFLOW_VAR_*`` variables of the test process are
    dropped so a unit-test conftest cannot leak its settings into the cluster.

    Subclasses with other components (production_cluster.py) override ``components`` (start
    order), ``health_keys`` and ``_command``.
    """

    components: tuple[str, ...] = COMPONENTS
    health_keys: Mapping[str, str | None] = HEALTH_KEYS

    def __init__(self, home: Path, dags_folder: Path, env: Mapping[str, str] | None = None):
        self.home = Path(home).resolve()
        self.dags_folder = Path(dags_folder).resolve()
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.db_path = self.home / "airflow.db"
        self.procs: dict[str, subprocess.Popen] = {}
        self.observed: dict[tuple[str, str], dict[tuple[str, int], list[str | None]]] = {}
        self.timings: dict[str, float] = {}
        self._token: str | None = None
        self._api: httpx.Client | None = None
        self._ui: httpx.Client | None = None
        self._stopped = False
        self._lock = threading.Lock()
        self.user_env = dict(env or {})
        self.env = self._build_env(self.user_env)
        self.fernet_key = self.env["AIRFLOW__CORE__FERNET_KEY"]
        atexit.register(self.stop)

    # ------------------------------------------------------------------ setup
    def _build_env(self, user_env: Mapping[str, str]) -> dict[str, str]:
        base = {
            k: v
            for k, v in os.environ.items()
            if not (k == "AIRFLOW_HOME" or k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")))
        }
        self.home.mkdir(parents=True, exist_ok=True)
        passwords = self.home / "simple_auth_manager_passwords.json"
        passwords.write_text(json.dumps({ADMIN_USER: ADMIN_PASSWORD}))
        try:
            from cryptography.fernet import Fernet

            fernet_key = Fernet.generate_key().decode()
        except ImportError:  # pragma: no cover - cryptography ships with airflow
            fernet_key = ""
        settings = {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",  # default 32 -> 32 idle LocalExecutor workers
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # ...but never schedule by cron/timetable: example DAGs with a schedule would otherwise start
            # on their own (and call whatever their connections point at). Manual triggers still run.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__CORE__FERNET_KEY": fernet_key,
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            # Every caller (no token at all) is admin; gives GET /auth/token and the cookie
            # redirect /auth/token/login that the browser helpers use. Test-only setting.
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db_path}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__HEALTH_CHECK_THRESHOLD": "10",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            # heartrate of the DagProcessorJob (and of other non-scheduler/triggerer jobs)
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "10",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "10",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
            # default 5 s: on a loaded 2-core box the first execution-API call took 5.5 s, the client
            # retried, and one-shot endpoints (connection-test credentials) then answered 409
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
            "AIRFLOW__TRIGGERER__ON_KILL_TIMEOUT": "15",
            "AIRFLOW__CONNECTION_TEST__REAPER_INTERVAL": "10",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            # DAG files (and the triggerer) can import airflow_monid from the checkout even when the
            # package is not pip-installed. Provider *registration* (hook_meta, connection types)
            # still needs the entry point, i.e. `pip install -e .`.
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        merged = {**base, **settings, **{k: str(v) for k, v in user_env.items()}}
        return merged

    def _command(self, name: str) -> list[str]:
        cli = airflow_cli()
        if cli is None:
            raise ClusterError("the airflow CLI is not available in this interpreter")
        return {
            "api-server": [*cli, "api-server", "--host", "127.0.0.1", "--port", str(self.port)],
            "scheduler": [*cli, "scheduler", "--skip-serve-logs"],
            "dag-processor": [*cli, "dag-processor"],
            "triggerer": [*cli, "triggerer", "--skip-serve-logs"],
        }[name]

    def log_path(self, name: str) -> Path:
        return self.home / f"{name}.log"

    # -------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 120) -> AirflowCluster:
        t0 = time.monotonic()
        cli = airflow_cli()
        if cli is None:
            raise ClusterError("the airflow CLI is not available in this interpreter")
        with open(self.home / "db-migrate.log", "wb") as log:
            rc = subprocess.run(
                [*cli, "db", "migrate"], env=self.env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout
            ).returncode
        self.timings["db_migrate"] = time.monotonic() - t0
        if rc != 0:
            raise ClusterError(f"airflow db migrate failed (rc={rc}):\n{self.tail('db-migrate', 60)}")
        t1 = time.monotonic()
        for name in self.components:
            self.start_component(name, wait=False)
        self.wait_healthy(timeout=max(10.0, timeout - (time.monotonic() - t0)))
        self.timings["components_to_healthy"] = time.monotonic() - t1
        self.timings["start_total"] = time.monotonic() - t0
        return self

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM every process group, wait up to ``timeout`` s, then SIGKILL what is left."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        for name in reversed(self.components):
            proc = self.procs.get(name)
            if proc is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name in reversed(self.components):
            proc = self.procs.get(name)
            if proc is None:
                continue
            while self._group_alive(proc.pid) and time.monotonic() < deadline:
                proc.poll()
                time.sleep(0.2)
            if self._group_alive(proc.pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                self._wait_group_dead(proc, 10)
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)
        for client in (self._api, self._ui):
            if client is not None:
                client.close()
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def __enter__(self) -> AirflowCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ components
    def start_component(self, name: str, wait: bool = True, timeout: float = 90) -> subprocess.Popen:
        if name not in self.health_keys:
            raise ValueError(f"unknown component {name!r}; expected one of {self.components}")
        old = self.procs.get(name)
        if old is not None and old.poll() is None:
            raise ClusterError(f"{name} is still running (pid {old.pid})")
        started = dt.datetime.now(dt.UTC)
        log = open(self.log_path(name), "ab")  # noqa: SIM115 - handed to the child
        log.write(f"\n===== harness: starting {name} at {started.isoformat()} =====\n".encode())
        log.flush()
        in_main = threading.current_thread() is threading.main_thread()
        proc = subprocess.Popen(
            self._command(name),
            env=self.env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Safety net if pytest itself is SIGKILLed (atexit can't run then). PDEATHSIG fires when
            # the *forking thread* exits, so only use it from the main thread.
            preexec_fn=_set_pdeathsig if in_main else None,
        )
        log.close()
        self.procs[name] = proc
        if wait:
            self.wait_component_healthy(name, since=started, timeout=timeout)
        return proc

    def kill_component(self, name: str, sig: int = signal.SIGKILL, timeout: float = 30) -> None:
        """Signal the component's whole process group and wait until every member is gone."""
        proc = self.procs.get(name)
        if proc is None:
            raise ClusterError(f"{name} was never started")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        if not self._wait_group_dead(proc, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            if not self._wait_group_dead(proc, 10):
                raise ClusterError(f"process group of {name} (pgid {proc.pid}) survived SIGKILL")

    def restart_component(self, name: str, sig: int = signal.SIGKILL, timeout: float = 90) -> float:
        """Kill ``name``'s process group with ``sig``, wait for it to die, start it again and wait
        until it is healthy *as a new process* (its heartbeat is newer than the restart).
        Returns the seconds the restart took."""
        t0 = time.monotonic()
        self.kill_component(name, sig)
        self.start_component(name, wait=True, timeout=timeout)
        took = time.monotonic() - t0
        self.timings[f"restart_{name}"] = took
        return took

    def pids(self, name: str | None = None) -> list[int]:
        """Live (non-zombie) pids in the process group(s) of one or all components."""
        names = [name] if name else list(self.procs)
        out: list[int] = []
        for n in names:
            proc = self.procs.get(n)
            if proc is not None:
                out.extend(self._group_members(proc.pid))
        return out

    @staticmethod
    def _group_members(pgid: int) -> list[int]:
        members = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # fields after the "(comm)" part: state ppid pgrp ...
            rest = stat[stat.rfind(")") + 2 :].split()
            if len(rest) >= 3 and int(rest[2]) == pgid and rest[0] not in ("Z", "X"):
                members.append(int(entry.name))
        return members

    def _group_alive(self, pgid: int) -> bool:
        proc = next((p for p in self.procs.values() if p.pid == pgid), None)
        if proc is not None:
            proc.poll()  # reap the leader if it exited
        return bool(self._group_members(pgid))

    def _wait_group_dead(self, proc: subprocess.Popen, timeout: float) -> bool:
        """True once no live member of the group is left *and* the leader has been reaped (a killed
        multi-threaded leader shows as a zombie in /proc before waitpid() can collect it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc.poll()
            if not self._group_members(proc.pid):
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    return False
                return True
            time.sleep(0.1)
        return False

    def check_alive(self) -> None:
        dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
        if dead:
            msgs = "\n".join(f"--- {n} exited rc={rc}; tail:\n{self.tail(n, 40)}" for n, rc in dead.items())
            raise ClusterError(f"component(s) died: {sorted(dead)}\n{msgs}")

    # ----------------------------------------------------------------- health
    def health(self) -> dict[str, Any]:
        r = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5, trust_env=False)
        r.raise_for_status()
        return r.json()

    def _diagnostics(self) -> str:
        parts = []
        with contextlib.suppress(Exception):
            parts.append(f"last health: {json.dumps(self.health())}")
        for n in self.procs:
            parts.append(f"--- {n} (rc={self.procs[n].poll()}) tail:\n{self.tail(n, 15)}")
        return "\n".join(parts)

    def wait_healthy(self, timeout: float = 120) -> dict[str, Any]:
        def ok():
            self.check_alive()
            h = self.health()
            keys = ("metadatabase", "scheduler", "triggerer", "dag_processor")
            return h if all((h.get(k) or {}).get("status") == "healthy" for k in keys) else None

        return _wait_until(ok, timeout, "all components healthy", self._diagnostics)

    def wait_component_healthy(self, name: str, since: dt.datetime | None = None, timeout: float = 90) -> None:
        key = self.health_keys[name]

        def ok():
            proc = self.procs[name]
            if proc.poll() is not None:
                raise ClusterError(f"{name} exited rc={proc.returncode}:\n{self.tail(name, 40)}")
            h = self.health()  # for the api-server: answering at all is healthy
            if key is None:
                return True
            entry = h.get(key) or {}
            if entry.get("status") != "healthy":
                return False
            beat = _isoparse(entry.get(f"latest_{key}_heartbeat"))
            return since is None or (beat is not None and beat > since)

        _wait_until(ok, timeout, f"{name} healthy", self._diagnostics)

    # ------------------------------------------------------------------- auth
    def token(self, refresh: bool = False) -> str:
        if self._token and not refresh:
            return self._token
        with httpx.Client(base_url=self.base_url, timeout=30, trust_env=False) as c:
            r = c.post("/auth/token", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
            if r.status_code not in (200, 201):  # ALL_ADMINS mode also issues tokens on GET
                r = c.get("/auth/token")
            r.raise_for_status()
            self._token = r.json()["access_token"]
        return self._token

    def _client(self, prefix: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.base_url}{prefix}",
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=httpx.Timeout(30.0, connect=5.0),
            trust_env=False,
        )

    @property
    def api(self) -> httpx.Client:
        """httpx client for ``/api/v2`` with the Bearer token."""
        if self._api is None:
            self._api = self._client("/api/v2")
        return self._api

    @property
    def ui(self) -> httpx.Client:
        """httpx client for the private UI API under ``/ui`` (e.g. ``/ui/connections/hook_meta``)."""
        if self._ui is None:
            self._ui = self._client("/ui")
        return self._ui

    def _get_json(self, client: httpx.Client, url: str, **kw: Any) -> Any:
        r = client.get(url, **kw)
        if r.status_code >= 400:
            raise ClusterError(f"GET {client.base_url}{url} -> {r.status_code}: {r.text[:2000]}")
        return r.json()

    # ------------------------------------------------------------------- DAGs
    def wait_dag(self, dag_id: str, timeout: float = 90) -> dict[str, Any]:
        """Wait until the DAG is parsed (GET /dags/{id} == 200); show import errors on timeout."""

        def ok():
            self.check_alive()
            r = self.api.get(f"/dags/{dag_id}")
            return r.json() if r.status_code == 200 else None

        return _wait_until(ok, timeout, f"DAG {dag_id} to be parsed", lambda: self.import_errors_text())

    def import_errors(self) -> list[dict[str, Any]]:
        return self._get_json(self.api, "/importErrors", params={"limit": 100}).get("import_errors", [])

    def import_errors_text(self) -> str:
        try:
            errs = self.import_errors()
        except Exception as exc:
            return f"(could not list import errors: {exc!r})"
        return "\n".join(f"{e.get('filename')}:\n{e.get('stack_trace')}" for e in errs) or "(no import errors)"

    def trigger_dag(self, dag_id: str, conf: dict[str, Any] | None = None, wait_parsed: float = 90) -> str:
        if wait_parsed:
            self.wait_dag(dag_id, timeout=wait_parsed)
        r = self.api.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        if r.status_code >= 400:
            raise ClusterError(f"triggering {dag_id} failed: {r.status_code} {r.text[:2000]}")
        run_id = r.json()["dag_run_id"]
        self.observed.setdefault((dag_id, run_id), {})
        return run_id

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self._get_json(self.api, f"/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        data = self._get_json(self.api, f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})
        tis = data["task_instances"]
        self._record(dag_id, run_id, tis)
        return tis

    def _record(self, dag_id: str, run_id: str, tis: Iterable[dict[str, Any]]) -> None:
        seen = self.observed.setdefault((dag_id, run_id), {})
        for ti in tis:
            hist = seen.setdefault((ti["task_id"], ti.get("map_index", -1)), [])
            state = ti.get("state")
            if not hist or hist[-1] != state:
                hist.append(state)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """{task_id: state}; for a mapped task {task_id: [state of map_index 0, 1, ...]}."""
        out: dict[str, Any] = {}
        mapped: dict[str, dict[int, str]] = {}
        for ti in self.task_instances(dag_id, run_id):
            mi = ti.get("map_index", -1)
            if mi is None or mi < 0:
                out[ti["task_id"]] = ti["state"]
            else:
                mapped.setdefault(ti["task_id"], {})[mi] = ti["state"]
        for task_id, by_index in mapped.items():
            out[task_id] = [by_index[i] for i in sorted(by_index)]
        return out

    def task_states_by_index(self, dag_id: str, run_id: str) -> dict[tuple[str, int], str | None]:
        return {(ti["task_id"], ti.get("map_index", -1)): ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def observed_states(self, dag_id: str, run_id: str) -> dict[str, list[str | None]]:
        """Every distinct state seen per task while polling (keys ``task_id`` or ``task_id[i]``)."""
        return {
            (t if mi is None or mi < 0 else f"{t}[{mi}]"): list(states)
            for (t, mi), states in self.observed.get((dag_id, run_id), {}).items()
        }

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        suffix = f"/{map_index}" if map_index is not None and map_index >= 0 else ""
        ti = self._get_json(self.api, f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}{suffix}")
        self._record(dag_id, run_id, [ti])
        return ti

    def wait_dag_run(
        self,
        dag_id: str,
        run_id: str,
        states: Iterable[str] = TERMINAL_RUN_STATES,
        timeout: float = 180,
    ) -> str:
        """Poll the run (and its task instances, to record the states they pass through) until the
        run state is one of ``states``. Returns the state."""
        wanted = set(states)

        def ok():
            self.check_alive()
            with contextlib.suppress(ClusterError):
                self.task_instances(dag_id, run_id)
            state = self.dag_run(dag_id, run_id)["state"]
            return state if state in wanted else None

        def diag() -> str:
            return f"observed task states: {self.observed_states(dag_id, run_id)}\n{self._diagnostics()}"

        state = _wait_until(ok, timeout, f"{dag_id}/{run_id} to reach {sorted(wanted)}", diag)
        with contextlib.suppress(Exception):
            self.task_instances(dag_id, run_id)
        return state

    def wait_task_state(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: Iterable[str | None] | str,
        timeout: float = 120,
        map_index: int = -1,
    ) -> str | None:
        wanted = {states} if isinstance(states, str) else set(states)

        def ok():
            self.check_alive()
            st = self.task_instance(dag_id, run_id, task_id, map_index)["state"]
            return (st,) if st in wanted else None  # tuple: truthy even for state None

        def diag() -> str:
            return f"observed task states: {self.observed_states(dag_id, run_id)}"

        return _wait_until(ok, timeout, f"{dag_id}/{run_id}/{task_id} in {sorted(map(str, wanted))}", diag)[0]

    def set_task_state(
        self, dag_id: str, run_id: str, task_id: str, state: str = "failed", map_index: int = -1
    ) -> dict[str, Any]:
        """PATCH /api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}[/{map_index}] {"new_state": ...}
        (the "mark failed/success" user action; for a deferred task the triggerer cancels the trigger
        with ``__airflow_user_action__`` and awaits ``BaseTrigger.on_kill()``)."""
        suffix = f"/{map_index}" if map_index is not None and map_index >= 0 else ""
        r = self.api.patch(
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}{suffix}", json={"new_state": state}
        )
        if r.status_code >= 400:
            raise ClusterError(f"PATCH task state failed: {r.status_code} {r.text[:2000]}")
        return r.json()

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """The XCom value as real JSON (``deserialize=false`` returns the stored JSON value)."""
        data = self._get_json(
            self.api,
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"map_index": map_index},
        )
        return data["value"]

    def xcom_entries(self, dag_id: str, run_id: str, task_id: str = "~") -> list[dict[str, Any]]:
        data = self._get_json(
            self.api, f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries", params={"limit": 1000}
        )
        return data["xcom_entries"]

    # ------------------------------------------------------------------- logs
    def task_log_dir(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Path:
        d = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return d / f"map_index={map_index}" if map_index is not None and map_index >= 0 else d

    def task_log_files(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> list[Path]:
        """``attempt=N.log`` (worker, JSON lines) plus the triggerer's ``attempt=N.log.trigger.<id>.log``."""
        d = self.task_log_dir(dag_id, run_id, task_id, map_index)
        if not d.is_dir():
            return []
        main = d / f"attempt={try_number}.log"
        extra = sorted(p for p in d.glob(f"attempt={try_number}.log.*") if p.is_file())
        return ([main] if main.is_file() else []) + extra

    def task_log_text(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """Raw text of the task's log file(s) for that try, worker log first, then trigger logs."""
        parts = []
        for p in self.task_log_files(dag_id, run_id, task_id, try_number, map_index):
            parts.append(p.read_text(errors="replace"))
        return "\n".join(parts)

    def log_files(self) -> list[Path]:
        """Every log file under AIRFLOW_HOME (component logs, task/trigger logs, dag-processor logs)."""
        out = []
        for p in sorted(self.home.rglob("*")):
            if p.is_file() and (p.suffix == ".log" or ".log." in p.name or p.parent.name == "logs"):
                out.append(p)
        return out

    def all_logs_text(self) -> str:
        return "\n".join(
            f"==> {p.relative_to(self.home)} <==\n{p.read_text(errors='replace')}" for p in self.log_files()
        )

    def tail(self, name: str, lines: int = 40) -> str:
        p = self.home / f"{name}.log"
        if not p.exists():
            return "(no log)"
        return "\n".join(p.read_text(errors="replace").splitlines()[-lines:])

    # --------------------------------------------------------- database views
    def _sqlite(self) -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        conn.row_factory = sqlite3.Row
        return conn

    def sql(self, query: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Read-only query against the metadata DB (SQLite)."""
        with contextlib.closing(self._sqlite()) as conn:
            return [dict(r) for r in conn.execute(query, tuple(params)).fetchall()]

    def xcom_table_text(self) -> str:
        """Every row of the ``xcom`` table (all columns, including the stored value) as text."""
        rows = self.sql("SELECT * FROM xcom ORDER BY dag_run_id, task_id, map_index, key")
        return "\n".join(json.dumps(r, default=str, sort_keys=True) for r in rows)

    def table_text(self, table: str) -> str:
        rows = self.sql(f"SELECT * FROM {table}")  # table names are test-controlled
        return "\n".join(json.dumps(r, default=str, sort_keys=True) for r in rows)

    def run_in_airflow_env(self, code: str, timeout: float = 120) -> str:
        """Run Python ``code`` in a subprocess with the cluster env (same AIRFLOW_HOME, DB and Fernet
        key) and return its stdout."""
        cmd = [sys.executable, "-c", code]
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.home)
        if r.returncode != 0:
            raise ClusterError(f"subprocess failed rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr[-4000:]}")
        return r.stdout

    def start_in_airflow_env(self, code: str, *args: str) -> subprocess.Popen:
        """Start Python ``code`` (argv ``args``) in the cluster env, talking over text pipes: for
        helpers that import Airflow once and then answer requests in milliseconds."""
        return subprocess.Popen(
            [sys.executable, "-c", code, *args],
            env=self.env,
            cwd=self.home,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def pause_dags(self, dag_ids: Iterable[str], watchers_gone: Callable[[], bool], timeout: float = 90) -> None:
        """Pause DAGs (those whose file exists) and wait until ``watchers_gone()``.

        Used for the example DAGs scheduled by an AssetWatcher: a watcher polls the emulator's monitors
        on its own and would take the request holds and counts of other tests (it has its own tests).
        """
        for dag_id in dag_ids:
            self.wait_dag(dag_id)
            self.api.patch(f"/dags/{dag_id}", json={"is_paused": True}).raise_for_status()
        _wait_until(watchers_gone, timeout, "the paused DAGs' watcher triggers to be removed")

    def trigger_rows(self) -> list[TriggerRow]:
        """Rows of the ``trigger`` table: id, classpath, Fernet-decrypted kwargs, repr of the trigger
        rebuilt the way the triggerer does it. Rows only exist while a task is deferred."""
        code = textwrap.dedent(
            """
            import json, sys, warnings
            warnings.simplefilter("ignore")
            from airflow.models.trigger import Trigger
            try:
                from airflow._shared.module_loading import import_string  # 3.3 (what the triggerer uses)
            except ImportError:
                from airflow.utils.module_loading import import_string
            from airflow.utils.session import create_session
            from sqlalchemy import select

            def safe(o):
                if isinstance(o, dict):
                    return {str(k): safe(v) for k, v in o.items()}
                if isinstance(o, (list, tuple, set)):
                    return [safe(v) for v in o]
                if o is None or isinstance(o, (str, int, float, bool)):
                    return o
                if hasattr(o, "isoformat"):
                    return o.isoformat()
                if hasattr(o, "total_seconds"):
                    return o.total_seconds()
                return repr(o)

            out = []
            with create_session() as s:
                for t in s.scalars(select(Trigger).order_by(Trigger.id)):
                    kwargs = t.kwargs
                    try:
                        rebuilt = repr(import_string(t.classpath)(**kwargs))
                    except Exception as exc:
                        rebuilt = f"<rebuild failed: {exc!r}>"
                    out.append([t.id, t.classpath, safe(kwargs), rebuilt])
            sys.stdout.write("@@JSON@@" + json.dumps(out))
            """
        )
        stdout = self.run_in_airflow_env(code)
        payload = stdout.split("@@JSON@@", 1)[1]
        return [TriggerRow(*row) for row in json.loads(payload)]

    def trigger_assignments(self) -> list[dict[str, Any]]:
        """Cheap view of the ``trigger`` table (no decryption): id, classpath, triggerer_id, created_date."""
        return self.sql("SELECT id, classpath, triggerer_id, created_date FROM trigger ORDER BY id")

    def wait_trigger_running(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1, timeout: float = 60
    ) -> int:
        """Wait until a triggerer has *started* the task's trigger (its log file
        ``attempt=N.log.trigger.<triggerer job id>.log`` appears); returns that triggerer job id."""

        def ok():
            self.check_alive()
            d = self.task_log_dir(dag_id, run_id, task_id, map_index)
            for p in sorted(d.glob(f"attempt={try_number}.log.trigger.*.log")) if d.is_dir() else []:
                return int(p.name.split(".trigger.")[1].split(".")[0])
            return None

        return _wait_until(ok, timeout, f"trigger of {dag_id}/{run_id}/{task_id} to start in a triggerer")

    # ------------------------------------------------------------ connections
    def hook_meta(self) -> list[dict[str, Any]]:
        """GET /ui/connections/hook_meta (connection-form metadata built from provider info)."""
        return self._get_json(self.ui, "/connections/hook_meta")

    def hook_meta_for(self, conn_type: str) -> dict[str, Any] | None:
        return next((h for h in self.hook_meta() if h.get("connection_type") == conn_type), None)

    def test_connection(self, conn: Mapping[str, Any]) -> dict[str, Any]:
        """POST /api/v2/connections/test (runs ``Connection.test_connection()`` inside the api-server
        process, synchronously). ``conn`` needs ``connection_id`` and ``conn_type``; ``extra`` must
        be a JSON *string*, a dict is converted. Returns {"status": bool, "message": str}."""
        body = dict(conn)
        if isinstance(body.get("extra"), (dict, list)):
            body["extra"] = json.dumps(body["extra"])
        r = self.api.post("/connections/test", json=body)
        if r.status_code >= 400:
            raise ClusterError(f"POST /connections/test -> {r.status_code}: {r.text[:2000]}")
        return r.json()

    def enqueue_connection_test(self, conn: Mapping[str, Any], timeout: float = 90) -> dict[str, Any]:
        """The 3.3 worker-side variant: POST /api/v2/connections/enqueue-test, then poll
        GET /api/v2/connections/enqueue-test (header Airflow-Connection-Test-Token) until the state is
        terminal. Returns the last poll response ({"state", "result_message", ...})."""
        body = dict(conn)
        if isinstance(body.get("extra"), (dict, list)):
            body["extra"] = json.dumps(body["extra"])
        r = self.api.post("/connections/enqueue-test", json=body)
        if r.status_code >= 400:
            raise ClusterError(f"POST /connections/enqueue-test -> {r.status_code}: {r.text[:2000]}")
        token = r.json()["token"]

        def ok():
            res = self._get_json(
                self.api, "/connections/enqueue-test", headers={"Airflow-Connection-Test-Token": token}
            )
            return res if res.get("state") not in ("pending", "queued", "running", None) else None

        return _wait_until(ok, timeout, "enqueued connection test to finish")

    def get_connection(self, conn_id: str) -> dict[str, Any] | None:
        """GET /api/v2/connections/{id} (DB connections only; env ``AIRFLOW_CONN_*`` ones are not
        listed by the REST API). None when 404. Password and sensitive extras come back masked."""
        r = self.api.get(f"/connections/{conn_id}")
        if r.status_code == 404:
            return None
        if r.status_code >= 400:
            raise ClusterError(f"GET /connections/{conn_id} -> {r.status_code}: {r.text[:2000]}")
        return r.json()

    def create_connection(self, conn: Mapping[str, Any]) -> dict[str, Any]:
        body = dict(conn)
        if isinstance(body.get("extra"), (dict, list)):
            body["extra"] = json.dumps(body["extra"])
        r = self.api.post("/connections", json=body)
        if r.status_code >= 400:
            raise ClusterError(f"POST /connections -> {r.status_code}: {r.text[:2000]}")
        return r.json()

    def delete_connection(self, conn_id: str) -> None:
        r = self.api.delete(f"/connections/{conn_id}")
        if r.status_code not in (204, 404):
            raise ClusterError(f"DELETE /connections/{conn_id} -> {r.status_code}: {r.text[:2000]}")

    # ---------------------------------------------------------------- network
    def listening_sockets(self) -> list[tuple[str, int]]:
        """(local address, pid) of every TCP LISTEN socket owned by a cluster process (via ``ss``)."""
        ours = set(self.pids())
        try:
            out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise ClusterError(f"`ss` not available: {exc!r}") from exc
        found = []
        for line in out.splitlines():
            cols = line.split()
            if len(cols) < 5:
                continue
            local = cols[3]
            for chunk in line.split("pid=")[1:]:
                pid = int("".join(ch for ch in chunk.split(",")[0] if ch.isdigit()) or 0)
                if pid in ours:
                    found.append((local, pid))
        return found

    def non_loopback_listeners(self) -> list[tuple[str, int]]:
        return [(a, p) for a, p in self.listening_sockets() if not a.startswith(("127.0.0.1:", "[::1]:"))]
