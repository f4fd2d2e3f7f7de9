"""Exa webhooks on the production shape (PostgreSQL): deliveries of the same monitor runs racing each
other (Exa retries a delivery with a new event id; a load balancer spreads them over API-server
processes) make exactly one asset event per run.

What decides it is the receiver's delivery record, locked per asset and monitor (``SELECT ... FOR
UPDATE``), and the retry of the one transaction that loses the race to insert that record first
(airflow_monid/plugins/exa_webhooks.py). Two phases:

1. **Over HTTP**: 16 signed deliveries of two runs sent at once to the cluster's API server, which runs
   two uvicorn processes (``--workers 2``); which process accepts which connection is the kernel's choice.
   The watcher's next listing is held meanwhile, then answered: that poll sees both runs completed and
   must add nothing either.
2. **Across processes, forced**: two separate receiver processes (the plugin's own ``deliver()``, on the
   cluster's database), released together, each deliver the same six runs in the same order, so their
   transactions on the one record row overlap all along.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections import Counter
from typing import Any

import pytest

from tests.integration.production.conftest import API_WORKERS
from tests.integration.production_cluster import ProductionCluster
from tests.integration.provider_support import ClusterEmulator
from tests.integration.test_exa_watcher_cluster import _wait
from tests.integration.test_exa_webhook_cluster import CONN, SECRET, event_runs, watcher_polled, webhook_dag_on

pytestmark = [pytest.mark.production, pytest.mark.integration]

MONITOR = "mon_webhook_production"
HTTP_RUNS = ("prod_r1", "prod_r2")
COPIES = 8  # HTTP deliveries of each run sent at the same moment
RACE_RUNS = tuple(f"prod_race_{i}" for i in range(1, 7))

# One receiver process: reads its deliveries (one JSON body per line) from stdin, says "ready", waits for
# "go", registers them one after the other with the plugin's deliver(), prints what it answered.
RECEIVER = """
import json, sys
from airflow_monid._exa.webhooks import parse_delivery
from airflow_monid.plugins.exa_webhooks import deliver
deliveries = [parse_delivery(sys.stdin.readline().encode()) for _ in range(int(sys.argv[2]))]
print("ready", flush=True)
sys.stdin.readline()
out = [[d.run.id, *deliver(sys.argv[1], d)] for d in deliveries]
print(json.dumps(out), flush=True)
"""


def _api_server_pids(c: ProductionCluster) -> set[str]:
    log = (c.home / "api-server.log").read_text(errors="replace")
    return set(re.findall(r"Started server process \[(\d+)\]", log))


def _http_burst(c: ProductionCluster, emu: ClusterEmulator) -> Counter:
    url = f"{c.base_url}/monid/api/v1/exa/webhooks/{CONN}"
    answers: list[tuple[str, int, Any]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(HTTP_RUNS) * COPIES)

    def send(run_id: str) -> None:
        barrier.wait(timeout=60)
        answer = emu.exa.deliver_webhook(url, SECRET, MONITOR, run_id, timeout=120)
        with lock:
            answers.append((run_id, answer["status"], answer["body"]))

    threads = [threading.Thread(target=send, args=(r,)) for r in HTTP_RUNS for _ in range(COPIES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == len(HTTP_RUNS) * COPIES
    assert {status for _, status, _ in answers} == {200}, answers
    return Counter((run_id, body["status"], body["asset_events"]) for run_id, _, body in answers)


def _start_receivers(c: ProductionCluster) -> list[subprocess.Popen]:
    """Two receiver processes on the cluster's database, started early: importing Airflow takes seconds."""
    return [c.start_in_airflow_env(RECEIVER, CONN, str(len(RACE_RUNS))) for _ in range(2)]


def _receivers_race(procs: list[subprocess.Popen], emu: ClusterEmulator) -> Counter:
    for p in procs:
        assert p.stdin is not None
        for run_id in RACE_RUNS:  # each process its own event ids, as Exa's retries have
            p.stdin.write(json.dumps(emu.exa.webhook_body(MONITOR, run_id)) + "\n")
        p.stdin.flush()
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:  # released together
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        assert p.stdout is not None
        results.append(json.loads(p.stdout.readline()))
        assert p.wait(timeout=60) == 0
    return Counter((run_id, status, body["status"]) for out in results for run_id, status, body in out)


def test_deliveries_racing_across_api_server_processes_make_one_event_per_run(
    production: ProductionCluster, cluster_emulator: ClusterEmulator
) -> None:
    c, emu = production, cluster_emulator
    assert len(_api_server_pids(c)) >= API_WORKERS == 2  # uvicorn logs each worker process it starts
    with webhook_dag_on(c, emu, MONITOR):
        polls = watcher_polled(emu, MONITOR)
        _wait(c, "the watcher's first poll", lambda: watcher_polled(emu, MONITOR) > polls, timeout=120)
        for run_id in (*HTTP_RUNS, *RACE_RUNS):
            emu.exa.add_run(MONITOR, run_id=run_id, status="running", polls_to_finish=None)
        procs = _start_receivers(c)
        held = emu.hold("GET", f"/monitors/{MONITOR}/runs", max_hold=180)
        try:
            held.wait_arrived()
            for run_id in (*HTTP_RUNS, *RACE_RUNS):
                emu.exa.finish_run(MONITOR, run_id)
            over_http = _http_burst(c, emu)
            raced = _receivers_race(procs, emu)
        finally:
            held.release()
            for p in procs:
                if p.poll() is None:
                    p.kill()

        for run_id in HTTP_RUNS:  # one delivery registered the run; every other one found it registered
            assert over_http[(run_id, "delivered", 1)] == 1, over_http
            assert over_http[(run_id, "duplicate", 0)] == COPIES - 1, over_http
        for run_id in RACE_RUNS:
            assert raced[(run_id, 200, "delivered")] == 1, raced
            assert raced[(run_id, 200, "duplicate")] == 1, raced

        polls = watcher_polled(emu, MONITOR)
        _wait(c, "two more safety-net polls", lambda: watcher_polled(emu, MONITOR) >= polls + 2)
        assert sorted(event_runs(c, MONITOR)) == sorted((*HTTP_RUNS, *RACE_RUNS))  # one asset event per run
        logs = "".join(p.read_text(errors="replace") for p in c.log_files() if p.is_file())
        assert SECRET not in logs
