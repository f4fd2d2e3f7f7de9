"""Airflow version flags and the few imports whose home differs between Airflow 3.0 and 3.3.

Kept private to this provider, as every official provider does, so that widening support later
(Airflow 2.11) means editing this one module.
"""

from __future__ import annotations

from airflow.providers.common.compat.version_compat import (
    AIRFLOW_V_3_1_PLUS,
    AIRFLOW_V_3_2_PLUS,
    AIRFLOW_V_3_3_PLUS,
    AIRFLOW_V_3_4_PLUS,
)

__all__ = ["AIRFLOW_V_3_1_PLUS", "AIRFLOW_V_3_2_PLUS", "AIRFLOW_V_3_3_PLUS", "AIRFLOW_V_3_4_PLUS"]
