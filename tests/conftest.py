"""Test set-up: an isolated Airflow home with SQLite, the emulator, and connections pointing at it.

Environment variables are set here, before anything imports Airflow.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="monid-airflow-home-"))
_DAGS = _HOME / "dags"
_DAGS.mkdir()
_REPO = Path(__file__).resolve().parent.parent
# dag.test() needs the DAG file inside the DAGs folder; links keep the files where they live.
(_DAGS / "example_dags").symlink_to(_REPO / "example_dags")
(_DAGS / "test_dags").symlink_to(_REPO / "tests" / "dags")

os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_DAGS)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")

import pytest  # noqa: E402

from airflow_monid.testing.emulator import Emulator  # noqa: E402
from tests._support import EXA_KEY, MONID_KEY, set_connections  # noqa: E402

pytest_plugins = ["airflow_monid.testing.pytest_plugin"]


@pytest.fixture(scope="session")
def emulator_monid_key() -> str:
    return MONID_KEY


@pytest.fixture(scope="session")
def emulator_exa_key() -> str:
    return EXA_KEY


@pytest.fixture(scope="session", autouse=True)
def one_in_process_execution_api() -> Iterator[None]:
    """Build ``dag.test()``'s in-process Execution API once per session, as Airflow 3.3 does.

    Before 3.3, ``in_process_api_server()`` builds a new Cadwyn app, and an a2wsgi thread that is
    never stopped, for every task ``dag.test()`` runs: about a second of CPU each, most of the 3.0-3.2
    suites' time. 3.3 wraps it in ``functools.lru_cache(maxsize=1)``; the same here. Each task still
    gets a fresh DAG bag (``_api_client`` overrides it per task), so no DAG is served stale.
    """
    import functools

    from airflow_monid.version_compat import AIRFLOW_V_3_3_PLUS

    if AIRFLOW_V_3_3_PLUS:
        yield
        return
    from airflow.sdk.execution_time import supervisor

    original = supervisor.in_process_api_server
    supervisor.in_process_api_server = functools.lru_cache(maxsize=1)(original)
    try:
        yield
    finally:
        supervisor.in_process_api_server = original


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated metadata DB, once per session (dag.test() needs one)."""
    from airflow.utils import db

    db.resetdb()
    return _HOME


@pytest.fixture
def connections(emulator: Emulator) -> Iterator[Emulator]:
    """The emulator, reset, with monid_default and exa_default pointing at it."""
    set_connections(emulator.url)
    yield emulator


@pytest.fixture
def dag_env(airflow_db: Path, connections: Emulator) -> Emulator:
    """Everything a dag.test() run needs; returns the emulator."""
    return connections
