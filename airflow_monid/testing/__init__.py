"""Local emulator of the Monid and Exa APIs for tests, demos and benchmarks, and helpers to test DAGs with it.

The emulator is standard library only; the helpers import Airflow when called. See ``docs/testing.md``.
"""

from __future__ import annotations

from airflow_monid.testing._common import DEFAULT
from airflow_monid.testing._exa import ExaState
from airflow_monid.testing._monid import MonidState
from airflow_monid.testing._monid_catalog import EndpointScript
from airflow_monid.testing.emulator import Emulator, Fault, RecordedRequest
from airflow_monid.testing.helpers import (
    arun_trigger_until_event,
    asset_event_map,
    asset_events,
    awatcher_events,
    connection_env,
    emulator_connections,
    exa_watcher,
    run_trigger_until_event,
    watcher_events,
    xcom_value,
)

__all__ = [
    "DEFAULT",
    "Emulator",
    "EndpointScript",
    "ExaState",
    "Fault",
    "MonidState",
    "RecordedRequest",
    "arun_trigger_until_event",
    "asset_event_map",
    "asset_events",
    "awatcher_events",
    "connection_env",
    "emulator_connections",
    "exa_watcher",
    "run_trigger_until_event",
    "watcher_events",
    "xcom_value",
]
