"""An auth manager for the spend page's cluster test (no tests here): Airflow's SimpleAuthManager,
except that the user ``analyst`` may not read the DAG ``spend_it_secret``. SimpleAuthManager has no
per-DAG rules; a real deployment's auth manager (FAB, Keycloak...) has, and the page asks it the same
way (``get_authorized_dag_ids``).
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

RESTRICTED_USER = "analyst"
SECRET_DAG = "spend_it_secret"


class ScopedAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        if getattr(user, "username", None) == RESTRICTED_USER and getattr(details, "id", None) == SECRET_DAG:
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
