"""Local emulator of the Monid and Exa APIs for tests, demos and benchmarks (standard library only)."""

from __future__ import annotations

from airflow_monid.testing._common import DEFAULT
from airflow_monid.testing._exa import ExaState
from airflow_monid.testing._monid import MonidState
from airflow_monid.testing._monid_catalog import EndpointScript
from airflow_monid.testing.emulator import Emulator, Fault, RecordedRequest

__all__ = ["DEFAULT", "Emulator", "EndpointScript", "ExaState", "Fault", "MonidState", "RecordedRequest"]
