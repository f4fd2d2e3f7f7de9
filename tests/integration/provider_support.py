"""Helpers for the provider's real-cluster tests (test_provider_cluster.py, test_exactly_once_cluster.py,
test_connection_form.py, test_zz_leak_scan.py).

- :class:`ClusterEmulator`: the bundled emulator plus *request holds*: a matching request waits,
  before the emulator handles it, until the test releases it. Tests use it to act on a request
  whose answer must reflect what the test does meanwhile (e.g. a trigger's first poll).
- Waits on cluster events (the scheduler has processed a deferral, a new triggerer took a trigger
  over, a task's worker processes are gone), all polling with a deadline.
- :data:`CAPTURED_TRIGGER_ROWS`: decrypted trigger rows captured while tasks were deferred, for
  the leak scan at the end of the session.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import textwrap
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from airflow_monid.testing.emulator import Emulator, RecordedRequest
from tests.integration.cluster import AirflowCluster, ClusterError, TriggerRow, _wait_until

#: Every trigger row captured (decrypted kwargs + repr) while a task was deferred, session-wide.
CAPTURED_TRIGGER_ROWS: list[TriggerRow] = []

MONID_TRIGGER = "airflow_monid.triggers.monid.MonidRunTrigger"
EXA_TRIGGER = "airflow_monid.triggers.exa.ExaMonitorRunTrigger"


# ------------------------------------------------------------------ emulator with request holds
@dataclass
class Hold:
    """One request held before handling. ``arrived`` is set when it comes in; it is answered
    (with the emulator state at that moment) after :meth:`release`."""

    method: str
    path: re.Pattern[str]
    predicate: Callable[[Any], bool] | None
    max_hold: float
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    request_path: str = ""

    def wait_arrived(self, timeout: float = 60) -> str:
        if not self.arrived.wait(timeout):
            raise ClusterError(f"no {self.method} {self.path.pattern} request arrived within {timeout:.0f}s")
        return self.request_path

    def release(self) -> None:
        self.released.set()


class ClusterEmulator(Emulator):
    """The emulator with one-shot request holds (see :meth:`hold`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._holds: list[Hold] = []
        self._holds_lock = threading.Lock()

    def hold(
        self,
        method: str,
        path_regex: str,
        predicate: Callable[[Any], bool] | None = None,
        max_hold: float = 60,
    ) -> Hold:
        """Hold the next ``method`` request whose path fullmatches ``path_regex`` (and for which
        ``predicate(req)`` is true, evaluated when it arrives) until ``release()``; at most
        ``max_hold`` seconds, a safety net so that a failing test never wedges the server."""
        h = Hold(method.upper(), re.compile(path_regex), predicate, max_hold)
        with self._holds_lock:
            self._holds.append(h)
        return h

    def _take_hold(self, req: Any) -> Hold | None:
        with self._holds_lock:
            candidates = [h for h in self._holds if h.method == req.method and h.path.fullmatch(req.path)]
        for h in candidates:
            if h.predicate is not None and not h.predicate(req):
                continue
            with self._holds_lock:
                if h not in self._holds:
                    continue
                self._holds.remove(h)
            return h
        return None

    def _handle(self, req: Any) -> Any:
        h = self._take_hold(req)
        if h is not None:
            h.request_path = req.path
            h.arrived.set()
            h.released.wait(h.max_hold)
        return super()._handle(req)

    def reset(self) -> None:
        with self._holds_lock:
            holds, self._holds = self._holds, []
        for h in holds:
            h.release()
        super().reset()

    # --- small conveniences -----------------------------------------------------------------
    def run_posts(self) -> list[RecordedRequest]:
        return self.requests("POST", "/v1/run")

    def http_get_run(self, run_id: str, key: str) -> dict[str, Any]:
        """``GET /v1/runs/{id}`` over HTTP, like a client (advances STOPPING to STOPPED)."""
        r = httpx.get(f"{self.url}/v1/runs/{run_id}", headers={"Authorization": f"Bearer {key}"}, trust_env=False)
        r.raise_for_status()
        return r.json()


# ---------------------------------------------------------------------------- cluster events
_EXECUTOR_EXIT = re.compile(
    r"Received executor event with state (?:success|failed) for task instance TaskInstanceKey\("
    r"dag_id='(?P<dag>[^']*)', task_id='(?P<task>[^']*)', run_id='(?P<run>[^']*)', "
    r"try_number=(?P<try>\d+), map_index=(?P<map>-?\d+)\)"
)


def executor_exits_received(c: AirflowCluster, dag_id: str, run_id: str) -> set[tuple[str, int, int]]:
    """``(task_id, map_index, try_number)`` of every workload exit of this DAG run the scheduler has
    taken from its executor's event buffer (scheduler log: ``Received executor event with state
    success|failed``).

    Taken is what matters, not "TaskInstance Finished": the scheduler reads the buffer once and
    selects the TIs with ``SKIP LOCKED``, so an event whose row another transaction holds at that
    moment is dropped without a "Finished" line (seen on PostgreSQL with 40 deferrals at once).
    Either way the stale event can no longer reach the resumed task.
    """
    log = c.log_path("scheduler")
    text = log.read_text(errors="replace") if log.exists() else ""
    return {
        (m["task"], int(m["map"]), int(m["try"]))
        for m in _EXECUTOR_EXIT.finditer(text)
        if m["dag"] == dag_id and m["run"] == run_id
    }


def wait_deferral_processed(c: AirflowCluster, dag_id: str, run_id: str, task_id: str, timeout: float = 60) -> str:
    """Wait until the task is ``deferred`` *and* the scheduler has taken the executor's event of the
    workload that deferred (see :func:`executor_exits_received`).

    A trigger that fires before that is a known scheduler race (apache/airflow#66374): the stale
    executor event then fails the resumed task. Completing a fake run only after this point avoids
    it without sleeping. Returns the TI id.
    """
    c.wait_task_state(dag_id, run_id, task_id, "deferred", timeout=timeout)
    ti = c.task_instance(dag_id, run_id, task_id)
    key = (task_id, ti.get("map_index", -1), ti["try_number"])

    def seen() -> bool:
        c.check_alive()
        return key in executor_exits_received(c, dag_id, run_id)

    _wait_until(seen, timeout, f"the scheduler to process the deferral of {dag_id}/{run_id}/{task_id}")
    return str(ti["id"])


def _proc_table() -> dict[int, tuple[int, str, str]]:
    """``pid -> (ppid, state, cmdline)`` of every process visible in /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2 :].split()
        table[int(entry.name)] = (int(rest[1]), rest[0], cmdline)
    return table


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


def processes_of_ti(tid: str) -> list[tuple[int, int, str]]:
    """``(pid, ppid, cmdline)`` of live processes working on that task-instance try.

    The LocalExecutor worker (the task's supervisor, a child of the scheduler) is titled
    ``airflow worker -- LocalExecutor: <ti id>``; the task process it forks, titled
    ``airflow worker -- <ti id>``, leads a process group of its own (the supervisor calls
    ``setpgid``), so it is looked for in the whole process table, not in the scheduler's group.
    The TI id is a UUID, new for every try.
    """
    return [
        (pid, ppid, cmd)
        for pid, (ppid, state, cmd) in sorted(_proc_table().items())
        if tid in cmd and state not in ("Z", "X")
    ]


def wait_no_worker_process(tid: str, timeout: float = 30) -> None:
    """The try holds no worker slot: no live process carries its TI id any more."""
    _wait_until(
        lambda: not processes_of_ti(tid),
        timeout,
        f"no worker process left for TI {tid}",
        lambda: f"still running: {processes_of_ti(tid)}",
    )


def sigkill_worker_of_ti(c: AirflowCluster, tid: str, timeout: float = 30) -> list[tuple[int, int, str]]:
    """SIGKILL the LocalExecutor worker (supervisor) of that try first, so nothing reports the
    task's end, then the task process it forked; wait until both are gone. Returns what was killed."""
    procs = processes_of_ti(tid)
    supervisors = [p for p in procs if f"LocalExecutor: {tid}" in p[2]]
    tasks = [p for p in procs if p not in supervisors]
    if len(supervisors) != 1 or len(tasks) != 1 or tasks[0][1] != supervisors[0][0]:
        raise ClusterError(f"expected one supervisor and the task process it forked for TI {tid}, found {procs}")
    if supervisors[0][0] not in c.pids("scheduler"):
        raise ClusterError(f"the supervisor of TI {tid} is not a LocalExecutor worker of the scheduler: {procs}")
    for pid, _ppid, _cmd in supervisors + tasks:
        os.kill(pid, signal.SIGKILL)
    _wait_until(
        lambda: not any(_alive(pid) for pid, _ppid, _cmd in procs),
        timeout,
        f"the killed processes of TI {tid} to be gone",
    )
    return procs


def trigger_job_ids(c: AirflowCluster, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> set[int]:
    """Ids of the triggerer jobs that have run this try's trigger (one log file each)."""
    files = c.task_log_files(dag_id, run_id, task_id, try_number)
    return {int(p.name.split(".trigger.")[1].split(".")[0]) for p in files if ".trigger." in p.name}


def wait_trigger_adopted(
    c: AirflowCluster, dag_id: str, run_id: str, task_id: str, old_job_id: int, timeout: float = 90
) -> int:
    """Wait until a triggerer other than ``old_job_id`` has started the trigger; returns its job id."""

    def new_id() -> int | None:
        c.check_alive()
        others = trigger_job_ids(c, dag_id, run_id, task_id) - {old_job_id}
        return min(others) if others else None

    return _wait_until(new_id, timeout, f"another triggerer to take over the trigger of {dag_id}/{run_id}")


_READER_CODE = textwrap.dedent(
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
        return repr(o)

    sys.stdout.write("@@READY@@\\n")
    sys.stdout.flush()
    for _line in sys.stdin:
        out = []
        with create_session() as s:
            for t in s.scalars(select(Trigger).order_by(Trigger.id)):
                kwargs = t.kwargs
                try:
                    rebuilt = repr(import_string(t.classpath)(**kwargs))
                except Exception as exc:
                    rebuilt = f"<rebuild failed: {exc!r}>"
                out.append([t.id, t.classpath, safe(kwargs), rebuilt])
        sys.stdout.write("@@JSON@@" + json.dumps(out) + "\\n")
        sys.stdout.flush()
    """
)


class TriggerRowReader:
    """``AirflowCluster.trigger_rows()`` without the 3-8 s start of a fresh interpreter per call.

    One long-lived Python process with the cluster's environment imports Airflow once; each
    :meth:`read` then answers in milliseconds with the rows of the ``trigger`` table, kwargs
    decrypted (Fernet) and the trigger rebuilt from them (``repr``) exactly like the triggerer
    does. Fast matters: rows exist only while a task is deferred, sometimes while the test is
    holding one of the trigger's requests.
    """

    def __init__(self, cluster: AirflowCluster, timeout: float = 120) -> None:
        self.timeout = timeout
        self.proc = cluster.start_in_airflow_env(_READER_CODE)
        self._lock = threading.Lock()
        self._ready = False

    def _readline(self, marker: str) -> str:
        assert self.proc.stdout is not None
        result: list[str] = []

        def read() -> None:
            for line in self.proc.stdout:  # type: ignore[union-attr]
                if line.startswith(marker):
                    result.append(line[len(marker) :])
                    return

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(self.timeout)
        if not result:
            raise ClusterError(f"trigger row reader gave no answer within {self.timeout:.0f}s (rc={self.proc.poll()})")
        return result[0]

    def read(self) -> list[TriggerRow]:
        with self._lock:
            if not self._ready:
                self._readline("@@READY@@")
                self._ready = True
            assert self.proc.stdin is not None
            self.proc.stdin.write("read\n")
            self.proc.stdin.flush()
            return [TriggerRow(*row) for row in json.loads(self._readline("@@JSON@@"))]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def capture_trigger_rows(reader: TriggerRowReader, classpath: str | None = None) -> list[TriggerRow]:
    """Read the decrypted trigger rows now (tasks must be deferred) and keep them for the leak scan."""
    rows = reader.read()
    CAPTURED_TRIGGER_ROWS.extend(rows)
    return [r for r in rows if classpath is None or r.classpath == classpath]


def wait_emulator_request(
    emu: Emulator, predicate: Callable[[RecordedRequest], bool], timeout: float, what: str
) -> RecordedRequest:
    try:
        return emu.wait_for_request(predicate, timeout=timeout)
    except TimeoutError:
        seen = [(r.method, r.path, r.status) for r in emu.requests()][-20:]
        raise ClusterError(f"the emulator saw no {what} within {timeout:.0f}s; last requests: {seen}") from None
