"""``[core] hostname_callable`` of the production-shape cluster: every process is named after its
component (``worker-1``, ``triggerer-2``, ...), so the ``job`` rows of the two triggerers and the
``hostname`` of a task instance say which process it was. Kept import-light: every Airflow process
and task imports it."""

from __future__ import annotations

import os
import socket


def component_hostname() -> str:
    return os.environ.get("AIRFLOW_IT_COMPONENT") or socket.getfqdn()
