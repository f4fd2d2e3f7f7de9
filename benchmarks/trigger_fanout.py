"""How many Monid triggers one event loop can hold: N MonidRunTrigger.run() against the emulator.

Prints the client set-up cost (pooled vs one httpx.AsyncClient per trigger), then for each N and
polling mode (per-run ``GET``s, the shared poller's list pages) the wall time until every trigger
yielded its event, the requests the API saw, the CPU time used and the number of pooled clients.
In-process, no Airflow: benchmarks/triggerer_scale.py measures a real triggerer.
Run: .venv/bin/python benchmarks/trigger_fanout.py [N ...]
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time

import httpx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from airflow_monid.testing import Emulator
from tests._support import MONID_KEY, monid_conn


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _client_costs(n: int = 200) -> None:
    started = time.perf_counter()
    clients = [httpx.AsyncClient() for _ in range(n)]
    per_client = (time.perf_counter() - started) / n * 1000
    for client in clients:
        await client.aclose()
    from airflow_monid._http.policy import ApiSettings
    from airflow_monid._http.transport import async_client
    from airflow_monid.hooks.monid import MONID_PROFILE

    settings = ApiSettings(profile=MONID_PROFILE, base_url="https://api.monid.ai", api_key="x")
    started = time.perf_counter()
    for _ in range(n):
        async_client(settings)
    pooled = (time.perf_counter() - started) / n * 1000
    print(f"client set-up: new httpx.AsyncClient {per_client:.2f} ms each; pooled lookup {pooled:.4f} ms each")


async def _fanout(emu: Emulator, n: int, polls: int, conn_id: str) -> None:
    from airflow_monid._http.transport import pool_size
    from airflow_monid.triggers.monid import MonidRunTrigger

    emu.reset()
    emu.monid.set_endpoint("apify", "/apidojo/tweet-scraper", mode="async", polls_to_finish=polls)
    run_ids = [emu.monid.add_run(status="RUNNING", polls_to_finish=polls)["runId"] for _ in range(n)]
    created = emu.monid.get_run(run_ids[0])["createdAt"]
    triggers = [
        MonidRunTrigger(r, conn_id, poll_interval=1.0, end_time=time.time() + 600, created_at=created) for r in run_ids
    ]

    async def one(trigger: MonidRunTrigger) -> str:
        async for event in trigger.run():
            return str(event.payload["status"])
        return "none"

    cpu, started = _cpu(), time.perf_counter()
    results = await asyncio.gather(*(one(t) for t in triggers))
    wall, used = time.perf_counter() - started, _cpu() - cpu
    gets = emu.count("GET", path_prefix="/v1/runs/")
    pages = emu.count("GET", path="/v1/runs")
    print(
        f"N={n:>5} {conn_id:>13}: all events in {wall:6.2f} s, {gets} run GETs + {pages} list pages, CPU {used:5.2f} s "
        f"(client+server, one process), events={sorted(set(results))}, pooled async clients={pool_size()[1]}"
    )


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [100, 500, 1000]
    emu = Emulator(monid_api_key=MONID_KEY).start()
    os.environ["AIRFLOW_CONN_MONID_DEFAULT"] = monid_conn(emu.url, timeout=30, max_attempts=6)
    os.environ["AIRFLOW_CONN_MONID_PER_RUN"] = monid_conn(
        emu.url, timeout=30, max_attempts=6, batch_status_polling=False
    )
    asyncio.run(_client_costs())
    for n in sizes:
        for conn_id in ("monid_per_run", "monid_default"):
            asyncio.run(_fanout(emu, n, polls=3, conn_id=conn_id))
    emu.stop()


if __name__ == "__main__":
    main()
