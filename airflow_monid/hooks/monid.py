"""Hook for the Monid API (https://docs.monid.ai)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from airflow_monid._http.base_hook import ApiHook, Call
from airflow_monid._http.policy import NOT_RESENT, ApiProfile, ApiRequest, ApiResponse, build_path
from airflow_monid._runtime.validation import require_json_object, require_text
from airflow_monid.exceptions import APIError, PaginationLoopError, ResponseError, UnclearRequestError
from airflow_monid.models.monid import MonidRun, MonidRunPage


def _monid_error_message(data: Any) -> tuple[str | None, str | None]:
    """Monid errors are ``{code, message}``; the CLI also tolerates ``{error: {code, message}}``."""
    if isinstance(data, dict):
        nested = data.get("error")
        if isinstance(nested, dict):
            data = nested
        elif isinstance(nested, str):
            return nested, None
        message = data.get("message")
        if message is not None:
            return str(message), str(data.get("code")) if data.get("code") is not None else None
    return None, None


MONID_PROFILE = ApiProfile(
    name="Monid API",
    auth_header=lambda key: {"Authorization": f"Bearer {key}"},
    error_message=_monid_error_message,
)


def _json(response: ApiResponse) -> Any:
    return response.data


def _run(response: ApiResponse) -> MonidRun:
    return MonidRun.from_api(response.data)


def _submitted_run(response: ApiResponse) -> MonidRun:
    """The answer of a paid submit: one we cannot read as a run must not lead to a blind resubmit."""
    try:
        return MonidRun.from_api(response.data)
    except ResponseError as exc:
        raise UnclearRequestError(
            f"Monid API POST /v1/run answered HTTP {response.status_code} "
            f"(x-request-id: {response.request_id or 'none'}) with a body that is not a usable run: {exc} " + NOT_RESENT
        ) from None


class MonidHook(ApiHook):
    """Talks to the Monid API: submit, poll, list and stop runs; discover and inspect endpoints.

    The API key is the connection's password. The host is an optional base URL
    (default ``https://api.monid.ai``). Extras: ``timeout``, ``connect_timeout``, ``max_attempts``,
    ``max_retry_seconds``, ``retry_after_cap``, ``backoff_base``, ``backoff_max``, ``app_url``.

    Free calls (no money spent): :meth:`discover`, :meth:`inspect`, :meth:`get_wallet_balance`,
    :meth:`get_run`, :meth:`list_runs`, :meth:`iter_runs`, :meth:`stop_run`. Paid:
    :meth:`submit_run`. Planning a budget before a large map::

        hook = MonidHook()
        found = hook.discover("person enrichment by email", limit=3)
        for entry in found["results"]:
            print(entry["provider"], entry["endpoint"], entry["price"])
        price = hook.inspect("pdl", "/person/enrich")["price"]  # {"type": "PER_CALL", "amount": {...}}
        balance = hook.get_wallet_balance()["balance"]  # {"value": 25.0, "currency": "USD"}

    :param monid_conn_id: Airflow connection id of type ``monid``.
    """

    conn_name_attr = "monid_conn_id"
    default_conn_name = "monid_default"
    conn_type = "monid"
    hook_name = "Monid"
    default_base_url = "https://api.monid.ai"
    default_app_url = "https://app.monid.ai"
    profile = MONID_PROFILE

    def __init__(self, monid_conn_id: str = default_conn_name) -> None:
        super().__init__(monid_conn_id)
        self.monid_conn_id = monid_conn_id

    # --- call descriptions (one per endpoint, shared by the sync and async methods) ---

    @staticmethod
    def _submit_call(provider: str, endpoint: str, input: dict[str, Any]) -> Call[MonidRun]:
        require_text(provider, "provider")
        require_text(endpoint, "endpoint")
        require_json_object(input)
        body = {"provider": provider, "endpoint": endpoint, "input": input}
        # A body with a runId is a run whatever the status: the spec mirrors provider errors (404,
        # 500, 504) and answers 408 with a TIMED_OUT run.
        return Call(ApiRequest("POST", "/v1/run", json=body, paid=True, run_body_ok=True), _submitted_run)

    @staticmethod
    def _get_run_call(run_id: str) -> Call[MonidRun]:
        return Call(ApiRequest("GET", build_path("/v1/runs/{}", (run_id, "run_id"))), _run)

    @staticmethod
    def _stop_call(run_id: str) -> Call[dict[str, Any] | None]:
        def parse(response: ApiResponse) -> dict[str, Any] | None:
            # 409: the run is already terminal or not stoppable; nothing left to stop.
            return None if response.status_code == 409 else response.data

        path = build_path("/v1/runs/{}/stop", (run_id, "run_id"))
        return Call(ApiRequest("POST", path, ok_statuses=frozenset({409})), parse)

    @staticmethod
    def _list_call(limit: int, cursor: str | None) -> Call[MonidRunPage]:
        params = {"limit": max(1, min(int(limit), 100)), "cursor": cursor}
        return Call(ApiRequest("GET", "/v1/runs", params=params), lambda r: MonidRunPage.from_api(r.data))

    # --- sync API ---

    def submit_run(self, provider: str, endpoint: str, input: dict[str, Any]) -> MonidRun:
        """``POST /v1/run``: spends money. Never re-sent after a failure that may have reached the API.

        :param input: sent exactly as given (flat parameters or ``{body, queryParams, pathParams}``).
        """
        return self._call(self._submit_call(provider, endpoint, input))

    def get_run(self, run_id: str) -> MonidRun:
        """``GET /v1/runs/{run_id}`` (free): the run as a typed :class:`~airflow_monid.models.monid.MonidRun`.

        ``run.status`` is the status vocabulary, ``run.output`` the data once ``COMPLETED``, and
        ``run.provider_response.http_status`` tells whether the provider's answer was good.

        :param run_id: the Monid run id (``runId``).
        """
        return self._call(self._get_run_call(run_id))

    def stop_run(self, run_id: str) -> dict[str, Any] | None:
        """``POST /v1/runs/{run_id}/stop``: ask Monid to stop a run (nothing more is spent on it).

        :param run_id: the Monid run id.
        :return: the API's answer, or ``None`` when the run was already terminal (409).
        """
        return self._call(self._stop_call(run_id))

    def list_runs(self, limit: int = 10, cursor: str | None = None) -> MonidRunPage:
        """``GET /v1/runs`` (free): one page of runs, newest first, each with its status and cost::

            page = MonidHook().list_runs(limit=50)
            for run in page.items:
                print(run.run_id, run.status, run.summary().get("cost"))  # cost: {"value", "currency"}
            older = MonidHook().list_runs(limit=50, cursor=page.cursor) if page.cursor else None

        :param limit: runs per page, 1 to 100.
        :param cursor: the previous page's ``cursor`` (``None`` for the newest page).
        """
        return self._call(self._list_call(limit, cursor))

    def iter_runs(self, page_size: int = 100, max_items: int | None = None) -> Iterator[MonidRun]:
        """All runs, newest first, following the cursor until it is null, empty or absent.

        :param page_size: runs per ``GET /v1/runs`` page, 1 to 100.
        :param max_items: stop after this many runs (``None``: every run of the workspace).
        :raises PaginationLoopError: when the API repeats a cursor (after the pages already yielded).
        """
        seen: set[str] = set()
        cursor: str | None = None
        count = 0
        while True:
            page = self.list_runs(limit=page_size, cursor=cursor)
            for run in page.items:
                yield run
                count += 1
                if max_items is not None and count >= max_items:
                    return
            if not page.cursor:
                return
            if page.cursor in seen:
                raise PaginationLoopError(
                    f"Monid API GET /v1/runs returned cursor {page.cursor!r} twice: pagination loop, "
                    f"stopped after {count} runs."
                )
            seen.add(page.cursor)
            cursor = page.cursor

    def discover(self, query: str, limit: int = 5) -> dict[str, Any]:
        """``POST /v1/discover`` (free): search the endpoint catalog in plain words.

        Returns ``{"query", "count", "results": [{"provider", "endpoint", "description", "price", ...}]}``;
        ``price`` is ``{"type": "PER_CALL" | "PER_RESULT" | ..., "amount": {"value", "currency"}}``.

        :param query: what the data should be, e.g. ``"company headcount"`` (1 to 1000 characters).
        :param limit: the most results (the server caps it).
        """
        require_text(query, "query")
        return self._call(Call(ApiRequest("POST", "/v1/discover", json={"query": query, "limit": limit}), _json))

    def inspect(self, provider: str, endpoint: str) -> dict[str, Any]:
        """``POST /v1/inspect`` (free): one endpoint's price and input schema.

        What ``max_cost`` and ``validate_input`` read before paying (they cache it, README "What is
        cached"). Returns ``price`` (as in :meth:`discover`) and ``input`` =
        ``{body?, queryParams?, pathParams?}`` (one JSON Schema each; older backends answer a flat
        ``inputSchema``)::

            answer = MonidHook().inspect("apify", "/apidojo/tweet-scraper")
            answer["price"]  # {"type": "PER_RESULT", "amount": {"value": 0.0004, "currency": "USD"}}
            answer["input"]["body"]["required"]  # ["searchTerms"]

        :param provider: provider slug, e.g. ``pdl``.
        :param endpoint: endpoint path, e.g. ``/person/enrich``.
        :raises PermanentAPIError: 404 when the provider has no such endpoint.
        """
        body = {
            "provider": require_text(provider, "provider"),
            "endpoint": require_text(endpoint, "endpoint"),
        }
        return self._call(Call(ApiRequest("POST", "/v1/inspect", json=body), _json))

    def get_wallet_balance(self) -> dict[str, Any]:
        """``GET /v1/wallet/balance`` (free): ``{"balance": {"value", "currency"}, "held": {...}}`` in dollars.

        ``balance`` is what can still be spent (live minus ``held``, the amount reserved for runs in
        flight) and may be negative. A wallet that is still provisioning answers 503 (retried).
        """
        return self._call(Call(ApiRequest("GET", "/v1/wallet/balance"), _json))

    def app_url(self) -> str:
        from airflow_monid._http.connection import read_extra

        self.settings  # noqa: B018 - loads the extras
        value = read_extra(self.connection_extras, self.conn_type, "app_url")
        return str(value or self.default_app_url).rstrip("/")

    def test_connection(self) -> tuple[bool, str]:
        """``GET /v1/wallet/balance`` (free): checks the URL and the key, reports the balance."""
        try:
            data = self.get_wallet_balance()
        except (APIError, ResponseError, Exception) as exc:  # the UI shows the message
            return False, str(exc)
        balance = data.get("balance") if isinstance(data, dict) else None
        if isinstance(balance, dict):
            return (
                True,
                f"Connected to Monid. Wallet balance: {balance.get('value')} {balance.get('currency', '')}",
            )
        return True, f"Connected to Monid. Wallet balance: {balance}"

    # --- async API (what the trigger and deferrable sensors need) ---

    async def aget_run(self, run_id: str) -> MonidRun:
        return await self._acall(self._get_run_call(run_id))

    async def astop_run(self, run_id: str) -> dict[str, Any] | None:
        return await self._acall(self._stop_call(run_id))
