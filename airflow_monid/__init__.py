"""Apache Airflow provider for Monid paid data endpoints and Exa monitor runs.

Airflow finds it through the ``apache_airflow_provider`` entry point,
``airflow_monid.get_provider_info:get_provider_info`` (the layout of the official providers).

``ReusePolicy`` (``reuse_results=``) and ``SpendAlert`` (``spend_alert=``) are the arguments of
:class:`~airflow_monid.operators.monid.MonidRunOperator` and ``@task.monid`` that are classes.
"""

from __future__ import annotations

from airflow_monid._monid.reuse import ReusePolicy
from airflow_monid._runtime.alerts import SpendAlert

__version__ = "0.1.0"

__all__ = ["ReusePolicy", "SpendAlert", "__version__"]
