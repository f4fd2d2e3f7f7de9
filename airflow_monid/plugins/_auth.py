"""Who is asking, and what they may see: Airflow's own auth manager, on Airflow 3.0 to 3.3.

The user comes from the request's ``Authorization: Bearer`` token, the user Airflow's JWT refresh
middleware already resolved from its cookie (3.1+), Airflow's ``_token`` cookie, or the
``monid_spend_token`` cookie that the page's sign-in step copies from the Airflow UI's storage
(Airflow 3.0's UI keeps its token in ``localStorage``, which a plain page request cannot send).
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request, status

PAGE_COOKIE = "monid_spend_token"


def _auth_manager() -> Any:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


async def _from_token(token: str) -> Any:
    from jwt import ExpiredSignatureError, InvalidTokenError

    try:
        return await _auth_manager().get_user_from_token(token)
    except ExpiredSignatureError:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Token expired: sign in to Airflow again.") from None
    except InvalidTokenError:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Invalid token: sign in to Airflow again.") from None


def _trusted_marker() -> Any:
    try:
        from airflow.api_fastapi.core_api.security import USER_INJECTED_BY_TRUSTED_MIDDLEWARE
    except ImportError:  # Airflow < 3.3
        return None
    return USER_INJECTED_BY_TRUSTED_MIDDLEWARE


async def current_user(request: Request) -> Any:
    """FastAPI dependency: the signed-in Airflow user, else 401 (no credential) or 403 (a bad one)."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return await _from_token(header[7:].strip())
    marker = _trusted_marker()
    user = getattr(request.state, "user", None)
    if user is not None and marker is not None and getattr(request.state, "user_authenticated_via", None) is marker:
        return user
    for name in ("_token", PAGE_COOKIE):
        token = request.cookies.get(name)
        if token:
            return await _from_token(token)
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Not authenticated: sign in to Airflow first.")


def readable_dag_ids(user: Any) -> set[str]:
    """The DAGs the auth manager lets this user read (``requires_access_dag``'s rule, for many DAGs)."""
    return set(_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def may_read_connection(user: Any, conn_id: str) -> bool:
    """Workspace-wide figures (unattributed runs, wallet, budgets) need read access to the connection
    that holds the workspace's key: the people who may use the key may see what it spent."""
    from airflow.api_fastapi.auth.managers.models.resource_details import ConnectionDetails

    try:
        return bool(
            _auth_manager().is_authorized_connection(
                method="GET", details=ConnectionDetails(conn_id=conn_id), user=user
            )
        )
    except Exception:
        return False
