"""The soak's money auditor: independent of the provider's own bookkeeping.

It reads only

* the emulator's request log (``GET /_emulator/requests``), its Monid runs (``GET /_emulator/runs``:
  the runs that exist, with the ``input`` each was created with), its Exa runs per monitor
  (``GET /_emulator/exa/runs/{monitor}``) and charges (``GET /_emulator/monid/charges``);
* Airflow's metadata database: ``task_instance`` and ``task_instance_history`` (state, try number, the
  end of every try);
* the soak's own plan (which task instance was asked to do what: path, endpoint kind, retries) and the
  fault log the driver kept (which API fault was active when);
* raw texts to scan for keys (process and task logs, the XCom and trigger tables, Redis messages);

never the provider's XComs, its ``task_state_store`` ledger or its log lines.

**Attribution.** Every paying Monid task sends an input carrying ``soak_ti =
"<dag_id>/<run_id>/<task_id>/<map_index>"``: a run belongs to the task instance its input names, however
the provider learnt of it (its own answer, a retry that *reused* it, a reconciliation that *adopted* it
after a lost answer). A reused or adopted run is recognised by exactly that: no new run appears for the
task instance, and the one it has is the run whose output it delivered. Each Exa trigger task has a
monitor of its own: the runs of that monitor are its runs.

**Tries.** A run belongs to the try during which it was created: try *n* ends at the ``end_date`` of that
try (``task_instance_history`` for earlier tries, ``task_instance`` for the last one). A try that failed
while queued has no history row (Airflow records one only for a running try): the tries before the last
one then end where the last one started (its ``start_date``).

Invariants (each violation names the task instance and prints its request history):

* ``I1 delivered``: a successful paying task has exactly one good run (COMPLETED with a 2xx or allowed
  provider status; an Exa run ``completed``), not counting a run paid in the reported lost-POST window
  (see I3), whose hidden predecessor may complete well too; a ``wait_for_completion=False`` submit has
  exactly one run; a successful sensor waited on a good run.
* ``I2 one run per try``: no try created two runs (a paid POST re-sent).
* ``I3 pay again only when the table says so``: a run created in a later try is allowed only when every
  earlier run of the task instance was not reusable when it was created (ended FAILED / TIMED_OUT /
  STOPPED / BLOCKED / provider 408, 429, 5xx, or a stop was requested), *or* the earlier run could not be
  found by reconciliation: hidden from ``GET /v1/runs`` at that moment by the list fault, or 100 newer
  runs in between (the documented lost-POST window: reported, not a violation).
* ``I4 accounted``: every Monid run and every triggered Exa run belongs to a planned task instance.
* ``I5 failure reasons``: a failed task instance failed for a reason the outcome table names: its last
  run ended badly (status or provider status), its deadline passed (planned ``execution_timeout``, or its
  run was stopped), its answer was lost (a POST of its last try faulted: "a run may exist"), or a process
  fault hit its last try. Anything else (e.g. a good run, no fault, and still failed) is a violation.
* ``I6 nothing left``: no task instance is running, deferred, queued, scheduled, up for retry or
  restarting when the soak ends, and every planned one exists (a mapped task whose upstream failed is
  counted as "not expanded").
* ``I7 no key``: neither API key appears in any scanned text.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

BAD_MONID = frozenset({"FAILED", "TIMED_OUT", "TIME_OUT", "STOPPED", "STOPPING", "BLOCKED"})
RETRYABLE_PROVIDER = frozenset({408, 429})
UNFINISHED = frozenset(
    {"running", "deferred", "queued", "scheduled", "up_for_retry", "restarting", "up_for_reschedule"}
)
RECONCILE_WINDOW = 100  # the provider lists at most the 100 newest runs


@dataclass
class PlanItem:
    """One task instance the soak asked for. ``pays``: ``monid``, ``exa`` or ``None`` (a sensor)."""

    ti: str  # "<dag_id>/<run_id>/<task_id>/<map_index>"
    path: str  # sync, deferrable, worker_poll, submit, sensor, taskflow, output_path, exa_trigger, exa_sensor, timeout
    kind: str  # endpoint kind: ok, p404, p404ok, p503, failed, stopped, blocked, timedout, never, exa
    pays: str | None = "monid"
    retries: int = 0
    allowed: tuple[int, ...] = ()
    monitor: str | None = None
    linked: str | None = None  # a sensor: the submit task instance whose run it waits for
    wait: bool = True  # False: wait_for_completion=False (delivered = submitted)
    planned_timeout: bool = False


@dataclass
class Violation:
    invariant: str
    ti: str
    detail: str


@dataclass
class AuditResult:
    violations: list[Violation] = field(default_factory=list)
    lost_post_window: list[str] = field(default_factory=list)  # repays inside the documented window
    figures: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    histories: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations


def ti_key(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    return f"{dag_id}/{run_id}/{task_id}/{map_index}"


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _soak_ti(body: Any) -> str | None:
    if isinstance(body, dict):
        run_input = body.get("input") if "input" in body else body
        if isinstance(run_input, dict):
            value = run_input.get("soak_ti")
            return value if isinstance(value, str) else None
    return None


def _provider_status(run: Mapping[str, Any]) -> int | None:
    response = run.get("providerResponse") or {}
    status = response.get("httpStatus") if isinstance(response, dict) else None
    return status if isinstance(status, int) else None


def monid_run_good(run: Mapping[str, Any], allowed: Iterable[int] = ()) -> bool:
    if run.get("status") != "COMPLETED":
        return False
    status = _provider_status(run)
    return status is None or 200 <= status < 300 or status in set(allowed)


def monid_run_reusable_at(run: Mapping[str, Any], when: float, stops: Mapping[str, float]) -> bool:
    """Whether the decision table would reuse/adopt this run at ``when`` (M2/M8): not ended badly then."""
    stop_at = stops.get(run["runId"])
    if stop_at is not None and stop_at <= when:
        return False
    ended = _epoch(run.get("completedAt"))
    if ended is None or ended > when:
        return True  # in progress then
    if run.get("status") in BAD_MONID:
        return False
    status = _provider_status(run)
    return not (status is not None and (status in RETRYABLE_PROVIDER or status >= 500))


@dataclass
class FaultWindow:
    """An API fault the driver had active from ``start`` to ``end`` (epoch seconds)."""

    kind: str
    start: float
    end: float
    seconds: float = 0.0  # list_hide_new: runs younger than this are left out of the list


def _try_of(when: float, try_ends: Sequence[tuple[int, float | None]]) -> int:
    """The try during which ``when`` happened: the first whose end is not before it."""
    for number, end in try_ends:
        if end is None or when <= end:
            return number
    return try_ends[-1][0] if try_ends else 1


def audit(
    *,
    plan: Sequence[PlanItem],
    requests: Sequence[Mapping[str, Any]],
    monid_runs: Sequence[Mapping[str, Any]],
    exa_runs: Mapping[str, Sequence[Mapping[str, Any]]],
    task_instances: Sequence[Mapping[str, Any]],
    history: Sequence[Mapping[str, Any]] = (),
    fault_windows: Sequence[FaultWindow] = (),
    process_faults: Sequence[tuple[float, str]] = (),
    charges: Sequence[Mapping[str, Any]] = (),
    texts: Mapping[str, str] | None = None,
    secrets: Sequence[str] = (),
) -> AuditResult:
    res = AuditResult()
    by_ti = {p.ti: p for p in plan}
    tis = {ti_key(t["dag_id"], t["run_id"], t["task_id"], int(t["map_index"])): t for t in task_instances}
    ends: dict[str, list[tuple[int, float | None]]] = defaultdict(list)
    for h in history:
        key = ti_key(h["dag_id"], h["run_id"], h["task_id"], int(h["map_index"]))
        ends[key].append((int(h["try_number"]), _epoch(h.get("end_date"))))
    for key, t in tis.items():
        last = int(t["try_number"] or 1)
        started = _epoch(t.get("start_date"))
        if last > 1 and started is not None and all(n != last - 1 for n, _ in ends[key]):
            # Airflow writes no history row for a try that failed while queued (handle_failure records
            # one only for a running try); the last try's start still bounds what the tries before made.
            ends[key].append((last - 1, started))
        ends[key].append((last, _epoch(t.get("end_date"))))
        ends[key].sort(key=lambda pair: pair[0])

    # ----- attribution ---------------------------------------------------------------------------
    posts: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    stops: dict[str, float] = {}
    exa_triggers: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    history_lines: dict[str, list[str]] = defaultdict(list)
    monitor_owner = {p.monitor: p.ti for p in plan if p.monitor}
    for r in requests:
        method, path = r["method"], r["path"]
        line = f"{r['time']:.3f} {method} {path} -> {r['status']}" + (
            f" [fault {r['fault']}]" if r.get("fault") else ""
        )
        if method == "POST" and path == "/v1/run":
            owner = _soak_ti(r.get("body"))
            posts[owner or "?"].append(r)
            history_lines[owner or "?"].append(line)
        elif method == "POST" and path.startswith("/v1/runs/") and path.endswith("/stop"):
            run_id = path.split("/")[3]
            stops.setdefault(run_id, float(r["time"]))
            history_lines[f"run:{run_id}"].append(line)
        elif method == "GET" and path.startswith("/v1/runs/"):
            history_lines[f"run:{path.split('/')[3]}"].append(line)
        elif path.startswith("/monitors/"):
            monitor = path.split("/")[2]
            owner = monitor_owner.get(monitor)
            if owner:
                history_lines[owner].append(line)
                if method == "POST" and path.endswith("/trigger"):
                    exa_triggers[owner].append(r)
    runs_of: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for run in sorted(monid_runs, key=lambda x: _epoch(x.get("createdAt")) or 0.0):
        owner = _soak_ti(run)
        if owner is None or owner not in by_ti or by_ti[owner].pays != "monid":
            res.violations.append(Violation("I4 accounted", owner or "-", f"run {run['runId']} belongs to no task"))
            continue
        runs_of[owner].append(run)
    exa_of: dict[str, list[Mapping[str, Any]]] = {}
    for p in plan:
        if p.monitor:
            exa_of[p.ti] = sorted(exa_runs.get(p.monitor, ()), key=lambda x: _epoch(x.get("createdAt")) or 0.0)
    for key, lines in history_lines.items():
        res.histories[key] = lines
    for owner, runs in runs_of.items():
        for run in runs:
            summary = (
                f"  run {run['runId']} created {run.get('createdAt')} status {run.get('status')}"
                f" provider {_provider_status(run)}"
            )
            polls = res.histories.get(f"run:{run['runId']}", [])[-5:]
            res.histories[owner] = [*res.histories.get(owner, []), summary, *polls]

    all_run_times = sorted(_epoch(r.get("createdAt")) or 0.0 for r in monid_runs)

    def hidden(run: Mapping[str, Any], when: float) -> bool:
        created = _epoch(run.get("createdAt")) or 0.0
        for w in fault_windows:
            if w.kind == "list_hide_new" and w.start <= when <= w.end and when - created < w.seconds:
                return True
            if w.kind == "list_unlisted" and w.start <= when <= w.end and created <= w.end:
                return True
        newer = sum(1 for t in all_run_times if created < t <= when)
        return newer >= RECONCILE_WINDOW

    def lost(run: Mapping[str, Any], owner: str) -> bool:
        created = _epoch(run.get("createdAt")) or 0.0
        before = [p for p in posts.get(owner, ()) if float(p["time"]) <= created + 1.0]
        return bool(before) and bool(before[-1].get("fault"))

    def process_fault_in(start: float, end: float) -> str | None:
        """The latest process fault between the try's start (15 s earlier: a worker killed while the try
        was being queued) and its end."""
        hits = [(at, kind) for at, kind in process_faults if start - 15 <= at <= end]
        return max(hits)[1] if hits else None

    # ----- per task instance ---------------------------------------------------------------------
    outcome_rows: Counter[tuple[str, str]] = Counter()
    posts_per_ti: list[int] = []
    for p in plan:
        t = tis.get(p.ti)
        state = (t or {}).get("state")
        outcome_rows[(p.path, state or "missing")] += 1
        if t is None:
            dag_id, run_id, task_id, _index = p.ti.rsplit("/", 3)
            unexpanded = tis.get(ti_key(dag_id, run_id, task_id, -1))
            if unexpanded is not None and unexpanded.get("state") in ("upstream_failed", "skipped", "failed"):
                # the mapped task never expanded: its upstream failed (and was audited as such)
                outcome_rows[(p.path, state or "missing")] -= 1
                outcome_rows[(p.path, f"not expanded ({unexpanded['state']})")] += 1
                continue
            res.violations.append(Violation("I6 nothing left", p.ti, "task instance never created"))
            continue
        if state in UNFINISHED or state is None:
            res.violations.append(Violation("I6 nothing left", p.ti, f"left {state} when the soak ended"))
            continue
        try_ends = ends[p.ti]
        last_try = int(t["try_number"] or 1)
        if p.pays == "monid":
            runs = runs_of.get(p.ti, [])
            posts_per_ti.append(len(posts.get(p.ti, [])))
            _check_monid(p, t, runs, try_ends, stops, hidden, lost, res)
        elif p.pays == "exa":
            runs = exa_of.get(p.ti, [])
            posts_per_ti.append(len(exa_triggers.get(p.ti, [])))
            _check_exa(p, t, runs, try_ends, res)
        else:
            runs = []
            _check_sensor(p, t, by_ti, runs_of, exa_of, res)
        if state == "failed":
            reason = _failure_reason(p, t, runs, posts.get(p.ti, []) + exa_triggers.get(p.ti, []), try_ends, stops)
            if reason is None:
                last_end = _epoch(t.get("end_date")) or 0.0
                start = _epoch(t.get("start_date")) or (try_ends[-2][1] if len(try_ends) > 1 else None)
                proc = process_fault_in(start if start is not None else last_end - 60, last_end)
                reason = f"process fault during its last try ({proc})" if proc else None
            if reason is None:
                res.violations.append(
                    Violation(
                        "I5 failure reasons", p.ti, f"failed on try {last_try} for no reason the outcome table names"
                    )
                )
            else:
                res.figures.setdefault("failure reasons", Counter())[reason.split(":")[0]] += 1

    # ----- keys ----------------------------------------------------------------------------------
    for name, text in (texts or {}).items():
        for secret in secrets:
            if secret and secret in text:
                res.violations.append(Violation("I7 no key", name, "an API key appears in it"))

    # ----- figures -------------------------------------------------------------------------------
    res.tables["tasks by path and outcome"] = sorted((path, st, n) for (path, st), n in outcome_rows.items())
    res.figures["task instances"] = len(plan)
    res.figures["Monid runs"] = len(monid_runs)
    res.figures["paid POST /v1/run"] = sum(len(v) for v in posts.values())
    res.figures["Exa trigger POSTs"] = sum(len(v) for v in exa_triggers.values())
    res.figures["POSTs per paying TI (mean, max)"] = (
        round(sum(posts_per_ti) / len(posts_per_ti), 2) if posts_per_ti else 0.0,
        max(posts_per_ti, default=0),
    )
    res.figures["charged USD"] = round(sum(float(c.get("value") or 0.0) for c in charges), 6)
    res.figures["lost-POST window (reported)"] = len(res.lost_post_window)
    res.figures["invariant violations"] = len(res.violations)
    return res


def _check_monid(p, t, runs, try_ends, stops, hidden, lost, res) -> None:  # type: ignore[no-untyped-def]
    state = t["state"]
    per_try: Counter[int] = Counter()
    windowed: set[str] = set()  # runs paid while an earlier one was hidden: the reported lost-POST window
    for i, run in enumerate(runs):
        created = _epoch(run.get("createdAt")) or 0.0
        per_try[_try_of(created, try_ends)] += 1
        if i == 0:
            continue
        earlier = [r for r in runs[:i] if monid_run_reusable_at(r, created, stops)]
        for prev in earlier:
            if hidden(prev, created):
                windowed.add(run["runId"])
                res.lost_post_window.append(
                    f"{p.ti}: run {run['runId']} paid while run {prev['runId']}"
                    f" ({'answer lost' if lost(prev, p.ti) else 'id unknown to the retry'}) was not listable"
                )
            else:
                res.violations.append(
                    Violation(
                        "I3 pay again only when the table says so",
                        p.ti,
                        f"run {run['runId']} paid while run {prev['runId']} ({prev.get('status')}) was reusable",
                    )
                )
    for number, count in per_try.items():
        if count > 1:
            res.violations.append(Violation("I2 one run per try", p.ti, f"try {number} created {count} runs"))
    if state == "success":
        if not p.wait:
            if len(runs) < 1:
                res.violations.append(Violation("I1 delivered", p.ti, "submitted successfully but no run exists"))
            return
        good = [r for r in runs if monid_run_good(r, p.allowed)]
        # A run paid inside the lost-POST window is already reported; the earlier run it could not
        # see may complete well too, so only good runs outside the window must number exactly one.
        if not good or len([r for r in good if r["runId"] not in windowed]) > 1:
            what = ", ".join(f"{r['runId']}={r.get('status')}/{_provider_status(r)}" for r in runs) or "no run"
            res.violations.append(
                Violation("I1 delivered", p.ti, f"succeeded with {len(good)} good run(s) among: {what}")
            )


def _check_exa(p, t, runs, try_ends, res) -> None:  # type: ignore[no-untyped-def]
    per_try: Counter[int] = Counter()
    for i, run in enumerate(runs):
        created = _epoch(run.get("createdAt")) or 0.0
        per_try[_try_of(created, try_ends)] += 1
        earlier = [r for r in runs[:i] if r.get("status") not in ("failed", "cancelled", "canceled")]
        if earlier:
            res.violations.append(
                Violation(
                    "I3 pay again only when the table says so",
                    p.ti,
                    f"Exa run {run.get('id')} triggered while {earlier[-1].get('id')} ({earlier[-1].get('status')})"
                    " was reusable",
                )
            )
    for number, count in per_try.items():
        if count > 1:
            res.violations.append(Violation("I2 one run per try", p.ti, f"try {number} triggered {count} runs"))
    if t["state"] == "success":
        good = [r for r in runs if r.get("status") == "completed"]
        if len(good) != 1:
            res.violations.append(
                Violation("I1 delivered", p.ti, f"succeeded with {len(good)} completed Exa run(s) of {len(runs)}")
            )


def _check_sensor(p, t, by_ti, runs_of, exa_of, res) -> None:  # type: ignore[no-untyped-def]
    if t["state"] != "success":
        return
    if p.linked:  # MonidRunSensor on the submit task's run
        linked = by_ti.get(p.linked)
        runs = runs_of.get(p.linked, [])
        if not runs or not monid_run_good(runs[-1], p.allowed or (linked.allowed if linked else ())):
            res.violations.append(
                Violation("I1 delivered", p.ti, f"sensor succeeded but the submitted run is not good: {runs[-1:]}")
            )
    elif p.monitor and not any(r.get("status") == "completed" for r in exa_of.get(p.ti, [])):
        res.violations.append(Violation("I1 delivered", p.ti, "Exa sensor succeeded without a completed run"))


def _failure_reason(p, t, runs, posts, try_ends, stops) -> str | None:  # type: ignore[no-untyped-def]
    """The outcome-table row that explains a failed task instance, or None."""
    if p.planned_timeout:
        return "deadline: planned execution_timeout"
    last = runs[-1] if runs else None
    if p.pays is None and p.linked:
        return "sensor: the submitted run failed or was never good"
    if p.pays is None:
        return "sensor: no completed run by the deadline" if p.monitor else None
    if last is not None:
        if p.pays == "exa":
            if last.get("status") in ("failed", "cancelled", "canceled"):
                return f"run ended {last.get('status')}"
        else:
            if last["runId"] in stops:
                return "deadline: run stopped"
            if last.get("status") in BAD_MONID:
                return f"run ended {last.get('status')}"
            status = _provider_status(last)
            provider_failed = status is not None and not 200 <= status < 300 and status not in p.allowed
            if last.get("status") == "COMPLETED" and provider_failed:
                return f"provider {status}"
    start = try_ends[-2][1] if len(try_ends) > 1 and try_ends[-2][1] else 0.0
    last_posts = [x for x in posts if float(x["time"]) > (start or 0.0)]
    if any(x.get("fault") or int(x.get("status") or 0) >= 500 or int(x.get("status") or 0) == 429 for x in last_posts):
        return "answer lost or API error on its last try: a run may exist"
    return None


# ------------------------------------------------------------------------------------------- output
def render(result: AuditResult, *, seed: int | None = None, extra: Mapping[str, Any] | None = None) -> str:
    """The auditor's table: figures, tasks by path and outcome, lost-POST window, violations."""
    out: list[str] = []
    bar = "=" * 78
    out.append(bar)
    out.append(f"MONEY AUDIT{'' if seed is None else f' (seed {seed})'}: {'PASS' if result.ok else 'FAIL'}")
    out.append(bar)
    for key, value in {**dict(extra or {}), **result.figures}.items():
        if isinstance(value, Counter):
            value = ", ".join(f"{k} {v}" for k, v in sorted(value.items())) or "-"
        out.append(f"{key:<40} {value}")
    out.append("-" * 78)
    out.append(f"{'path':<16}{'outcome':<14}{'task instances':>16}")
    for path, state, n in result.tables.get("tasks by path and outcome", []):
        out.append(f"{path:<16}{state:<14}{n:>16}")
    if result.lost_post_window:
        out.append("-" * 78)
        out.append("documented lost-POST window (a second run paid; reported, not a violation):")
        out.extend(f"  {line}" for line in result.lost_post_window)
    if result.violations:
        out.append("-" * 78)
        out.append(f"VIOLATIONS ({len(result.violations)}):")
        for v in result.violations:
            out.append(f"  [{v.invariant}] {v.ti}: {v.detail}" + ("" if seed is None else f" (seed {seed})"))
            for line in result.histories.get(v.ti, [])[:40]:
                out.append(f"      {line}")
    out.append(bar)
    return "\n".join(out)


def to_json(result: AuditResult) -> str:
    return json.dumps(
        {
            "ok": result.ok,
            "violations": [v.__dict__ for v in result.violations],
            "lost_post_window": result.lost_post_window,
            "figures": {k: (dict(v) if isinstance(v, Counter) else v) for k, v in result.figures.items()},
            "tasks": result.tables.get("tasks by path and outcome", []),
        },
        indent=2,
        default=str,
    )
