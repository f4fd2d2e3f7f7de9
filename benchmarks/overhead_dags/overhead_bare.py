"""B: the same N POST /v1/run made by a bare mapped @task with httpx.post (benchmarks/task_overhead.py).

Imports nothing from airflow_monid (a task parses its own DAG file: the provider's import cost stays in A).
Returns the run's output, as A does.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import httpx
from airflow.sdk import dag, task

N = int(os.environ.get("BENCH_N", "10"))
URL = os.environ.get("BENCH_MONID_URL", "http://127.0.0.1:1")
KEY = os.environ.get("BENCH_MONID_KEY", "")


@task
def post(payload: dict[str, Any]) -> Any:
    body = {"provider": "apify", "endpoint": "/bench/endpoint", "input": payload}
    response = httpx.post(f"{URL}/v1/run", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    response.raise_for_status()
    return response.json()["output"]


@dag("overhead_bare", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, max_active_tasks=N + 10)
def overhead_bare() -> None:
    post.expand(payload=[{"i": i} for i in range(N)])


overhead_bare()
