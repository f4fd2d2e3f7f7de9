"""Run every example DAG with dag.test() on a local SQLite Airflow home against the emulator.

Prints what each task produced. No API key or network needed: connections point at the bundled
emulator, which is started here on a free 127.0.0.1 port.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".airflow-demo"
DEMO_MONID_KEY = "demo-monid-key-not-a-secret"
DEMO_EXA_KEY = "demo-exa-key-not-a-secret"


def _prepare_home() -> None:
    shutil.rmtree(HOME, ignore_errors=True)
    (HOME / "dags").mkdir(parents=True)
    (HOME / "dags" / "example_dags").symlink_to(ROOT / "example_dags")
    os.environ.update(
        AIRFLOW_HOME=str(HOME),
        AIRFLOW__CORE__DAGS_FOLDER=str(HOME / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
    )


def _short(value: object, limit: int = 160) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def main() -> int:
    _prepare_home()
    sys.path.insert(0, str(ROOT))
    from airflow_monid.testing import Emulator
    from airflow_monid.testing.__main__ import seed_exa
    from tests._support import exa_conn, load_dag, monid_conn, task_states, xcoms

    emulator = Emulator(monid_api_key=DEMO_MONID_KEY, exa_api_key=DEMO_EXA_KEY).start()
    seed_exa(emulator)
    os.environ["AIRFLOW_CONN_MONID_DEFAULT"] = monid_conn(emulator.url, DEMO_MONID_KEY)
    os.environ["AIRFLOW_CONN_EXA_DEFAULT"] = exa_conn(emulator.url, DEMO_EXA_KEY)
    print(f"Emulator listening on {emulator.url}")

    from airflow.utils import db

    logging.disable(logging.WARNING)
    db.resetdb()
    failures = 0
    for path in sorted((ROOT / "example_dags").glob("*.py")):
        dag = load_dag(path)
        started = time.monotonic()
        dag_run = dag.test()
        elapsed = time.monotonic() - started
        print(f"\n=== {dag.dag_id}: {dag_run.state} in {elapsed:.1f} s  ({path.name})")
        states = task_states(dag.dag_id, dag_run.run_id)
        values = xcoms(dag.dag_id, dag_run.run_id)
        for (task_id, map_index), state in sorted(states.items()):
            label = task_id if map_index < 0 else f"{task_id}[{map_index}]"
            result = values.get((task_id, "return_value", map_index))
            print(f"  {label:<28} {state:<8} -> {_short(result)}")
        failures += dag_run.state != "success"
    paid = emulator.count("POST", "/v1/run")
    print(f"\nEmulator saw {len(emulator.requests())} API requests, {paid} of them paid Monid runs.")
    emulator.stop()
    _print_spend()
    print("\nAll example DAGs succeeded." if not failures else f"\n{failures} example DAG(s) did not succeed.")
    return 1 if failures else 0


def _print_spend() -> None:
    """What the example DAGs spent (their spend records), and where to see it per DAG, task and day."""
    from airflow.utils.session import create_session

    from airflow_monid._spend.query import SpendFilter
    from airflow_monid._spend.report import public, spend_report

    with create_session() as session:
        report = public(
            spend_report(
                session, SpendFilter.parse(None, None), "dag", readable=None, may_see_workspace=bool, bill=None
            )
        )
    print(
        f"\nMonid spend recorded by the example DAGs: {report['total']:g} {report['currency']} "
        f"over {report['runs']} runs."
    )
    print(
        "See it on the Monid spend page (per DAG, task, endpoint and day):\n"
        f"  AIRFLOW_HOME={HOME} AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True "
        ".venv/bin/airflow api-server --port 8080\n"
        "  then open http://127.0.0.1:8080/monid/spend (JSON: http://127.0.0.1:8080/monid/api/v1/spend?group_by=dag;\n"
        "  Airflow 3.1+: Browse > Monid spend, and a Monid spend tab on each DAG). The emulator has stopped, so the\n"
        "  page says Monid's own figures are unavailable and shows Airflow's records."
    )


if __name__ == "__main__":
    sys.exit(main())
