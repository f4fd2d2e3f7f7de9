"""Turning an Airflow connection into :class:`~airflow_monid._http.ApiSettings`.

Shared by the Monid and Exa hooks: the base URL rules and the extras naming are the same for both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from airflow_monid import __version__
from airflow_monid._request_policy import ApiProfile, ApiSettings, RetryPolicy
from airflow_monid.exceptions import ConfigError

USER_AGENT = f"airflow-provider-monid/{__version__}"


def read_extra(extras: Mapping[str, Any], conn_type: str, name: str) -> Any:
    """An extra under its plain name (what the Airflow 3 UI saves) or ``extra__<type>__<name>``."""
    for key in (name, f"extra__{conn_type}__{name}"):
        value = extras.get(key)
        if value not in (None, ""):
            return value
    return None


def _number(extras: Mapping[str, Any], conn_type: str, name: str, default: float, conn_id: str) -> float:
    value = read_extra(extras, conn_type, name)
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0 or (number == 0 and name != "retry_after_cap"):
        raise ConfigError(
            f"Connection {conn_id!r}: extra {name!r} must be a positive number of seconds or attempts, got {value!r}."
        )
    return number


def base_url_from(host: str | None, schema: str | None, port: int | None, default: str, conn_id: str) -> str:
    """Base URL from the connection's host field.

    The host may be a full URL (``http://127.0.0.1:8080``) or a bare host name, which is what URI
    env vars and ``airflow connections add --conn-host`` produce; then ``schema`` (or https) and
    ``port`` complete it. Only a host we cannot parse is rejected.
    """
    host = (host or "").strip()
    if not host:
        return default
    if "://" not in host:
        scheme = (schema or "").strip().lower() or "https"
        if scheme not in ("http", "https"):
            scheme = "https"
        host = f"{scheme}://{host}"
    try:
        parts = urlsplit(host)
        if port and parts.port is None and parts.hostname:  # .port raises ValueError on a bad port
            # The port field completes a host without one (a full URL in the host field included).
            host = urlunsplit(parts._replace(netloc=f"{parts.netloc}:{port}"))
            parts = urlsplit(host)
        _ = parts.port
        hostname = parts.hostname or ""
        if any(char.isspace() for char in hostname):
            raise ValueError("the host name contains white space")
        hostname.encode("idna")  # UnicodeError (a ValueError) on an empty or too long label: "a..b"
        httpx.URL(host)
    except (ValueError, httpx.InvalidURL) as exc:
        raise ConfigError(
            f"Connection {conn_id!r}: host {host!r} is not a valid base URL ({exc}); use a form like "
            "https://api.example.com or http://127.0.0.1:8080."
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"Connection {conn_id!r}: host {host!r} is not a valid base URL; use a form like "
            "https://api.example.com or http://127.0.0.1:8080."
        )
    return host.rstrip("/")


def settings_from_connection(
    conn: Any,
    extras: Mapping[str, Any],
    *,
    profile: ApiProfile,
    conn_type: str,
    default_base_url: str,
) -> ApiSettings:
    """Build the request settings of ``conn`` (an Airflow ``Connection``) and its parsed extras."""
    conn_id = getattr(conn, "conn_id", None) or "?"
    base_url = base_url_from(conn.host, conn.schema, conn.port, default_base_url, conn_id)
    api_key = (conn.password or "").strip()
    if not api_key:
        raise ConfigError(f"Connection {conn_id!r} has no API key: put the {profile.name} key in its password field.")
    read_timeout = _number(extras, conn_type, "timeout", 30.0, conn_id)
    connect_timeout = _number(extras, conn_type, "connect_timeout", 10.0, conn_id)
    retry = RetryPolicy(
        max_attempts=int(_number(extras, conn_type, "max_attempts", 6, conn_id)),
        max_elapsed=_number(extras, conn_type, "max_retry_seconds", 120.0, conn_id),
        retry_after_cap=_number(extras, conn_type, "retry_after_cap", 60.0, conn_id),
        backoff_base=_number(extras, conn_type, "backoff_base", 0.5, conn_id),
        backoff_max=_number(extras, conn_type, "backoff_max", 30.0, conn_id),
    )
    verify: bool | str = True
    verify_extra = read_extra(extras, conn_type, "verify")
    if (isinstance(verify_extra, str) and verify_extra.lower() in ("false", "0", "no")) or verify_extra is False:
        verify = False
    elif isinstance(verify_extra, str) and verify_extra.lower() not in ("true", "1", "yes"):
        verify = verify_extra  # a CA bundle path
    return ApiSettings(
        profile=profile,
        base_url=base_url,
        api_key=api_key,
        # pool=None: with thousands of triggers sharing one pooled client, waiting for a free
        # connection is queueing, not a failure; the caller's deadline bounds it.
        timeout=httpx.Timeout(read_timeout, connect=connect_timeout, pool=None),
        retry=retry,
        verify=verify,
        user_agent=USER_AGENT,
        max_connections=max(1, int(_number(extras, conn_type, "max_connections", 20, conn_id))),  # never a 0 gate
    )
