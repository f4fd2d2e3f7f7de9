"""The provider on Airflow's production shape: PostgreSQL metadata DB, CeleryExecutor on Redis, two Celery
workers, two triggerers (tests/integration/production_cluster.py), against the session emulator.

1. the example DAGs succeed (Monid deferrable, Monid polling on the worker, Monid submit + sensor, Exa
   sensor, Exa trigger-and-wait, Monid sync);
2. forty deferred Monid runs spread over both triggerers; the one holding the most is SIGKILLed (its
   whole process group): the other takes its triggers over, every task succeeds, one ``POST /v1/run``
   per task, no stop request; the takeover time goes into the report;
3. split brain: one triggerer's process group is SIGSTOPped past the health threshold, its triggers move,
   then it is SIGCONTed and cancels the triggers it lost: no stop accepted on a run that was not
   terminal, no task failed, no second POST;
4. a Celery worker's process group (and the task process it forked) is SIGKILLed while the task polls
   its run on the worker: the retry runs on the other worker and reuses the run stored in
   ``task_state_store`` (PostgreSQL): one POST;
5. a user marking a deferred task failed stops its run (the trigger's ``on_kill``);
6. the API key is in no process log, decrypted trigger row, XCom, rendered field, ledger row, Celery
   result or message that went through the Redis broker.

Fake runs stay RUNNING until the test completes them, after Airflow has recorded what the test waits for
(deferral processed by the scheduler, trigger reassigned, poll by the new triggerer): no sleeps, no
timing thresholds in assertions.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from typing import Any

import pytest

from tests._support import MONID_KEY
from tests.integration.cluster import _wait_until
from tests.integration.production.conftest import REPORT
from tests.integration.production_cluster import ProductionCluster
from tests.integration.provider_support import (
    EXA_TRIGGER,
    MONID_TRIGGER,
    ClusterEmulator,
    TriggerRowReader,
    executor_exits_received,
    wait_deferral_processed,
    wait_emulator_request,
)
from tests.integration.test_zz_leak_scan import SECRETS

pytestmark = [pytest.mark.production, pytest.mark.integration]

TWEETS = ("apify", "/apidojo/tweet-scraper")
FANOUT = "prod_monid_fanout"  # tests/integration/dags/production_dags.py
DEFERRABLE = "it_monid_deferrable"  # tests/integration/dags/monid_params_dags.py
POLL = "it_monid_poll_retry"
CAPTURED_ROWS: list[Any] = []  # trigger rows of this cluster, for test 6


def _stops(emu: ClusterEmulator) -> list[Any]:
    return [r for r in emu.requests("POST") if r.path.startswith("/v1/runs/") and r.path.endswith("/stop")]


def _capture(reader: TriggerRowReader) -> list[Any]:
    """Decrypted trigger rows now (tasks deferred), kept for test 6 (not in the SQLite cluster's list)."""
    rows = reader.read()
    CAPTURED_ROWS.extend(rows)
    return rows


def _worker_of(ti: dict[str, Any]) -> str:
    return ti["hostname"]  # [core] hostname_callable names every process after its component


# ----------------------------------------------------------------------------------- fan-out helpers
def _mapped(c: ProductionCluster, run: str) -> list[dict[str, Any]]:
    return [t for t in c.task_instances(FANOUT, run) if t["task_id"] == "run"]


def _deferred_and_polled(c: ProductionCluster, emu: ClusterEmulator, run: str, count: int) -> dict[int, str]:
    """Wait until all ``count`` mapped tasks are deferred, the scheduler has processed every deferral
    (apache/airflow#66374), each trigger is held by a triggerer and each run was polled from one.
    Returns {map_index: Monid run id}."""

    def ready() -> dict[int, str] | None:
        c.check_alive()
        tis = _mapped(c, run)
        if len(tis) != count or any(t["state"] != "deferred" for t in tis):
            return None
        if not {("run", t["map_index"], t["try_number"]) for t in tis} <= executor_exits_received(c, FANOUT, run):
            return None
        rows = c.sql(
            "SELECT ti.map_index, t.triggerer_id FROM task_instance ti JOIN trigger t ON ti.trigger_id = t.id"
            " WHERE ti.dag_id = %s AND ti.run_id = %s AND ti.task_id = 'run'",
            (FANOUT, run),
        )
        if len(rows) != count or any(r["triggerer_id"] is None for r in rows):
            return None
        ids = {t["map_index"]: c.xcom(FANOUT, run, "run", key="run_id", map_index=t["map_index"]) for t in tis}
        assigned.append(time.time())
        return ids if _all_read_since(emu, set(ids.values()), assigned[0]) else None

    assigned: list[float] = []

    return _wait_until(ready, 300, f"{count} deferred, assigned and polled Monid runs", lambda: str(_states(c, run)))


def _all_read_since(emu: ClusterEmulator, run_ids: set[str], since: float) -> bool:
    """Every run's status was read after ``since``: by its own GET (per-run polling) or by a list page
    (the shared poller; these runs are the newest, so the first page holds them)."""
    reads = [r for r in emu.requests("GET") if r.time > since and r.status == 200]
    if any(r.path == "/v1/runs" for r in reads):
        return True
    return run_ids <= {r.path.rsplit("/", 1)[1] for r in reads if r.path.startswith("/v1/runs/")}


def _states(c: ProductionCluster, run: str) -> Counter:
    return Counter(t["state"] for t in _mapped(c, run))


def _holders(c: ProductionCluster, run: str) -> dict[int, int | None]:
    """{map_index: triggerer job id holding that task's trigger}."""
    rows = c.sql(
        "SELECT ti.map_index, t.triggerer_id FROM task_instance ti JOIN trigger t ON ti.trigger_id = t.id"
        " WHERE ti.dag_id = %s AND ti.run_id = %s AND ti.task_id = 'run'",
        (FANOUT, run),
    )
    return {r["map_index"]: r["triggerer_id"] for r in rows}


def _complete_and_check_fanout(c: ProductionCluster, emu: ClusterEmulator, run: str, ids: dict[int, str]) -> None:
    for i, run_id in ids.items():
        emu.monid.complete_run(run_id, output=[{"map_index": i, "run": run_id}])
    assert c.wait_dag_run(FANOUT, run, timeout=300) == "success", _states(c, run)
    tis = _mapped(c, run)
    assert {t["state"] for t in tis} == {"success"} and len(tis) == len(ids)
    assert {t["try_number"] for t in tis} == {1}
    for i, run_id in ids.items():
        assert c.xcom(FANOUT, run, "run", map_index=i) == [{"map_index": i, "run": run_id}]
    posts = emu.run_posts()
    assert len(posts) == len(ids) == len({json.dumps(p.body["input"], sort_keys=True) for p in posts})


# ---------------------------------------------------------------------------------------------- 1
def test_example_dags_succeed_on_the_production_shape(
    production: ProductionCluster, cluster_emulator: ClusterEmulator, production_trigger_rows: TriggerRowReader
) -> None:
    c, emu = production, cluster_emulator
    emu.monid.set_endpoint(*TWEETS, polls_to_finish=None)  # RUNNING until the test completes it
    emu.exa.add_monitor("mon_funding", name="Startup funding rounds")
    emu.exa.add_monitor("mon_trigger", name="Triggered by the operator")
    emu.exa.trigger_polls_to_finish = None  # the triggered run stays running until finished below

    runs = {
        "monid_async_tweets": c.trigger_dag("monid_async_tweets"),
        "monid_sync_enrichment": c.trigger_dag("monid_sync_enrichment"),
        "monid_submit_then_sensor": c.trigger_dag("monid_submit_then_sensor"),
        POLL: c.trigger_dag(POLL, conf={"input": {"searchTerms": ["worker-poll"]}}),
        "exa_monitor_sensor": c.trigger_dag("exa_monitor_sensor"),
        "exa_trigger_and_wait": c.trigger_dag("exa_trigger_and_wait", conf={"monitor_id": "mon_trigger"}),
    }
    # the Exa sensor's trigger looks every 60 s: hold its first look until the next monitor run exists
    exa_run = runs["exa_monitor_sensor"]
    exa_first_look = emu.hold(
        "GET",
        "/monitors/mon_funding/runs",
        predicate=lambda req: c.ti_state("exa_monitor_sensor", exa_run, "wait_for_monitor_run") == "deferred",
    )

    # Monid deferrable, submit + sensor, worker poll: complete each run once Airflow is where it should be
    wait_deferral_processed(c, "monid_async_tweets", runs["monid_async_tweets"], "scrape_tweets")
    wait_deferral_processed(c, "monid_submit_then_sensor", runs["monid_submit_then_sensor"], "wait_for_run")
    wait_deferral_processed(c, "exa_trigger_and_wait", runs["exa_trigger_and_wait"], "run_monitor")
    wait_deferral_processed(c, "exa_monitor_sensor", exa_run, "wait_for_monitor_run")
    exa_first_look.wait_arrived(timeout=120)
    rows = _capture(production_trigger_rows)  # four triggers deferred right now
    assert Counter(r.classpath for r in rows)[EXA_TRIGGER] >= 1 and MONID_TRIGGER in {r.classpath for r in rows}
    nxt = emu.exa.add_run("mon_funding", polls_to_finish=1)
    exa_first_look.release()

    async_id = c.xcom("monid_async_tweets", runs["monid_async_tweets"], "scrape_tweets", key="run_id")
    submit_id = c.xcom("monid_submit_then_sensor", runs["monid_submit_then_sensor"], "submit", key="run_id")
    poll_get = wait_emulator_request(
        emu,
        lambda r: r.method == "GET" and r.path.startswith("/v1/runs/") and r.path[9:] not in (async_id, submit_id),
        120,
        "the worker polling its run",
    )
    poll_id = poll_get.path.rsplit("/", 1)[1]
    assert c.task_instance(POLL, runs[POLL], "run")["state"] == "running"
    emu.monid.complete_run(async_id, output=[{"id": "1", "text": "deferred on Celery"}])
    emu.monid.complete_run(submit_id, output=[{"id": "2", "text": "sensed"}])
    emu.monid.complete_run(poll_id, output=[{"id": "3", "text": "polled on a worker"}])
    (triggered,) = emu.exa.runs("mon_trigger")
    emu.exa.finish_run("mon_trigger", triggered["id"])

    for dag_id, run in runs.items():
        assert c.wait_dag_run(dag_id, run, timeout=240) == "success", (dag_id, c.observed_states(dag_id, run))
        tis = c.task_instances(dag_id, run)
        assert {t["state"] for t in tis} == {"success"}, (dag_id, tis)
        assert {_worker_of(t) for t in tis} <= set(c.workers), [_worker_of(t) for t in tis]  # ran on Celery
    seen = {d: c.observed_states(d, r) for d, r in runs.items()}
    assert "deferred" in seen["monid_async_tweets"]["scrape_tweets"]
    assert "deferred" in seen["monid_submit_then_sensor"]["wait_for_run"]
    assert "deferred" in seen["exa_monitor_sensor"]["wait_for_monitor_run"]
    assert "deferred" in seen["exa_trigger_and_wait"]["run_monitor"]
    assert "deferred" not in seen[POLL]["run"]

    assert c.xcom("monid_async_tweets", runs["monid_async_tweets"], "count") == 1
    assert c.xcom("monid_submit_then_sensor", runs["monid_submit_then_sensor"], "wait_for_run") == [
        {"id": "2", "text": "sensed"}
    ]
    assert c.xcom(POLL, runs[POLL], "run") == [{"id": "3", "text": "polled on a worker"}]
    assert c.xcom("exa_monitor_sensor", exa_run, "wait_for_monitor_run")["id"] == nxt["id"]
    assert c.xcom("exa_trigger_and_wait", runs["exa_trigger_and_wait"], "run_monitor")["id"] == triggered["id"]
    assert c.xcom("monid_sync_enrichment", runs["monid_sync_enrichment"], "enrich_known_person")["full_name"]

    # what the APIs saw: one paid run per task, one triggered Exa run, nothing stopped
    inputs = Counter(json.dumps(p.body["input"], sort_keys=True) for p in emu.run_posts())
    assert len(inputs) == 5 and set(inputs.values()) == {1}, inputs
    assert _stops(emu) == []
    assert emu.count("POST", "/monitors/mon_trigger/trigger") == 1
    assert emu.count("POST", path_prefix="/monitors/mon_funding") == 0  # a sensor never triggers a run


# ---------------------------------------------------------------------------------------------- 2
def test_forty_deferred_runs_survive_sigkill_of_the_busiest_triggerer(
    production: ProductionCluster, cluster_emulator: ClusterEmulator, production_trigger_rows: TriggerRowReader
) -> None:
    c, emu = production, cluster_emulator
    count = 40
    emu.monid.set_endpoint(*TWEETS, polls_to_finish=None)
    t0 = time.monotonic()
    run = c.trigger_dag(FANOUT, conf={"count": count, "tag": "failover"})
    ids = _deferred_and_polled(c, emu, run, count)
    REPORT["fan-out: 40 tasks deferred, assigned and polled"] = f"{time.monotonic() - t0:.1f}s after the trigger"
    rows = _capture(production_trigger_rows)
    assert len([r for r in rows if r.classpath == MONID_TRIGGER]) == count

    jobs = c.triggerer_job_ids()
    names = {job: name for name, job in jobs.items()}
    held = Counter(names[j] for j in _holders(c, run).values())
    assert set(held) == set(c.triggerers) and all(held[t] > 0 for t in c.triggerers), held  # spread over both
    victim, moved = held.most_common(1)[0]
    (survivor,) = set(c.triggerers) - {victim}
    REPORT["fan-out spread before the kill"] = str(dict(held))
    victims_runs = {ids[i] for i, j in _holders(c, run).items() if names[j] == victim}

    killed_at, t_kill = time.time(), time.monotonic()
    c.kill_component(victim, signal.SIGKILL)  # supervisor and trigger runner: the whole process group

    def all_held_by_survivor() -> bool:
        c.check_alive()
        return set(_holders(c, run).values()) == {jobs[survivor]}

    _wait_until(all_held_by_survivor, 180, f"{survivor} to hold every trigger")
    reassigned = time.monotonic() - t_kill

    def resumed() -> bool:  # only the survivor is left to read them
        return _all_read_since(emu, victims_runs, killed_at)

    _wait_until(resumed, 180, f"{survivor} to poll the {moved} runs it took over")
    polling = time.monotonic() - t_kill
    REPORT["failover: SIGKILL -> triggers reassigned"] = f"{reassigned:.1f}s ({moved} triggers)"
    REPORT["failover: SIGKILL -> every moved run polled again"] = f"{polling:.1f}s"

    _complete_and_check_fanout(c, emu, run, ids)
    assert _stops(emu) == []  # a dead triggerer is not a user kill
    assert {r.status for r in emu.run_posts()} <= {200, 201, 202}


# ---------------------------------------------------------------------------------------------- 3
def test_split_brain_triggerer_cancels_what_it_lost_without_stopping_runs(
    production: ProductionCluster, cluster_emulator: ClusterEmulator
) -> None:
    c, emu = production, cluster_emulator
    count = 8
    emu.monid.set_endpoint(*TWEETS, polls_to_finish=None)
    run = c.trigger_dag(FANOUT, conf={"count": count, "tag": "split-brain"})
    ids = _deferred_and_polled(c, emu, run, count)
    jobs = c.triggerer_job_ids()
    names = {job: name for name, job in jobs.items()}
    holders = _holders(c, run)
    held = Counter(names[j] for j in holders.values())
    frozen, lost = held.most_common(1)[0]
    (other,) = set(c.triggerers) - {frozen}
    lost_tasks = sorted(i for i, j in holders.items() if j == jobs[frozen])

    stopped_at, t_stop = time.time(), time.monotonic()
    c.signal_component(frozen, signal.SIGSTOP)  # supervisor and runner: heartbeats stop, polling stops
    try:
        _wait_until(lambda: set(_holders(c, run).values()) == {jobs[other]}, 180, f"{other} to take the triggers over")
        REPORT["split brain: SIGSTOP -> triggers reassigned"] = f"{time.monotonic() - t_stop:.1f}s ({lost} triggers)"
        lost_runs = {ids[i] for i in lost_tasks}
        _wait_until(
            lambda: (
                lost_runs
                <= {
                    r.path.rsplit("/", 1)[1]
                    for r in emu.requests("GET", path_prefix="/v1/runs/")
                    if r.time > stopped_at
                }
            ),
            120,
            f"{other} to poll the runs it took over",
        )
    finally:
        resumed_at = time.time()
        c.signal_component(frozen, signal.SIGCONT)

    # the resumed triggerer heartbeats again, finds it no longer holds those triggers and cancels them
    # (Airflow 3.3 runs on_kill on that path too, apache/airflow#73454)
    def cancelled() -> bool:
        c.check_alive()
        beat = c.triggerer_heartbeat(frozen)
        if beat is None or beat.timestamp() <= resumed_at:
            return False
        return all("trigger completed" in _trigger_log(i) for i in lost_tasks)

    def _trigger_log(i: int) -> str:
        path = c.task_log_dir(FANOUT, run, "run", i) / f"attempt=1.log.trigger.{jobs[frozen]}.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    _wait_until(cancelled, 120, f"{frozen} to cancel the {lost} triggers it lost")
    # ... through the user-action path, so the provider's on_kill decided (it must not stop the runs)
    assert all("invoking on_kill" in _trigger_log(i) for i in lost_tasks)
    REPORT["split brain: SIGCONT -> lost triggers cancelled"] = f"{time.time() - resumed_at:.1f}s"
    accepted = [(r.path, r.status) for r in _stops(emu) if r.status == 202]
    assert accepted == [], f"stop accepted on runs that were not terminal: {accepted}"
    assert {emu.monid.get_run(i)["status"] for i in ids.values()} == {"RUNNING"}
    assert {t["state"] for t in _mapped(c, run)} == {"deferred"}

    _complete_and_check_fanout(c, emu, run, ids)
    assert [r for r in _stops(emu) if r.status == 202] == []


# ---------------------------------------------------------------------------------------------- 4
def _ledger(c: ProductionCluster, run: str) -> dict[str, Any] | None:
    rows = c.sql(
        "SELECT value FROM task_state_store WHERE dag_id = %s AND run_id = %s AND task_id = 'run'"
        " AND key = 'monid_run'",
        (POLL, run),
    )
    if not rows:
        return None
    value = rows[0]["value"]
    return value if isinstance(value, dict) else json.loads(value)


def test_celery_worker_sigkill_while_polling_retries_on_the_other_worker_without_paying_again(
    production: ProductionCluster, cluster_emulator: ClusterEmulator
) -> None:
    c, emu = production, cluster_emulator
    out = [{"id": "4", "text": "one worker lost, paid once"}]
    emu.monid.set_endpoint(*TWEETS, polls_to_finish=None)
    first_poll, killed = threading.Event(), threading.Event()
    first_path: list[str] = []

    def on_request(record: Any) -> None:  # the first poll waits, unanswered, until its worker is dead
        if record.method == "GET" and record.path.startswith("/v1/runs/") and not first_poll.is_set():
            first_path.append(record.path)
            first_poll.set()
            killed.wait(120)

    emu.on_request(on_request)
    run = c.trigger_dag(POLL, conf={"input": {"searchTerms": ["celery-worker-lost"]}})
    try:
        assert first_poll.wait(180), "the task never polled its run"
        monid_run_id = first_path[0].rsplit("/", 1)[1]
        ti = c.task_instance(POLL, run, "run")
        assert (ti["state"], ti["try_number"]) == ("running", 1)
        lost = _worker_of(ti)
        assert lost in c.workers, ti
        ledger = _ledger(c, run)
        assert ledger is not None and (ledger["run_id"], ledger["delivered"]) == (monid_run_id, False), ledger
        task_pids = c.kill_worker(lost)
        killed_at = time.time()
    finally:
        killed.set()
    assert task_pids, f"no task process was found under {lost}"

    def try_two_running() -> bool:
        c.check_alive()
        now = c.task_instance(POLL, run, "run")
        return now["try_number"] == 2 and now["state"] in ("running", "success")

    _wait_until(try_two_running, 180, "try 2 to run", lambda: str(c.observed_states(POLL, run)))
    wait_emulator_request(
        emu,
        lambda r: r.method == "GET" and r.path == f"/v1/runs/{monid_run_id}" and r.time > killed_at,
        90,
        "try 2 reading the stored run",
    )
    emu.monid.complete_run(monid_run_id, output=out)

    assert c.wait_dag_run(POLL, run, timeout=180) == "success", c.observed_states(POLL, run)
    final = c.task_instance(POLL, run, "run")
    assert (final["state"], final["try_number"]) == ("success", 2)
    (survivor,) = set(c.workers) - {lost}
    assert _worker_of(final) == survivor
    assert c.xcom(POLL, run, "run") == out
    posts = emu.run_posts()
    assert len(posts) == 1 and posts[0].body["input"] == {"searchTerms": ["celery-worker-lost"]}
    assert _stops(emu) == []
    # delivered, and listed among the delivered runs that are never adopted again
    assert _ledger(c, run) == {**ledger, "delivered": True, "delivered_runs": [monid_run_id]}
    try2 = c.task_log_text(POLL, run, "run", try_number=2)
    assert f"Reusing Monid run {monid_run_id} from an earlier try" in try2
    assert "Submitted Monid run" not in try2


# ---------------------------------------------------------------------------------------------- 5
def test_marking_a_deferred_task_failed_stops_its_run(
    production: ProductionCluster, cluster_emulator: ClusterEmulator, production_trigger_rows: TriggerRowReader
) -> None:
    c, emu = production, cluster_emulator
    emu.monid.set_endpoint(*TWEETS, polls_to_finish=None)
    run = c.trigger_dag(DEFERRABLE, conf={"input": {"searchTerms": ["user-kill-production"]}})
    wait_deferral_processed(c, DEFERRABLE, run, "run")
    job = c.wait_trigger_running(DEFERRABLE, run, "run", timeout=90)
    assert job in c.triggerer_job_ids().values()
    monid_run_id = c.xcom(DEFERRABLE, run, "run", key="run_id")
    wait_emulator_request(emu, lambda r: r.path == f"/v1/runs/{monid_run_id}", 60, "poll by the trigger")
    (row,) = [r for r in _capture(production_trigger_rows) if r.kwargs.get("run_id") == monid_run_id]
    assert row.classpath == MONID_TRIGGER

    c.set_task_state(DEFERRABLE, run, "run", "failed")  # the user's "mark failed"

    stop = wait_emulator_request(
        emu, lambda r: r.method == "POST" and r.path == f"/v1/runs/{monid_run_id}/stop", 90, "the stop request"
    )
    assert stop.status == 202
    assert emu.http_get_run(monid_run_id, MONID_KEY)["status"] == "STOPPED"
    assert c.wait_dag_run(DEFERRABLE, run, timeout=120) == "failed"
    assert c.task_states(DEFERRABLE, run) == {"run": "failed"}
    assert len(emu.run_posts()) == 1 and len(_stops(emu)) == 1


# ---------------------------------------------------------------------------------------------- 6
def test_no_api_key_in_logs_rows_xcom_or_broker_messages(production: ProductionCluster) -> None:
    c = production
    broker = c.broker_messages()
    trigger_text = "\n".join(json.dumps({"kwargs": r.kwargs, "repr": r.repr}, sort_keys=True) for r in CAPTURED_ROWS)
    texts = {
        "logs of every process (and the redis-cli monitor log)": c.all_logs_text(),
        "xcom table": c.table_text("xcom"),
        "rendered_task_instance_fields table": c.table_text("rendered_task_instance_fields"),
        "task_state_store table": c.table_text("task_state_store"),
        "celery_taskmeta table": c.table_text("celery_taskmeta"),
        "trigger rows (decrypted kwargs + repr)": trigger_text,
        "messages through the Redis broker (decoded)": "\n".join(broker),
    }
    # it scanned something real
    assert "Submitted Monid run" in texts["logs of every process (and the redis-cli monitor log)"]
    assert '"run_id"' in texts["xcom table"] and "apify" in texts["rendered_task_instance_fields table"]
    assert "monid_run" in texts["task_state_store table"]
    assert MONID_TRIGGER in {r.classpath for r in CAPTURED_ROWS} and EXA_TRIGGER in {r.classpath for r in CAPTURED_ROWS}
    workloads = [m for m in broker if m.startswith("[") and "dag_rel_path" in m]  # decoded ExecuteTask bodies
    assert any(FANOUT in m for m in workloads), "no Celery task message was decoded from the broker"
    leaks = [f"{name} in the {where}" for where, text in texts.items() for name, key in SECRETS.items() if key in text]
    assert leaks == []
