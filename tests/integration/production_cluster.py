"""Airflow's production shape on one machine, for the ``production`` tests.

:class:`ProductionCluster` is an :class:`~tests.integration.cluster.AirflowCluster` (same REST, log and
process-group helpers) whose metadata database is a throwaway **PostgreSQL** (Debian's server binaries,
a free port on 127.0.0.1, the unix socket in its own temp dir), whose executor is **Celery on Redis**
(``redis-server`` without persistence, a free port) and which runs **two Celery workers** and **two
triggerers** beside the api-server, scheduler and dag-processor. Every process leads its own process
group and writes its own log under ``AIRFLOW_HOME``; all share one Fernet key and one JWT secret.

Failover is tuned to be testable (see :data:`FAILOVER_SETTINGS` and the README's "Running in
production"). A ``redis-cli monitor`` process records every command the broker receives, so the leak
scan can read the Celery messages (:meth:`ProductionCluster.broker_messages`).

:func:`production_unavailable_reason` says what is missing (PostgreSQL binaries, ``redis-server``, the
Celery provider, psycopg2, asyncpg, redis-py) before anything starts.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import glob
import importlib.util
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.integration.cluster import (
    AirflowCluster,
    ClusterError,
    _set_pdeathsig,
    _wait_until,
    airflow_cli,
    free_port,
)
from tests.integration.provider_support import _alive, _proc_table

#: What makes failover fast enough to test (the defaults are in the README's "Running in production").
FAILOVER_SETTINGS: dict[str, str] = {
    # a triggerer whose heartbeat is older than this loses its triggers to another one (default 30)
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
    # triggers one triggerer claims per loop (default 50: one triggerer would take all forty)
    "AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP": "4",
    # a task whose worker stopped heartbeating is failed / retried after this (default 300)
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "10",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    # retry delay of tasks that set none (default 300)
    "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "1",
}

WORKER_CONCURRENCY = 3  # per Celery worker; 2 cores shared with other sessions


def _postgres_bin() -> Path | None:
    """Directory of the newest Debian PostgreSQL server binaries (``initdb``, ``postgres``)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: (len(p), p))
    return Path(found[-1]).parent if found else None


def production_unavailable_reason() -> str | None:
    """Why the production shape cannot run here, or None."""
    if airflow_cli() is None:
        return "the `airflow` CLI is not installed in this interpreter's environment"
    if _postgres_bin() is None:
        return "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): apt-get install postgresql"
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found: apt-get install redis-server"
    for module, package in (
        ("airflow.providers.celery", "apache-airflow-providers-celery"),
        ("psycopg2", "psycopg2-binary"),
        ("asyncpg", "asyncpg"),
        ("redis", "redis"),
    ):
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            spec = None
        if spec is None:
            return f"Python package `{package}` is not installed (requirements/airflow-3.3.txt)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run the PostgreSQL server as"
    return None


