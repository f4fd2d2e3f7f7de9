"""Fixtures for the production-shape tests (PostgreSQL, CeleryExecutor on Redis, two workers, two
triggerers; see tests/integration/production_cluster.py and tests/integration/README.md).

- ``production_cluster`` (package): a started :class:`ProductionCluster` (two API-server processes)
  with the session emulator's connections (``integration_connections``) and the shared DAGs folder.
  Package-scoped, so it is stopped before the SQLite cluster of the other integration tests starts.
  Tests using it must be marked ``production`` and ``integration`` (the 3.0.6 run deselects ``integration``).
- ``production``: the cluster with every component a previous test took down started again.
- ``production_trigger_rows`` (package): decrypted trigger rows of this cluster, in milliseconds.

Missing PostgreSQL binaries, ``redis-server`` or the Celery provider skip these tests with the reason,
or fail them under ``CI=true`` (``skip_or_fail`` of tests/integration/conftest.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    EVENT_DRIVEN_EXAMPLES,
    EXAMPLE_DAGS,
    _save_logs,
    connections_to_env,
    skip_or_fail,
)
from tests.integration.production_cluster import ProductionCluster, production_unavailable_reason
from tests.integration.provider_support import TriggerRowReader

API_WORKERS = 2


@pytest.fixture(scope="session")
def integration_connections(integration_connections: Mapping[str, Any]) -> Mapping[str, Any]:
    """The session connections with per-run status polling: these tests tell which triggerer took over
    which run from that run's own GET. The shared poller (the default) runs on the SQLite cluster's
    tests and on a real triggerer in benchmarks/triggerer_scale.py."""
    monid = dict(integration_connections["monid_default"])
    monid["extra"] = {**monid["extra"], "batch_status_polling": False}
    return {**integration_connections, "monid_default": monid}


#: stage timings and failover figures, printed in the terminal summary
REPORT: dict[str, str] = {}
_FAILED: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "production: PostgreSQL + CeleryExecutor on Redis + two workers + two triggerers (production shape)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if "production_cluster" not in getattr(item, "fixturenames", ()):
        return
    missing = [m for m in ("production", "integration") if item.get_closest_marker(m) is None]
    if missing:
        pytest.fail(f"{item.nodeid} uses the production cluster but is not marked {missing}", pytrace=False)
    reason = production_unavailable_reason()
    if reason:
        skip_or_fail(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[Any]:
    outcome: Any = yield
    report = outcome.get_result()
    if report.failed and "production_cluster" in getattr(item, "fixturenames", ()):
        _FAILED.append(item.nodeid)
    if report.when == "call" and "production_cluster" in getattr(item, "fixturenames", ()):
        REPORT[f"test {item.name}"] = f"{report.outcome} in {report.duration:.1f}s"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.write_sep(
            "-", "production-shape cluster (PostgreSQL, Celery on Redis, 2 workers, 2 triggerers)"
        )
        for key, value in REPORT.items():
            terminalreporter.write_line(f"{key}: {value}")


@pytest.fixture(scope="package")
def production_cluster(
    tmp_path_factory: pytest.TempPathFactory, airflow_dags_folder: Path, integration_connections: Mapping[str, Any]
) -> Iterator[ProductionCluster]:
    reason = production_unavailable_reason()
    if reason:
        skip_or_fail(reason)
    home = tmp_path_factory.mktemp("airflow-production-home")
    # two API-server processes, as deployments run them: the webhook receiver's dedupe must hold across them
    cluster = ProductionCluster(
        home, airflow_dags_folder, connections_to_env(integration_connections), api_workers=API_WORKERS
    )
    t0 = time.monotonic()
    try:
        cluster.start(timeout=float(os.environ.get("AIRFLOW_IT_START_TIMEOUT", "240")))
    except Exception as exc:
        cluster.stop()
        dest = _save_logs(cluster, "production-start-failure")
        pytest.fail(f"production-shape cluster did not start: {exc}\nlogs: {dest}", pytrace=False)
    try:
        _pause_event_driven_examples(cluster)
    except Exception as exc:
        cluster.stop()
        pytest.fail(f"could not pause the event-driven example DAGs: {exc}", pytrace=False)
    REPORT["AIRFLOW_HOME"] = str(home)
    REPORT["start"] = ", ".join(f"{k}={v:.1f}s" for k, v in cluster.timings.items())
    try:
        yield cluster
    finally:
        t1 = time.monotonic()
        cluster.stop()
        REPORT["stop"] = f"{time.monotonic() - t1:.1f}s (cluster alive {t1 - t0:.1f}s)"
        if _FAILED:
            REPORT["logs copied to"] = str(_save_logs(cluster, "production-failure"))


def _pause_event_driven_examples(c: ProductionCluster) -> None:
    c.pause_dags(
        [d for d in EVENT_DRIVEN_EXAMPLES if (EXAMPLE_DAGS / f"{d}.py").exists()],
        lambda: not c.sql("SELECT id FROM trigger WHERE classpath LIKE %s", ("%Watcher",)),
    )


@pytest.fixture
def production(production_cluster: ProductionCluster) -> ProductionCluster:
    """The cluster with every component up: what an earlier test killed is started again first."""
    took = production_cluster.revive()
    for name, seconds in took.items():
        REPORT[f"restart {name}"] = f"{seconds:.1f}s"
    production_cluster.check_alive()
    return production_cluster


@pytest.fixture(scope="package")
def production_trigger_rows(production_cluster: ProductionCluster) -> Iterator[TriggerRowReader]:
    reader = TriggerRowReader(production_cluster)
    try:
        yield reader
    finally:
        reader.close()
