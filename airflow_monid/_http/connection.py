"""Turning an Airflow connection into :class:`~airflow_monid._http.ApiSettings`.

Shared by the Monid and Exa hooks: the base URL rules and the extras naming are the same for both.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from airflow_monid import __version__
from airflow_monid._http.policy import ApiProfile, ApiSettings, RetryPolicy
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


_VERSION_SEGMENT = re.compile(r"v\d+", re.IGNORECASE)
_SCHEME_TYPO = re.compile(r"^(?P<word>[A-Za-z]+)(?P<sep>:/*|/+)(?P<rest>.+)$")
# Per API: trailing path segments the provider adds itself (dropped from a base URL), and segments that
# mean an endpoint was pasted instead of a base URL (refused). Monid's paths are /v1/...; Exa's are
# /monitors, /search-monitors and /websets/v0/monitors (Exa's Websets docs give https://api.exa.ai/websets
# as their base).
_DROPPED_SUFFIXES: dict[str, tuple[tuple[str, ...], ...]] = {
    "monid": (("v1",),),
    "exa": (("websets", "v0"), ("websets",)),
}
_ENDPOINT_SEGMENTS: dict[str, frozenset[str]] = {
    "monid": frozenset({"run", "runs", "inspect", "discover", "wallet"}),
    "exa": frozenset({"monitors", "search-monitors", "websets", "search", "agent"}),
}


def _looks_like_http(word: str) -> bool:
    """``htp``, ``htps``, ``hhtp``, ``http``...: a scheme that was meant to be http or https."""
    lower = word.lower()
    return 2 <= len(lower) <= 6 and "p" in lower and set(lower) <= set("htps") and lower[0] in "ht"


def _right_scheme(word: str) -> str:
    return "https" if "s" in word.lower() else "http"


def _invalid(conn_id: str, value: str, problem: str, write: str | None = None) -> ConfigError:
    advice = f"write {write}" if write else "use a form like https://api.example.com or http://127.0.0.1:8080"
    return ConfigError(f"Connection {conn_id!r}: host {value!r} is not a valid base URL: {problem}; {advice}.")


def _scheme_typo(host: str, conn_id: str) -> None:
    """Refuse ``http//host``, ``https:/host``, ``http:host``: they would silently become ``https://http//...``."""
    match = _SCHEME_TYPO.match(host)
    if match is None or not _looks_like_http(match["word"]):
        return
    if match["sep"] == ":" and match["rest"][:1].isdigit():
        return  # ``http:8080`` is a host named "http" and a port
    rest = match["rest"].lstrip("/:")
    raise _invalid(
        conn_id,
        host,
        f"the scheme is misspelt ({match['word'] + match['sep']!r} instead of '{_right_scheme(match['word'])}://')",
        f"{_right_scheme(match['word'])}://{rest}",
    )


def _base_path(parts: Any, conn_type: str | None, host: str, conn_id: str) -> str:
    """The base URL's path (a proxy prefix is kept) after the API's own rules (see README "Connection")."""
    segments = [segment for segment in parts.path.split("/") if segment]
    lowered = [segment.lower() for segment in segments]
    for suffix in _DROPPED_SUFFIXES.get(conn_type or "", ()):
        if len(suffix) <= len(lowered) and tuple(lowered[-len(suffix) :]) == suffix:
            segments, lowered = segments[: -len(suffix)], lowered[: -len(suffix)]
            break
    endpoints = _ENDPOINT_SEGMENTS.get(conn_type or "", frozenset())
    for index, segment in enumerate(lowered):
        if _VERSION_SEGMENT.fullmatch(segment) or segment in endpoints:
            prefix = "/".join(segments[:index])
            base = f"{parts.scheme}://{parts.netloc}" + (f"/{prefix}" if prefix else "")
            raise _invalid(
                conn_id,
                host,
                f"its path {parts.path!r} holds an API version or endpoint ({segments[index]!r}), which the "
                "provider adds to each request itself",
                base,
            )
    return "/" + "/".join(segments) if segments else ""


def base_url_from(
    host: str | None,
    schema: str | None,
    port: int | None,
    default: str,
    conn_id: str,
    conn_type: str | None = None,
) -> str:
    """Base URL from the connection's host field.

    The host may be a full URL (``http://127.0.0.1:8080``) or a bare host name, which is what URI
    env vars and ``airflow connections add --conn-host`` produce; then ``schema`` (or https) and
    ``port`` complete it. A path is kept as a prefix (a proxy), except what the API adds itself: for
    ``conn_type`` ``monid`` a trailing ``/v1``, for ``exa`` a trailing ``/websets/v0`` or ``/websets``,
    both dropped. Refused: a host we cannot parse, a misspelt scheme (``http//host``, ``https:/host``,
    ``htp://host``, ``http:host``), a query or fragment, and a path holding another API version or an
    endpoint (``https://api.monid.ai/v1/run``); each message says what to write instead.
    """
    host = (host or "").strip()
    if not host:
        return default
    given = host
    if "://" not in host:
        _scheme_typo(host, conn_id)
        scheme = (schema or "").strip().lower() or "https"
        if scheme not in ("http", "https"):
            scheme = "https"
        host = f"{scheme}://{host}"
    else:
        scheme_word, _, rest = host.partition("://")
        if scheme_word.lower() not in ("http", "https"):
            if _looks_like_http(scheme_word):
                problem = f"the scheme {scheme_word!r} is misspelt"
                raise _invalid(conn_id, given, problem, f"{_right_scheme(scheme_word)}://{rest.lstrip('/')}")
            raise _invalid(conn_id, given, f"the scheme {scheme_word!r} is neither http nor https")
        if rest.startswith("/") and rest.strip("/"):
            raise _invalid(
                conn_id, given, "the scheme has too many slashes", f"{scheme_word.lower()}://{rest.lstrip('/')}"
            )
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
        raise _invalid(conn_id, host, str(exc)) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _invalid(conn_id, host, "it has no host name")
    if parts.query or parts.fragment or host.endswith(("?", "#")):
        raise _invalid(
            conn_id, given, "a base URL has no query string or fragment", f"{parts.scheme}://{parts.netloc}{parts.path}"
        )
    return f"{parts.scheme}://{parts.netloc}{_base_path(parts, conn_type, given, conn_id)}"


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
    base_url = base_url_from(conn.host, conn.schema, conn.port, default_base_url, conn_id, conn_type)
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