class _Service:
    """A foreground server process in its own process group with its own log."""

    def __init__(self, name: str, log: Path) -> None:
        self.name = name
        self.log = log
        self.proc: subprocess.Popen | None = None

    def spawn(self, cmd: list[str], user: str | None = None, cwd: Path | None = None) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_set_pdeathsig,
                user=user,
                cwd=cwd,
            )

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
            raise ClusterError(f"{self.name} exited rc={self.proc.returncode}:\n{tail}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.proc.pid, sig)  # the server shuts its own children down (postgres: SIGINT = fast)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


class ProductionCluster(AirflowCluster):
    """PostgreSQL + Redis + CeleryExecutor, two workers and two triggerers (names ``worker-1``,
    ``worker-2``, ``triggerer-1``, ``triggerer-2``; ``api-server``, ``scheduler``, ``dag-processor``);
    ``api_workers`` API-server processes (``airflow api-server --workers``).

    ``start()`` brings up PostgreSQL and Redis first, then what ``AirflowCluster.start()`` does
    (``airflow db migrate``, every component, all healthy); ``stop()`` stops the components, then the
    services, and deletes the PostgreSQL data directory.
    """

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        env: Mapping[str, str] | None = None,
        *,
        triggerers: int = 2,
        workers: int = 2,
        worker_concurrency: int = WORKER_CONCURRENCY,
        api_workers: int = 1,
    ) -> None:
        self.api_workers = api_workers
        self.triggerers = tuple(f"triggerer-{i}" for i in range(1, triggerers + 1))
        self.workers = tuple(f"worker-{i}" for i in range(1, workers + 1))
        self.worker_concurrency = worker_concurrency
        self.components = ("api-server", "scheduler", "dag-processor", *self.workers, *self.triggerers)
        self.health_keys = {
            "api-server": None,
            "scheduler": "scheduler",
            "dag-processor": "dag_processor",
            **dict.fromkeys(self.triggerers, "triggerer"),
            **dict.fromkeys(self.workers, None),
        }
        self.pg_port = free_port()
        self.redis_port = free_port()
        # Outside AIRFLOW_HOME: pytest's temp root is 0700 root, and the server may run as `postgres`.
        self.pg_dir = Path(tempfile.mkdtemp(prefix="airflow-pg-"))
        self.pg_user = "postgres" if os.geteuid() == 0 else None
        self.db_url = f"postgresql+psycopg2://airflow@127.0.0.1:{self.pg_port}/airflow"
        self._started_at: dict[str, dt.datetime] = {}
        self.down: set[str] = set()  # components a test took down on purpose (not a failure)
        super().__init__(home, dags_folder, env)
        self.postgres = _Service("postgres", self.home / "postgres.log")
        self.redis = _Service("redis", self.home / "redis.log")
        self.broker_monitor = _Service("redis-monitor", self.home / "redis-monitor.log")

    # ------------------------------------------------------------------ setup
    def _build_env(self, user_env: Mapping[str, str]) -> dict[str, str]:
        env = super()._build_env({})
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url,
                "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{self.db_url}",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
                # default 1 s: sending a task to Redis on a loaded 2-core box can take longer
                "AIRFLOW__CELERY__OPERATION_TIMEOUT": "10",
                "AIRFLOW__CORE__PARALLELISM": "16",
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "64",
                # job rows and task instances carry the component's name (AIRFLOW_IT_COMPONENT)
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.integration.production.hostname.component_hostname",
                **FAILOVER_SETTINGS,
            }
        )
        env.update({k: str(v) for k, v in user_env.items()})
        return env

    def _command(self, name: str) -> list[str]:
        cli = airflow_cli()
        if cli is None:
            raise ClusterError("the airflow CLI is not available in this interpreter")
        named = ["env", f"AIRFLOW_IT_COMPONENT={name}"]  # env execs: the pid stays the group leader's
        if name in self.triggerers:
            return [*named, *cli, "triggerer", "--skip-serve-logs"]
        if name in self.workers:
            return [
                *named,
                *cli,
                "celery",
                "worker",
                "--concurrency",
                str(self.worker_concurrency),
                "--celery-hostname",
                f"{name}@production",
                "--pid",
                str(self.home / f"{name}.pid"),
                "--skip-serve-logs",
                "--without-mingle",
                "--without-gossip",
            ]
        workers = ["--workers", str(self.api_workers)] if name == "api-server" and self.api_workers > 1 else []
        return [*named, *super()._command(name), *workers]

    # -------------------------------------------------------------- services
    def _start_postgres(self, timeout: float) -> None:
        pg_bin = _postgres_bin()
        if pg_bin is None:
            raise ClusterError("PostgreSQL server binaries not found")
        data, sock = self.pg_dir / "data", self.pg_dir / "socket"
        sock.mkdir()
        if self.pg_user:
            info = pwd.getpwnam(self.pg_user)
            for p in (self.pg_dir, sock):
                os.chown(p, info.pw_uid, info.pw_gid)
        with open(self.home / "postgres-initdb.log", "wb") as log:
            rc = subprocess.run(
                [str(pg_bin / "initdb"), "-D", str(data), "-U", "airflow", "--auth=trust", "-E", "UTF8", "--no-sync"],
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self.pg_user,
                cwd=self.pg_dir,
                timeout=timeout,
            ).returncode
        if rc != 0:
            raise ClusterError(f"initdb failed rc={rc}: {(self.home / 'postgres-initdb.log').read_text()[-2000:]}")
        # a throwaway database: durability is not what is tested
        settings = (
            "listen_addresses=127.0.0.1 max_connections=300 fsync=off synchronous_commit=off full_page_writes=off"
        )
        options = [arg for setting in settings.split() for arg in ("-c", setting)]
        self.postgres.spawn(
            [str(pg_bin / "postgres"), "-D", str(data), "-p", str(self.pg_port), "-k", str(sock), *options],
            user=self.pg_user,
            cwd=self.pg_dir,
        )
        import psycopg2

        def ready() -> bool:
            self.postgres.check()
            with contextlib.closing(
                psycopg2.connect(host="127.0.0.1", port=self.pg_port, user="airflow", dbname="postgres")
            ) as conn:
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("CREATE DATABASE airflow")
            return True

        _wait_until(ready, timeout, "PostgreSQL to accept connections")

    def _start_redis(self, timeout: float) -> None:
        port, home = str(self.redis_port), str(self.home)
        self.redis.spawn(
            ["redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", home]
        )
        import redis

        def ready() -> bool:
            self.redis.check()
            return bool(redis.Redis(host="127.0.0.1", port=self.redis_port, socket_timeout=2).ping())

        _wait_until(ready, timeout, "Redis to answer PING")
        self.broker_monitor.spawn(["redis-cli", "-h", "127.0.0.1", "-p", str(self.redis_port), "monitor"])

    # -------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 240) -> ProductionCluster:
        t0 = time.monotonic()
        self._start_postgres(timeout=60)
        self._start_redis(timeout=30)
        self.timings["services"] = time.monotonic() - t0
        super().start(timeout=max(30.0, timeout - (time.monotonic() - t0)))
        self.timings["start_total"] = time.monotonic() - t0
        return self

    def stop(self, timeout: float = 20) -> None:
        super().stop(timeout)
        self.broker_monitor.stop()
        self.redis.stop()
        self.postgres.stop(signal.SIGINT)  # fast shutdown
        shutil.rmtree(self.pg_dir, ignore_errors=True)

    # ------------------------------------------------------------ components
    def start_component(self, name: str, wait: bool = True, timeout: float = 90) -> subprocess.Popen:
        self._started_at[name] = dt.datetime.now(dt.UTC)
        proc = super().start_component(name, wait=wait, timeout=timeout)
        self.down.discard(name)  # started again by the test itself (restart_component): up, not down
        return proc

    def kill_component(self, name: str, sig: int = signal.SIGKILL, timeout: float = 30) -> None:
        self.down.add(name)
        super().kill_component(name, sig, timeout)

    def revive(self) -> dict[str, float]:
        """Start again every component a test took down and wait until each is healthy; returns the
        seconds each took."""
        took = {}
        for name in [n for n in self.components if n in self.down]:
            t0 = time.monotonic()
            self.start_component(name, wait=True)
            took[name] = time.monotonic() - t0
        return took

    def signal_component(self, name: str, sig: int) -> None:
        """Send ``sig`` (e.g. SIGSTOP / SIGCONT) to the component's whole process group; no wait."""
        os.killpg(self.procs[name].pid, sig)

    def triggerer_job_ids(self) -> dict[str, int]:
        """{triggerer name: id of its newest ``TriggererJob``} (a job's hostname is its component's name)."""
        rows = self.sql("SELECT hostname, max(id) AS id FROM job WHERE job_type = 'TriggererJob' GROUP BY hostname")
        return {r["hostname"]: r["id"] for r in rows if r["hostname"] in self.triggerers}

    def triggerer_heartbeat(self, name: str) -> dt.datetime | None:
        rows = self.sql(
            "SELECT latest_heartbeat FROM job WHERE job_type = 'TriggererJob' AND hostname = %s"
            " ORDER BY id DESC LIMIT 1",
            (name,),
        )
        beat = rows[0]["latest_heartbeat"] if rows else None
        if beat is None:
            return None
        return beat if beat.tzinfo else beat.replace(tzinfo=dt.UTC)

    def _worker_ready(self, name: str) -> bool:
        """Celery logs ``<hostname> ready.`` once the worker consumes; only lines after the last start count."""
        text = self.log_path(name).read_text(errors="replace")
        return f"{name}@production ready." in text.rsplit("===== harness: starting", 1)[-1]

    def wait_component_healthy(self, name: str, since: dt.datetime | None = None, timeout: float = 90) -> None:
        if name not in self.triggerers and name not in self.workers:
            return super().wait_component_healthy(name, since=since, timeout=timeout)
        since = since or self._started_at.get(name)

        def ok() -> bool:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise ClusterError(f"{name} exited rc={proc.returncode}:\n{self.tail(name, 40)}")
            if name in self.workers:
                return self._worker_ready(name)
            beat = self.triggerer_heartbeat(name)
            return beat is not None and (since is None or beat > since)

        _wait_until(ok, timeout, f"{name} healthy", self._diagnostics)

    def wait_healthy(self, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout

        def core() -> dict[str, Any] | None:
            self.check_alive()
            h = self.health()
            keys = ("metadatabase", "scheduler", "dag_processor")
            return h if all((h.get(k) or {}).get("status") == "healthy" for k in keys) else None

        health = _wait_until(core, timeout, "api-server, scheduler and dag-processor healthy", self._diagnostics)
        for name in (*self.workers, *self.triggerers):
            self.wait_component_healthy(name, timeout=max(5.0, deadline - time.monotonic()))
        return health

    def check_alive(self) -> None:
        for service in (self.postgres, self.redis):
            service.check()
        dead = {n: p.returncode for n, p in self.procs.items() if n not in self.down and p.poll() is not None}
        if dead:
            msgs = "\n".join(f"--- {n} exited rc={rc}; tail:\n{self.tail(n, 40)}" for n, rc in dead.items())
            raise ClusterError(f"component(s) died: {sorted(dead)}\n{msgs}")

    def worker_task_processes(self, name: str) -> list[int]:
        """Pids of the task processes a worker's supervisors forked: they lead process groups of their
        own (the supervisor calls ``setpgid``), so a kill of the worker's group does not reach them."""
        group = set(self.pids(name))
        return [
            pid
            for pid, (ppid, state, _cmd) in _proc_table().items()
            if state not in ("Z", "X") and ppid in group and pid not in group
        ]

    def kill_worker(self, name: str) -> list[int]:
        """Lose a worker machine: SIGKILL the worker's process group (main process, pool children, task
        supervisors), then the task processes they had forked. Returns the task pids killed."""
        tasks = self.worker_task_processes(name)
        self.kill_component(name, signal.SIGKILL)
        for pid in tasks:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        _wait_until(
            lambda: not any(_alive(pid) for pid in tasks),
            30,
            f"the task processes of {name} to be gone",
        )
        return tasks

    # ------------------------------------------------------------- database
    def sql(self, query: str, params: Any = ()) -> list[dict[str, Any]]:
        """Query the PostgreSQL metadata DB (``%s`` placeholders; ``?`` ones as the SQLite base uses
        are translated when parameters are given)."""
        import psycopg2
        import psycopg2.extras

        params = tuple(params)
        if params and "%s" not in query:
            query = query.replace("?", "%s")
        with contextlib.closing(
            psycopg2.connect(host="127.0.0.1", port=self.pg_port, user="airflow", dbname="airflow")
        ) as conn:
            conn.autocommit = True
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(query, params or None)
                return [dict(r) for r in cur.fetchall()] if cur.description else []

    def ti_state(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str | None:
        """Task-instance state straight from the database (safe from any thread)."""
        rows = self.sql(
            "SELECT state FROM task_instance WHERE dag_id = %s AND run_id = %s AND task_id = %s AND map_index = %s",
            (dag_id, run_id, task_id, map_index),
        )
        return rows[0]["state"] if rows else None

    def trigger_holders(self) -> dict[int, int | None]:
        """{trigger id: triggerer job id holding it (None: unassigned)} from the ``trigger`` table."""
        return {r["id"]: r["triggerer_id"] for r in self.sql("SELECT id, triggerer_id FROM trigger")}

    # --------------------------------------------------------------- broker
    def broker_messages(self) -> list[str]:
        """Every value written to Redis (``redis-cli monitor``), unescaped, plus the base64-decoded
        ``body`` of each Celery/kombu message envelope among them."""
        out: list[str] = []
        for line in self.broker_monitor.log.read_text(errors="replace").splitlines():
            for raw in re.findall(r'"((?:[^"\\]|\\.)*)"', line):
                value = _unescape_redis(raw)
                out.append(value)
                if value.startswith("{") and '"body"' in value:
                    with contextlib.suppress(ValueError, TypeError):
                        envelope = json.loads(value)
                        if envelope.get("properties", {}).get("body_encoding") == "base64":
                            out.append(base64.b64decode(envelope["body"]).decode(errors="replace"))
        return out


_REDIS_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", '"': '"', "\\": "\\"}


def _unescape_redis(raw: str) -> str:
    """Undo ``redis-cli``'s quoting (``\\"``, ``\\\\``, ``\\n``..., ``\\xHH`` bytes)."""
    data = bytearray()
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            if nxt == "x" and i + 3 < len(raw):
                data.append(int(raw[i + 2 : i + 4], 16))
                i += 4
                continue
            data.extend(_REDIS_ESCAPES.get(nxt, nxt).encode())
            i += 2
            continue
        data.extend(ch.encode())
        i += 1
    return data.decode(errors="replace")
