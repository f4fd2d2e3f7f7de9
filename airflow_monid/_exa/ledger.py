"""What the run ledger records around Exa's billed trigger (README "Decision table", rows E1-E7).

``POST /monitors/{id}/trigger`` answers ``{"triggered": true}`` and no run id, so the operator writes
its intent before the POST (with the run ids already listed: the snapshot), the answer after it, and
the run id once a new run appears. A retry reads the phase to wait, adopt or trigger again.
"""

from __future__ import annotations

import hashlib

from airflow_monid.models.exa import ExaRunStatus

LEDGER_KEY = "exa_monitor_run"  # the task_state_store key of an Exa task's ledger entry

ABOUT_TO_TRIGGER = "about_to_trigger"  # written before POST /trigger, with the snapshot of run ids
TRIGGERED = "triggered"  # written once Exa answered {"triggered": true}
REFUSED = "refused"  # the trigger failed in a way that started nothing (never arrived, 429, 4xx)

# Runs a later try may reuse instead of paying for a new trigger.
REUSABLE = frozenset({ExaRunStatus.PENDING, ExaRunStatus.RUNNING, ExaRunStatus.UNKNOWN, ExaRunStatus.COMPLETED})


def monitor_digest(monitor_id: str) -> str:
    """What an Exa task asks for: a run of this monitor (its input is the monitor's own query)."""
    return hashlib.sha256(f"exa-search-monitor:{monitor_id}".encode()).hexdigest()
