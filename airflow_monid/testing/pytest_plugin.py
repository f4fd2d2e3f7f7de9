"""Pytest fixtures for the emulator. Enable with ``pytest_plugins = ["airflow_monid.testing.pytest_plugin"]``.

One server per session (start-up is cheap, but re-binding per test would churn ports); each test gets it
reset. Override ``emulator_monid_key`` / ``emulator_exa_key`` in a conftest to change the expected keys.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_monid.testing.emulator import Emulator

MONID_TEST_KEY = "test-monid-key"
EXA_TEST_KEY = "test-exa-key"


@pytest.fixture(scope="session")
def emulator_monid_key() -> str | None:
    return MONID_TEST_KEY


@pytest.fixture(scope="session")
def emulator_exa_key() -> str | None:
    return EXA_TEST_KEY


@pytest.fixture(scope="session")
def emulator_server(emulator_monid_key: str | None, emulator_exa_key: str | None) -> Iterator[Emulator]:
    emu = Emulator(monid_api_key=emulator_monid_key, exa_api_key=emulator_exa_key)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def emulator(emulator_server: Emulator) -> Iterator[Emulator]:
    emulator_server.reset()
    if not emulator_server.running:  # a previous test may have stopped it to simulate an outage
        emulator_server.start()
    yield emulator_server
    emulator_server.reset()
