"""Apache Airflow provider for Monid paid data endpoints and Exa monitor runs.

Airflow finds it through the ``apache_airflow_provider`` entry point,
``airflow_monid.get_provider_info:get_provider_info`` (the layout of the official providers).
"""

from __future__ import annotations

__version__ = "0.1.0"
