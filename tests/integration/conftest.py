"""Fixtures for the real-Airflow integration tests (see README.md in this folder).

- ``airflow_cluster`` (session): api-server + scheduler + dag-processor + triggerer on SQLite with
  LocalExecutor, in a temporary AIRFLOW_HOME. Tests that use it must carry
  ``@pytest.mark.integration`` (enforced in ``pytest_runtest_setup`` below).
- ``integration_emulator`` (session) / ``cluster_emulator`` (function, reset before and after the
  test): the Monid/Exa emulator the cluster talks to, on one port for the whole session, expecting
  the distinctive keys ``MONID_KEY`` / ``EXA_KEY`` (tests/_support.py).
- ``integration_connections`` / ``integration_env`` (session): what the cluster's processes get as
  ``AIRFLOW_CONN_*`` and extra environment. Connections default to ``monid_default`` and
  ``exa_default`` pointing at the emulator; ``integration_env`` defaults to empty.
- ``trigger_row_reader`` (session): decrypted ``trigger`` rows in milliseconds (provider_support.py).
- ``ui_browser`` (module) / ``ui_page`` (function): headless system Chromium via Playwright.

Skip rule: when the airflow CLI, Playwright or Chromium is missing the tests are skipped with the
reason shown in the terminal summary, unless ``CI=true``, in which case they fail.

Run: ``.venv/bin/python -m pytest tests/integration -m "integration or browser" -q -p no:cacheprovider``
(add ``--confcutdir=tests/integration`` to keep ``tests/conftest.py`` out of it).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests._support import EXA_KEY, FAST_EXTRAS, MONID_KEY
from tests.integration.browser import browser_unavailable_reason
from tests.integration.cluster import REPO_ROOT, AirflowCluster, ClusterError, airflow_cli
from tests.integration.provider_support import ClusterEmulator, TriggerRowReader

INTEGRATION_DIR = Path(__file__).resolve().parent
EXAMPLE_DAGS = REPO_ROOT / "example_dags"
INTEGRATION_DAGS = INTEGRATION_DIR / "dags"
ARTIFACTS = REPO_ROOT / "test-artifacts"

_SKIP_REASONS: set[str] = set()
_CLUSTER_INFO: dict[str, Any] = {}
_FAILED_WITH_CLUSTER: list[str] = []


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip with a visible reason, or fail when running in CI (CI=true)."""
    if _in_ci():
        pytest.fail(f"{reason} (CI=true: missing tooling is an error)", pytrace=False)
    _SKIP_REASONS.add(reason)
    pytest.skip(reason)


# --------------------------------------------------------------------- hooks
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs a real multi-process Airflow cluster (scheduler, triggerer, API server)"
    )
    config.addinivalue_line("markers", "browser: drives the Airflow UI in headless Chromium")


