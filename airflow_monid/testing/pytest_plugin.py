"""Pytest fixtures for the emulator. Enable with ``pytest_plugins = ["airflow_monid.testing.pytest_plugin"]``.

* ``monid_emulator``: the emulator, reset, with the ``monid_default`` and ``exa_default``
  connections pointing at it for the test (``AIRFLOW_CONN_*`` variables, restored afterwards).
  What a test of your own DAGs wants.
* ``emulator``: the emulator, reset before and after the test; no connections.
* ``emulator_server``: the session's emulator, as is.

One server per session (start-up is cheap, but re-binding per test would churn ports); each test gets it
reset. Override these session fixtures in a conftest to change what the emulator and the connections
expect:

* ``emulator_monid_key`` / ``emulator_exa_key``: the keys the emulator requires (``None``: any key);
* ``emulator_conn_extra``: the connections' extras (default none, so the production retry settings).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from airflow_monid.testing.emulator import Emulator
from airflow_monid.testing.helpers import connection_env

MONID_TEST_KEY = "test-monid-key"
EXA_TEST_KEY = "test-exa-key"


@pytest.fixture(scope="session")
def emulator_monid_key() -> str | None:
    """The Monid key the emulator requires; ``None`` accepts any."""
    return MONID_TEST_KEY


@pytest.fixture(scope="session")
def emulator_exa_key() -> str | None:
    """The Exa key the emulator requires; ``None`` accepts any."""
    return EXA_TEST_KEY


@pytest.fixture(scope="session")
def emulator_conn_extra() -> dict[str, Any]:
    """Extras of the connections ``monid_emulator`` sets, e.g. ``{"max_attempts": 3, "backoff_base": 0.05}``."""
    return {}


@pytest.fixture(scope="session")
def emulator_server(emulator_monid_key: str | None, emulator_exa_key: str | None) -> Iterator[Emulator]:
    """The session's emulator, started once and stopped at the end of the session."""
    emu = Emulator(monid_api_key=emulator_monid_key, exa_api_key=emulator_exa_key)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def emulator(emulator_server: Emulator) -> Iterator[Emulator]:
    """The emulator, reset (default catalog, no runs, monitors, faults or logged requests) and running."""
    emulator_server.reset()
    if not emulator_server.running:  # a previous test may have stopped it to simulate an outage
        emulator_server.start()
    yield emulator_server
    emulator_server.reset()


@pytest.fixture
def monid_emulator(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, emulator_conn_extra: dict[str, Any]
) -> Emulator:
    """The emulator (as ``emulator``) with ``monid_default`` and ``exa_default`` pointing at it.

    Sets ``AIRFLOW_CONN_MONID_DEFAULT`` and ``AIRFLOW_CONN_EXA_DEFAULT`` (JSON: the emulator's URL
    as the host, its key as the password, ``emulator_conn_extra`` as the extras) for this test;
    pytest puts back the previous values afterwards.
    """
    for name, value in connection_env(emulator, extra=emulator_conn_extra).items():
        monkeypatch.setenv(name, value)
    return emulator
