"""Apache Airflow provider for Monid paid data endpoints and Exa monitor runs."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def get_provider_info() -> dict[str, Any]:
    """Entry point read by Airflow's ProvidersManager (``apache_airflow_provider``)."""
    from airflow_monid.get_provider_info import get_provider_info as _info

    return _info()