def pytest_runtest_setup(item: pytest.Item) -> None:
    names = getattr(item, "fixturenames", ())
    if "airflow_cluster" in names and item.get_closest_marker("integration") is None:
        pytest.fail(
            f"{item.nodeid} uses the airflow_cluster fixture but is not marked @pytest.mark.integration",
            pytrace=False,
        )
    if ("ui_page" in names or "ui_browser" in names) and item.get_closest_marker("browser") is None:
        pytest.fail(f"{item.nodeid} drives a browser but is not marked @pytest.mark.browser", pytrace=False)
    # check tooling before any fixture runs, so a missing browser does not first start a cluster
    if "airflow_cluster" in names and airflow_cli() is None:
        skip_or_fail("the `airflow` CLI is not installed in this interpreter's environment")
    if "ui_page" in names or "ui_browser" in names:
        reason = browser_unavailable_reason()
        if reason:
            skip_or_fail(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[Any]:
    outcome: Any = yield
    report = outcome.get_result()
    if report.failed and "airflow_cluster" in getattr(item, "fixturenames", ()):
        _FAILED_WITH_CLUSTER.append(item.nodeid)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _SKIP_REASONS:
        terminalreporter.write_sep("-", "integration tests skipped")
        for reason in sorted(_SKIP_REASONS):
            terminalreporter.write_line(f"SKIPPED: {reason}")
    if _CLUSTER_INFO:
        terminalreporter.write_sep("-", "airflow cluster")
        for key, value in _CLUSTER_INFO.items():
            terminalreporter.write_line(f"{key}: {value}")


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def integration_emulator() -> Iterator[ClusterEmulator]:
    """The Monid/Exa emulator every cluster process talks to: one server for the whole session (its
    port is baked into the cluster's connections), expecting the distinctive keys MONID_KEY and
    EXA_KEY that the leak scan looks for. Tests get it reset through ``cluster_emulator``."""
    emu = ClusterEmulator(monid_api_key=MONID_KEY, exa_api_key=EXA_KEY).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def cluster_emulator(integration_emulator: ClusterEmulator) -> Iterator[ClusterEmulator]:
    """The session emulator, reset before and after the test (it keeps running on the same port)."""
    integration_emulator.reset()
    yield integration_emulator
    integration_emulator.reset()


@pytest.fixture(scope="session")
def integration_connections(integration_emulator: ClusterEmulator) -> Mapping[str, Any]:
    """Connections given to every cluster process as ``AIRFLOW_CONN_<ID>`` env vars.

    DEFAULT: ``monid_default`` and ``exa_default`` pointing at the session emulator with the
    distinctive keys, fast retry bounds (tests/_support.FAST_EXTRAS) and a realistic read timeout.
    Return ``{conn_id: value}`` where value is a dict (sent as the JSON form, e.g.
    ``{"conn_type": "monid", "host": "http://127.0.0.1:PORT", "password": "...", "extra": {...}}``)
    or a string (JSON or URI). Keys already spelled ``AIRFLOW_CONN_X`` are used as they are.

    To override, define a session-scoped fixture with the same name in a conftest.py of a
    *subdirectory* of tests/integration (it wins for the tests below it, and the session
    ``airflow_cluster`` is built with it), or replace this default here. Note the cluster is
    session-scoped: the first test that requests it decides its connections.
    """
    extra = {**FAST_EXTRAS, "timeout": 10}
    url = integration_emulator.url
    return {
        "monid_default": {"conn_type": "monid", "host": url, "password": MONID_KEY, "extra": extra},
        "exa_default": {"conn_type": "exa", "host": url, "password": EXA_KEY, "extra": extra},
    }


@pytest.fixture(scope="session")
def integration_env() -> Mapping[str, str]:
    """Extra environment for every cluster process (e.g. ``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE``).
    DEFAULT: none; override like ``integration_connections``."""
    return {}


def connections_to_env(connections: Mapping[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for conn_id, value in connections.items():
        key = conn_id if conn_id.startswith("AIRFLOW_CONN_") else f"AIRFLOW_CONN_{conn_id.upper()}"
        env[key] = value if isinstance(value, str) else json.dumps(value)
    return env


@pytest.fixture(scope="session")
def airflow_dags_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One DAGs folder with symlinks to example_dags/ and tests/integration/dags/ (Airflow has a
    single dags folder; links keep the files live and in place)."""
    folder = tmp_path_factory.mktemp("airflow-dags")
    if EXAMPLE_DAGS.is_dir():
        (folder / "example_dags").symlink_to(EXAMPLE_DAGS, target_is_directory=True)
    (folder / "integration_dags").symlink_to(INTEGRATION_DAGS, target_is_directory=True)
    return folder


#: example DAGs scheduled by an AssetWatcher: paused on the test clusters (their watcher has its own tests)
EVENT_DRIVEN_EXAMPLES = ("exa_monitor_event_driven", "exa_monitor_webhook")


@pytest.fixture(scope="session")
def airflow_cluster(
    tmp_path_factory: pytest.TempPathFactory,
    airflow_dags_folder: Path,
    integration_connections: Mapping[str, Any],
    integration_env: Mapping[str, str],
) -> Iterator[AirflowCluster]:
    if airflow_cli() is None:
        skip_or_fail("the `airflow` CLI is not installed in this interpreter's environment")
    home = tmp_path_factory.mktemp("airflow-home")
    env = {**connections_to_env(integration_connections), **dict(integration_env)}
    cluster = AirflowCluster(home, airflow_dags_folder, env)
    t0 = time.monotonic()
    try:
        cluster.start(timeout=float(os.environ.get("AIRFLOW_IT_START_TIMEOUT", "180")))
    except ClusterError as exc:
        cluster.stop()
        _save_logs(cluster, "start-failure")
        pytest.fail(f"Airflow cluster did not start: {exc}", pytrace=False)
    try:
        # The event-driven example's watcher would poll the session emulator on its own, in every test.
        cluster.pause_dags(
            [d for d in EVENT_DRIVEN_EXAMPLES if (EXAMPLE_DAGS / f"{d}.py").exists()],
            lambda: not any(r.classpath.endswith("Watcher") for r in cluster.trigger_rows()),
        )
    except Exception as exc:
        cluster.stop()
        pytest.fail(f"could not pause the event-driven example DAGs: {exc}", pytrace=False)
    _CLUSTER_INFO["AIRFLOW_HOME"] = str(home)
    _CLUSTER_INFO["base_url"] = cluster.base_url
    _CLUSTER_INFO["start"] = ", ".join(f"{k}={v:.1f}s" for k, v in cluster.timings.items())
    try:
        yield cluster
    finally:
        t1 = time.monotonic()
        cluster.stop()
        _CLUSTER_INFO["stop"] = f"{time.monotonic() - t1:.1f}s (fixture alive {t1 - t0:.1f}s)"
        restarts = {k: f"{v:.1f}s" for k, v in cluster.timings.items() if k.startswith("restart_")}
        if restarts:
            _CLUSTER_INFO["restarts"] = restarts
        if _FAILED_WITH_CLUSTER:
            _CLUSTER_INFO["logs copied to"] = str(_save_logs(cluster, "failure"))


@pytest.fixture(scope="session")
def trigger_row_reader(airflow_cluster: AirflowCluster) -> Iterator[TriggerRowReader]:
    """Fast reader of the decrypted ``trigger`` rows (one long-lived interpreter; see provider_support)."""
    reader = TriggerRowReader(airflow_cluster)
    try:
        yield reader
    finally:
        reader.close()


def _save_logs(cluster: AirflowCluster, label: str) -> Path:
    """Copy every log under AIRFLOW_HOME to test-artifacts/integration-logs/<time>-<label>/."""
    dest = ARTIFACTS / "integration-logs" / f"{time.strftime('%Y%m%dT%H%M%S')}-{label}"
    for path in cluster.log_files():
        target = dest / path.relative_to(cluster.home)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return dest


@pytest.fixture(scope="module")
def ui_browser() -> Iterator[Any]:
    """Headless Chromium, one per test module. Not session-wide: while Playwright's sync API is
    running, the main thread has a running asyncio loop, so ``asyncio.run()`` (e.g. ``dag.test()``
    running a trigger inline) fails in every later test of the same pytest process."""
    reason = browser_unavailable_reason()
    if reason:
        skip_or_fail(reason)
    from tests.integration.browser import chromium

    with chromium() as browser:
        yield browser


@pytest.fixture
def ui_page(ui_browser: Any) -> Iterator[Any]:
    from tests.integration.browser import new_page

    page = new_page(ui_browser)
    try:
        yield page
    finally:
        page.context.close()
