"""Shared constants and helpers for the test suite (keys, DAG runs, XCom reads)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_DAGS = REPO / "example_dags"
TEST_DAGS = REPO / "tests" / "dags"

# One long, distinctive key per API, used by every fixture, so a leak scan can look for it anywhere.
MONID_KEY = "mk_test_LEAKCANARY_monid_7Q3vLr9XpZ2sW8nB4yT6uC1dF5gH0jK"
EXA_KEY = "exa_test_LEAKCANARY_exa_4Rt8Yu2Io6Pa1Sd5Fg9Hj3Kl7Zx0Cv"

# Fast retry bounds for tests: the defaults (6 attempts, up to 120 s, Retry-After capped at 60 s)
# are right for production and too slow for a test suite.
FAST_EXTRAS = {
    "timeout": 5,
    "connect_timeout": 2,
    "max_attempts": 4,
    "max_retry_seconds": 10,
    "retry_after_cap": 2,
    "backoff_base": 0.05,
    "backoff_max": 0.2,
}


def monid_conn(url: str, key: str = MONID_KEY, **extra: Any) -> str:
    return json.dumps({"conn_type": "monid", "host": url, "password": key, "extra": {**FAST_EXTRAS, **extra}})


def exa_conn(url: str, key: str = EXA_KEY, **extra: Any) -> str:
    return json.dumps({"conn_type": "exa", "host": url, "password": key, "extra": {**FAST_EXTRAS, **extra}})


def set_connections(url: str) -> None:
    os.environ["AIRFLOW_CONN_MONID_DEFAULT"] = monid_conn(url)
    os.environ["AIRFLOW_CONN_EXA_DEFAULT"] = exa_conn(url)


def load_dag(path: Path, dag_id: str | None = None) -> Any:
    """Import a DAG file and return its DAG (the file must live under the DAGs folder for dag.test())."""
    spec = importlib.util.spec_from_file_location(f"dagfile_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from airflow.sdk import DAG

    dags = [v for v in vars(module).values() if isinstance(v, DAG)]
    if dag_id:
        dags = [d for d in dags if d.dag_id == dag_id]
    assert len(dags) == 1, f"expected one DAG in {path}, found {[d.dag_id for d in dags]}"
    return dags[0]


def xcoms(dag_id: str, run_id: str) -> dict[tuple[str, str, int], Any]:
    """Every XCom of a DAG run as {(task_id, key, map_index): value}."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag_id, run_id=run_id).all()
        return {(r.task_id, r.key, r.map_index): _plain(r.value) for r in rows}


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def task_states(dag_id: str, run_id: str) -> dict[tuple[str, int], str | None]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id).all()
        return {(r.task_id, r.map_index): (r.state.value if hasattr(r.state, "value") else r.state) for r in rows}


def task_tries(dag_id: str, run_id: str, task_id: str) -> int:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id).one()
        return int(ti.try_number)
