"""What every DAG spends: spend records (worker side), SQL aggregation and reconciliation with
Monid's own bill (API server side). README "Spend: what every DAG costs"."""

from __future__ import annotations

from airflow_monid._spend.records import (
    SAVED_KEY_END,
    SAVED_KEY_PREFIX,
    SPEND_KEY_END,
    SPEND_KEY_PREFIX,
    build_record,
    record_exa_spend,
    record_saved,
    record_spend,
    record_stopped,
    spend_key,
)

__all__ = [
    "SAVED_KEY_END",
    "SAVED_KEY_PREFIX",
    "SPEND_KEY_END",
    "SPEND_KEY_PREFIX",
    "build_record",
    "record_exa_spend",
    "record_saved",
    "record_spend",
    "record_stopped",
    "spend_key",
]
