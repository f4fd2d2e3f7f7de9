"""Base of the Monid and Exa hooks: connection loading and the sync/async call plumbing.

An API method is written once, as a function returning a :class:`Call` (the request and how to
parse its answer); ``_call`` and ``_acall`` run it with the sync or the async client.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Generic, TypeVar

from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson
from airflow.providers.common.compat.sdk import BaseHook

from airflow_monid._http.connection import settings_from_connection
from airflow_monid._http.policy import ApiProfile, ApiRequest, ApiResponse, ApiSettings
from airflow_monid._http.transport import asend, send
from airflow_monid._runtime.validation import require_text
from airflow_monid.exceptions import ConfigError

T = TypeVar("T")
_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Call(Generic[T]):
    request: ApiRequest
    parse: Callable[[ApiResponse], T]


#: Seconds a connection looked up by async code serves the other hooks of its event loop.
SETTINGS_TTL = 60.0
_lookups: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str], tuple[float, asyncio.Task[tuple[ApiSettings, dict[str, Any]]]]]
]
_lookups = weakref.WeakKeyDictionary()


class ApiHook(BaseHook):
    """Shared plumbing; subclasses set the connection type, profile and default base URL."""

    conn_type: ClassVar[str]
    default_base_url: ClassVar[str]
    profile: ClassVar[ApiProfile]

    def __init__(self, conn_id: str) -> None:
        super().__init__()
        self.conn_id = conn_id
        self._async_settings: ApiSettings | None = None
        self.connection_extras: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(conn_id={self.conn_id!r})"

    # --- connection form for Airflow 3.0/3.1, whose UI imports the hook; 3.2+ reads the same
    # declarative fields from get_provider_info() without importing anything. One source of truth.

    @classmethod
    def _form_spec(cls) -> dict[str, Any]:
        from airflow_monid.get_provider_info import get_provider_info

        for entry in get_provider_info()["connection-types"]:
            if entry["connection-type"] == cls.conn_type:
                return entry
        return {}

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        behaviour = cls._form_spec().get("ui-field-behaviour", {})
        return {
            "hidden_fields": list(behaviour.get("hidden-fields", [])),
            "relabeling": dict(behaviour.get("relabeling", {})),
            "placeholders": dict(behaviour.get("placeholders", {})),
        }

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        try:  # only present with the FAB provider; without it the 3.0 UI shows the standard fields only
            from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
            from flask_babel import lazy_gettext
            from wtforms import StringField
        except ImportError:
            return {}
        return {
            name: StringField(lazy_gettext(field["label"]), widget=BS3TextFieldWidget())
            for name, field in cls._form_spec().get("conn-fields", {}).items()
        }

    def _settings_from(self, conn: Any, extras: dict[str, Any]) -> ApiSettings:
        return settings_from_connection(
            conn,
            extras,
            profile=self.profile,
            conn_type=self.conn_type,
            default_base_url=self.default_base_url,
        )

    def _load(self, conn: Any, extras: dict[str, Any]) -> ApiSettings:
        # Only what is needed is kept: the settings (key wrapped, out of every repr) and the extras
        # (no secrets). Airflow's Connection shows its password in its repr, so it is never stored.
        settings = self._settings_from(conn, extras)
        self.connection_extras = extras
        return settings

    @cached_property
    def settings(self) -> ApiSettings:
        """Request settings, loaded once per hook with the synchronous connection API."""
        conn = self.get_connection(self.conn_id)
        return self._load(conn, dict(conn.extra_dejson or {}))

    async def asettings(self) -> ApiSettings:
        """Request settings loaded without blocking the event loop (triggers, async sensors).

        Shared by the hooks of one event loop and connection id for ``SETTINGS_TTL`` (60) seconds: in
        a triggerer every lookup is a round trip through its supervisor to the API server, and
        10,000 triggers of one connection starting together would queue 10,000 of them (measured
        by benchmarks/triggerer_scale.py). A failed lookup is not kept.
        """
        if self._async_settings is None:
            settings, extras = await self._shared_lookup()
            self.connection_extras = extras
            self._async_settings = settings
        return self._async_settings

    async def _shared_lookup(self) -> tuple[ApiSettings, dict[str, Any]]:
        loop = asyncio.get_running_loop()
        per_loop = _lookups.setdefault(loop, {})
        key = (self.conn_type, self.conn_id)
        now = time.monotonic()
        entry = per_loop.get(key)
        if entry is None or entry[0] < now:
            entry = per_loop[key] = (now + SETTINGS_TTL, loop.create_task(self._lookup()))
        try:
            # Shielded: one trigger cancelled while waiting must not cancel the others' lookup.
            return await asyncio.shield(entry[1])
        except Exception:
            if per_loop.get(key) is entry:
                del per_loop[key]
            raise

    async def _lookup(self) -> tuple[ApiSettings, dict[str, Any]]:
        conn = await get_async_connection(self.conn_id, hook=self)
        extras = dict(await get_async_extra_dejson(conn) or {})
        return self._settings_from(conn, extras), extras

    def _call(self, call: Call[T]) -> T:
        return call.parse(send(self.settings, call.request))

    # --- escape hatch: any endpoint, through the same request core ---

    @staticmethod
    def _request_call(
        method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None, idempotent: bool = False
    ) -> Call[Any]:
        verb = require_text(method, "method").strip().upper()
        if verb not in _METHODS:
            raise ConfigError(f"method must be one of {', '.join(sorted(_METHODS))}, got {method!r}.")
        # A path, never a URL: the key is only ever sent to the connection's own base URL.
        if not isinstance(path, str) or not path.startswith("/") or path.startswith("//") or "://" in path:
            raise ConfigError(f"path must be an API path starting with '/' (e.g. '/v1/runs'), got {path!r}.")
        if any(c.isspace() or ord(c) < 32 for c in path):
            raise ConfigError(f"path must not contain whitespace or control characters, got {path!r}.")
        paid = verb not in _SAFE_METHODS and not idempotent
        return Call(ApiRequest(verb, path, params=params, json=json, paid=paid), lambda r: r.data)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool = False,
    ) -> Any:
        """Call an endpoint this hook has no method for; returns the answer's JSON (``None`` when empty).

        Retries, error mapping (:mod:`airflow_monid.exceptions`) and key handling are the other
        methods'. Every method but GET/HEAD/OPTIONS counts as possibly paid: once it may have reached
        the API it is never re-sent (:class:`~airflow_monid.exceptions.UnclearRequestError`), unless
        ``idempotent=True`` says sending it twice is harmless.

        :param method: HTTP method.
        :param path: path under the connection's base URL, e.g. ``/v1/auth/whoami``.
        :param json: JSON body.
        :param params: query parameters (``None`` values are left out).
        :param idempotent: the call may be retried like a read.
        """
        return self._call(self._request_call(method, path, json=json, params=params, idempotent=idempotent))

    async def arequest(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool = False,
    ) -> Any:
        """:meth:`request` without blocking the event loop (triggers, async code)."""
        return await self._acall(self._request_call(method, path, json=json, params=params, idempotent=idempotent))

    async def _acall(self, call: Call[T]) -> T:
        return call.parse(await asend(await self.asettings(), call.request))
