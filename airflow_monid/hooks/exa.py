"""Hook for Exa monitors: search monitors (``/monitors``) and Websets monitors (``/websets/v0/monitors``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from airflow_monid._http.base_hook import ApiHook, Call
from airflow_monid._http.connection import read_extra
from airflow_monid._http.policy import ApiProfile, ApiRequest, ApiResponse, ApiSettings, Secret, build_path
from airflow_monid.exceptions import (
    ConfigError,
    PaginationLoopError,
    PermanentAPIError,
    PermanentError,
    ProviderError,
    ResponseError,
)
from airflow_monid.models.exa import ExaMonitor, ExaMonitorRun, ExaMonitorType, ExaPage, ExaRunStatus, RunWindow

SEARCH_MONITORS_PATHS = ("/monitors", "/search-monitors")
WEBSETS_MONITORS_PATH = "/websets/v0/monitors"
RUNS_PAGE_SIZE = 100  # the search monitors maximum; fewer round trips when scanning a window
# A cancelled run replaced by a newer one that was itself replaced... A chain longer than this
# means something else is going on, and the caller's wait goes on with the last run found.
MAX_REPLACEMENTS = 20


def _exa_error_message(data: Any) -> tuple[str | None, str | None]:
    """Exa errors are ``{requestId, error, tag}``."""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):  # not documented; tolerated so the message is not lost
            error = error.get("message")
        if error is not None:
            tag = data.get("tag")
            return str(error), str(tag) if tag is not None else None
    return None, None


EXA_PROFILE = ApiProfile(
    name="Exa API",
    auth_header=lambda key: {"x-api-key": key},
    error_message=_exa_error_message,
)


def normalise_search_monitors_path(value: Any, where: str = "search_monitors_path") -> str:
    """``/monitors`` or ``/search-monitors`` (slashes optional); anything else is a config error."""
    text = "/" + str(value or "").strip().strip("/")
    if text not in SEARCH_MONITORS_PATHS:
        raise ConfigError(f"{where} must be '/monitors' or '/search-monitors', got {value!r}.")
    return text


def _reveal(value: Any) -> str | None:
    if isinstance(value, Secret):
        value = value.reveal()
    return str(value) if value not in (None, "") else None


def _run(response: ApiResponse) -> ExaMonitorRun:
    return ExaMonitorRun.from_api(response.data)


def _monitor(response: ApiResponse) -> ExaMonitor:
    return ExaMonitor.from_api(response.data)


def _object(response: ApiResponse) -> dict[str, Any]:
    if not isinstance(response.data, dict):
        raise ResponseError(f"Expected a JSON object from Exa, got {response.data!r:.200}")
    return response.data


class ExaHook(ApiHook):
    """Reads Exa monitors and their runs, and triggers search monitor runs.

    The API key is the connection's password (sent as ``x-api-key``). The host is an optional base
    URL (default ``https://api.exa.ai``). Extras: ``search_monitors_path`` (``/monitors``, the
    default, or the older ``/search-monitors``), ``dashboard_url`` (base of the task links) plus the
    retry and timeout extras of the Monid hook, and ``webhook_secret``
    (the monitor's ``webhookSecret``: the webhook receiver verifies deliveries with it; kept wrapped,
    never in a repr or log).

    Every method takes a ``monitor_type``: ``"search"`` or ``"websets"``. Runs come back as
    :class:`ExaMonitorRun` with a normalised :attr:`~ExaMonitorRun.status` and the raw JSON.

    :param exa_conn_id: Airflow connection id of type ``exa``.
    :param search_monitors_path: overrides the connection's ``search_monitors_path`` extra.
    """

    conn_name_attr = "exa_conn_id"
    default_conn_name = "exa_default"
    conn_type = "exa"
    hook_name = "Exa"
    default_base_url = "https://api.exa.ai"
    default_dashboard_url = "https://dashboard.exa.ai"
    profile = EXA_PROFILE

    def __init__(self, exa_conn_id: str = default_conn_name, search_monitors_path: str | None = None) -> None:
        super().__init__(exa_conn_id)
        self.exa_conn_id = exa_conn_id
        self._path_arg = normalise_search_monitors_path(search_monitors_path) if search_monitors_path else None
        self._path_extra: str | None = None

    def _settings_from(self, conn: Any, extras: dict[str, Any]) -> ApiSettings:
        # The webhook secret is kept wrapped, so that no repr of the hook or its extras shows it.
        for name in ("webhook_secret", f"extra__{self.conn_type}__webhook_secret"):
            value = extras.get(name)
            if value not in (None, "") and not isinstance(value, Secret):
                extras[name] = Secret(str(value))
        settings = super()._settings_from(conn, extras)
        value = read_extra(extras, self.conn_type, "search_monitors_path")
        if value is not None:
            where = f"Connection {self.conn_id!r}: extra 'search_monitors_path'"
            self._path_extra = normalise_search_monitors_path(value, where)
        return settings

    # --- paths: the search path may come from the connection, so it is known once settings are ---

    def _prefix_loaded(self, monitor_type: Any) -> str:
        if ExaMonitorType.parse(monitor_type) is ExaMonitorType.WEBSETS:
            return WEBSETS_MONITORS_PATH
        return self._path_arg or self._path_extra or SEARCH_MONITORS_PATHS[0]

    def prefix(self, monitor_type: Any = "search") -> str:
        """Path of the monitors of ``monitor_type`` (reads the connection)."""
        self.settings  # noqa: B018 - loads the extras that may choose the search path
        return self._prefix_loaded(monitor_type)

    async def aprefix(self, monitor_type: Any = "search") -> str:
        await self.asettings()
        return self._prefix_loaded(monitor_type)

    def webhook_secret(self) -> str | None:
        """The connection's ``webhook_secret`` extra (the monitor's ``webhookSecret``), or ``None``."""
        self.settings  # noqa: B018 - loads the extras
        return _reveal(read_extra(self.connection_extras, self.conn_type, "webhook_secret"))

    async def awebhook_configured(self) -> bool:
        """Whether the connection holds a webhook secret (the watcher then polls as a safety net only)."""
        await self.asettings()
        return bool(_reveal(read_extra(self.connection_extras, self.conn_type, "webhook_secret")))

    def dashboard_url(self) -> str:
        """Base of the links shown on tasks: extra ``dashboard_url``, default ``https://dashboard.exa.ai``."""
        self.settings  # noqa: B018 - loads the extras
        value = read_extra(self.connection_extras, self.conn_type, "dashboard_url")
        return str(value or self.default_dashboard_url).rstrip("/")

    # --- call descriptions (one per endpoint, shared by the sync and async methods) ---

    @staticmethod
    def _get_run_call(prefix: str, monitor_id: str, run_id: str) -> Call[ExaMonitorRun]:
        path = prefix + build_path("/{}/runs/{}", (monitor_id, "monitor_id"), (run_id, "run_id"))
        return Call(ApiRequest("GET", path), _run)

    @staticmethod
    def _list_runs_call(prefix: str, monitor_id: str, limit: int | None, cursor: str | None) -> Call[ExaPage]:
        params: dict[str, Any] = {"cursor": cursor}
        # The Websets spec declares no limit (its SDK sends none); only search monitors get one.
        if prefix != WEBSETS_MONITORS_PATH and limit is not None:
            params["limit"] = max(1, min(int(limit), 100))
        path = prefix + build_path("/{}/runs", (monitor_id, "monitor_id"))
        return Call(ApiRequest("GET", path, params=params), lambda r: ExaPage.from_api(r.data, "monitor runs"))

    @staticmethod
    def _get_monitor_call(prefix: str, monitor_id: str) -> Call[ExaMonitor]:
        return Call(ApiRequest("GET", prefix + build_path("/{}", (monitor_id, "monitor_id"))), _monitor)

    @staticmethod
    def _list_monitors_call(prefix: str, limit: int, cursor: str | None) -> Call[ExaPage]:
        params = {"limit": max(1, int(limit)), "cursor": cursor}
        return Call(ApiRequest("GET", prefix, params=params), lambda r: ExaPage.from_api(r.data, "monitors"))

    @staticmethod
    def _trigger_call(prefix: str, monitor_id: str) -> Call[dict[str, Any]]:
        path = prefix + build_path("/{}/trigger", (monitor_id, "monitor_id"))
        return Call(ApiRequest("POST", path, paid=True), _object)

    # --- sync API ---

    def get_run(self, monitor_id: str, run_id: str, monitor_type: Any = "search") -> ExaMonitorRun:
        return self._call(self._get_run_call(self.prefix(monitor_type), monitor_id, run_id))

    def list_runs(
        self,
        monitor_id: str,
        monitor_type: Any = "search",
        limit: int | None = RUNS_PAGE_SIZE,
        cursor: str | None = None,
    ) -> ExaPage:
        """One page of runs, newest first (:meth:`ExaPage.runs` parses them)."""
        return self._call(self._list_runs_call(self.prefix(monitor_type), monitor_id, limit, cursor))

    def iter_run_pages(
        self, monitor_id: str, monitor_type: Any = "search", page_size: int = RUNS_PAGE_SIZE
    ) -> Iterator[list[ExaMonitorRun]]:
        """Pages of runs, newest first, following ``nextCursor`` while ``hasMore``.

        :raises PaginationLoopError: when the API repeats a cursor.
        """
        seen: set[str] = set()
        cursor: str | None = None
        while True:
            page = self.list_runs(monitor_id, monitor_type, page_size, cursor)
            yield page.runs()
            cursor = _next_cursor(page, seen, monitor_id)
            if cursor is None:
                return

    def iter_runs(
        self, monitor_id: str, monitor_type: Any = "search", page_size: int = RUNS_PAGE_SIZE
    ) -> Iterator[ExaMonitorRun]:
        """All runs of a monitor, newest first."""
        for runs in self.iter_run_pages(monitor_id, monitor_type, page_size):
            yield from runs

    def get_monitor(self, monitor_id: str, monitor_type: Any = "search") -> ExaMonitor:
        return self._call(self._get_monitor_call(self.prefix(monitor_type), monitor_id))

    def list_monitors(self, monitor_type: Any = "search", limit: int = 50, cursor: str | None = None) -> ExaPage:
        return self._call(self._list_monitors_call(self.prefix(monitor_type), limit, cursor))

    def trigger_monitor(self, monitor_id: str) -> dict[str, Any]:
        """``POST /monitors/{id}/trigger``: starts a billed search monitor run.

        Exa answers ``{"triggered": true}`` without a run id. The request is never re-sent once it
        may have reached Exa: an unclear outcome raises :class:`UnclearRequestError`.
        """
        return self._call(self._trigger_call(self.prefix("search"), monitor_id))

    def find_run(
        self,
        monitor_id: str,
        monitor_type: Any = "search",
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> ExaMonitorRun | None:
        """The oldest run with ``created_after <= createdAt < created_before``; pages stop at the lower bound."""
        return self._scan(monitor_id, monitor_type, RunWindow(created_after, created_before))

    def follow_replacement(self, monitor_id: str, run: ExaMonitorRun, monitor_type: Any = "search") -> ExaMonitorRun:
        """``run``, or the run that replaced it when it was cancelled and a newer run exists.

        Exa never overlaps runs: a scheduled run coming due cancels the one in flight. The newer
        run carries the results, so waiting callers follow it (repeatedly, for a chain).
        """
        for _ in range(MAX_REPLACEMENTS):
            if run.status is not ExaRunStatus.CANCELLED:
                return run
            newer = self._scan(monitor_id, monitor_type, RunWindow(run.created, None, stop_at=run.id))
            if newer is None:
                return run
            self._log_replacement(monitor_id, run, newer)
            run = self.get_run(monitor_id, newer.id, monitor_type)
        return run

    def _scan(self, monitor_id: str, monitor_type: Any, window: RunWindow) -> ExaMonitorRun | None:
        for runs in self.iter_run_pages(monitor_id, monitor_type):
            if window.feed(runs):
                break
        return window.oldest

    def _log_replacement(self, monitor_id: str, old: ExaMonitorRun, new: ExaMonitorRun) -> None:
        self.log.warning(
            "Exa monitor %s: run %s was %s and a newer run %s (created %s) replaced it; following %s.",
            monitor_id,
            old.id,
            old.raw_status,
            new.id,
            new.created_at,
            new.id,
        )

    def check_monitor(self, monitor_id: str, monitor_type: Any = "search") -> ExaMonitor | None:
        """Fail on a monitor that will never produce a run; warn on a paused one.

        :raises PermanentError: the monitor does not exist (404), is disabled, or the key is refused.
        :return: the monitor, or ``None`` when it could not be read for a transient reason (the caller
            goes on: a monitor check must not end a wait on one 5xx).
        """
        try:
            monitor = self.get_monitor(monitor_id, monitor_type)
        except PermanentAPIError as exc:
            raise self._monitor_error(monitor_id, monitor_type, exc) from None
        except PermanentError:
            raise
        except ProviderError as exc:
            self.log.warning("Could not check Exa %s monitor %s (%s); going on.", monitor_type, monitor_id, exc)
            return None
        return self._judge_monitor(monitor, monitor_type)

    async def acheck_monitor(self, monitor_id: str, monitor_type: Any = "search") -> ExaMonitor:
        """:meth:`check_monitor` for the triggerer: every error propagates (the trigger's loop tolerates
        the transient ones)."""
        try:
            monitor = await self.aget_monitor(monitor_id, monitor_type)
        except PermanentAPIError as exc:
            raise self._monitor_error(monitor_id, monitor_type, exc) from None
        return self._judge_monitor(monitor, monitor_type)

    @staticmethod
    def _monitor_error(monitor_id: str, monitor_type: Any, exc: PermanentAPIError) -> PermanentError:
        if exc.status_code == 404:
            return PermanentError(
                f"Exa {ExaMonitorType.parse(monitor_type).value} monitor {monitor_id} does not exist: {exc}"
            )
        return exc

    def _judge_monitor(self, monitor: ExaMonitor, monitor_type: Any) -> ExaMonitor:
        label = f"Exa {ExaMonitorType.parse(monitor_type).value} monitor {monitor.id}"
        if monitor.is_disabled:
            raise PermanentError(
                f"{label} is disabled, so no run will come (Exa disables a monitor after repeated authentication "
                "failures); re-enable it in Exa, then clear this task."
            )
        if monitor.is_paused:
            self.log.warning("%s is paused: it has no scheduled runs, only manually triggered ones.", label)
        return monitor

    def test_connection(self) -> tuple[bool, str]:
        """``GET /monitors?limit=1`` (free): checks the URL, the key and the search monitors path."""
        try:
            page = self.list_monitors("search", limit=1)
            where = f"{self.settings.base_url}{self.prefix('search')}"
        except Exception as exc:  # the UI shows the message
            return False, str(exc)
        return True, f"Connected to Exa: {where} answered ({len(page.data)} monitor(s) on a 1-item page)."

    # --- async API (what the trigger needs) ---

    async def aget_run(self, monitor_id: str, run_id: str, monitor_type: Any = "search") -> ExaMonitorRun:
        return await self._acall(self._get_run_call(await self.aprefix(monitor_type), monitor_id, run_id))

    async def alist_runs(
        self,
        monitor_id: str,
        monitor_type: Any = "search",
        limit: int | None = RUNS_PAGE_SIZE,
        cursor: str | None = None,
    ) -> ExaPage:
        return await self._acall(self._list_runs_call(await self.aprefix(monitor_type), monitor_id, limit, cursor))

    async def aget_monitor(self, monitor_id: str, monitor_type: Any = "search") -> ExaMonitor:
        return await self._acall(self._get_monitor_call(await self.aprefix(monitor_type), monitor_id))

    async def afind_run(
        self,
        monitor_id: str,
        monitor_type: Any = "search",
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> ExaMonitorRun | None:
        return await self._ascan(monitor_id, monitor_type, RunWindow(created_after, created_before))

    async def afollow_replacement(
        self, monitor_id: str, run: ExaMonitorRun, monitor_type: Any = "search"
    ) -> ExaMonitorRun:
        for _ in range(MAX_REPLACEMENTS):
            if run.status is not ExaRunStatus.CANCELLED:
                return run
            newer = await self._ascan(monitor_id, monitor_type, RunWindow(run.created, None, stop_at=run.id))
            if newer is None:
                return run
            self._log_replacement(monitor_id, run, newer)
            run = await self.aget_run(monitor_id, newer.id, monitor_type)
        return run

    async def _ascan(self, monitor_id: str, monitor_type: Any, window: RunWindow) -> ExaMonitorRun | None:
        # A plain loop rather than ``async for`` + break: an abandoned async generator is only
        # finalised later by the event loop, which the triggerer's shared loop can do without.
        seen: set[str] = set()
        cursor: str | None = None
        while True:
            page = await self.alist_runs(monitor_id, monitor_type, RUNS_PAGE_SIZE, cursor)
            if window.feed(page.runs()):
                return window.oldest
            cursor = _next_cursor(page, seen, monitor_id)
            if cursor is None:
                return window.oldest


def _next_cursor(page: ExaPage, seen: set[str], monitor_id: str) -> str | None:
    cursor = page.next_cursor
    if cursor is None:
        return None
    if cursor in seen:
        raise PaginationLoopError(
            f"Exa runs list of monitor {monitor_id!r} returned cursor {cursor!r} twice: pagination loop."
        )
    seen.add(cursor)
    return cursor
