"""A: N mapped sync Monid runs through MonidRunOperator (benchmarks/task_overhead.py).

Defaults only (validate_input, durable ledger, spend record, shared inspect cache); the connection
``monid_default`` is stored in the metadata database, so the worker reads it through the Execution API.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

from airflow_monid.operators.monid import MonidRunOperator

N = int(os.environ.get("BENCH_N", "10"))

with DAG("overhead_monid", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, max_active_tasks=N + 10):
    MonidRunOperator.partial(task_id="run", provider="apify", endpoint="/bench/endpoint").expand(
        input=[{"i": i} for i in range(N)]
    )
