"""Monid's own bill for a period, read from ``GET /v1/runs`` (paged), ``GET /v1/wallet/balance`` and
``GET /v1/controls/workspace/budgets`` (read only), per connection, cached for ``CACHE_SECONDS``.

Every call is a free read. A failure (outage, 401, a budgets endpoint the API does not offer) never
raises: it becomes a notice, and the page and the API show Airflow's records only. No message
carries the API key (the provider's errors never do; the key is also masked here, defensively).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from airflow_monid._monid.cost_guard import actual_cost

log = logging.getLogger("airflow_monid.spend")

CACHE_SECONDS = 60.0
PAGE_SIZE = 100
PAGE_BUDGET = 100  # pages per connection and read: the newest 10,000 runs
_UNITS = {"MICRO_DOLLAR": 1e-6, "MICRODOLLAR": 1e-6, "CENT": 1e-2, "DOLLAR": 1.0}


@dataclass
class MonidRunCost:
    run_id: str
    day: str
    cost: float | None
    currency: str
    provider: str
    endpoint: str
    status: str


@dataclass
class MonidView:
    """What Monid says for one connection: its runs down to ``covered_from`` (newest first)."""

    conn_id: str
    runs: list[MonidRunCost] = field(default_factory=list)
    covered_from: date | None = None  # runs created on or after this day are all in ``runs``
    complete: bool = True  # False: the page budget ended the listing before ``covered_from``
    error: str | None = None
    wallet: dict[str, Any] | None = None
    wallet_error: str | None = None
    budgets: list[dict[str, Any]] | None = None
    budgets_error: str | None = None
    fetched_at: float = 0.0

    def in_range(self, start: date, end: date) -> list[MonidRunCost]:
        lo, hi = start.isoformat(), end.isoformat()
        return [r for r in self.runs if lo <= r.day <= hi]


def _day(value: Any) -> str | None:
    from airflow_monid.models._base import parse_time

    when = parse_time(value)
    if when is None:
        return None
    from datetime import UTC

    return when.astimezone(UTC).date().isoformat()


def _money(value: Any, currency: Any = None) -> tuple[float, str] | None:
    """``{value, currency[, unit]}`` or a bare number, in currency units."""
    if isinstance(value, Mapping):
        amount = value.get("value", value.get("amount"))
        unit = str(value.get("unit") or "DOLLAR").upper()
        cur = value.get("currency") or currency
        if isinstance(amount, Mapping):
            return _money(amount, cur)
        if isinstance(amount, int | float) and not isinstance(amount, bool) and unit in _UNITS:
            return float(amount) * _UNITS[unit], str(cur or "USD").upper()
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value), str(currency or "USD").upper()
    return None


def parse_budgets(answer: Any) -> list[dict[str, Any]]:
    """Workspace budgets, read defensively (the shape is in Monid's OpenAPI only, unverified):
    a list or ``{items: [...]}``; the limit from ``limit``/``amount``/``budget``/``cap``, what is
    used from ``spent``/``used``/``consumed``/``usage``."""
    items = answer.get("items", answer.get("budgets")) if isinstance(answer, Mapping) else answer
    out: list[dict[str, Any]] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        currency = item.get("currency")
        limit = next((m for k in ("limit", "amount", "budget", "cap") if (m := _money(item.get(k), currency))), None)
        used = next((m for k in ("spent", "used", "consumed", "usage") if (m := _money(item.get(k), currency))), None)
        entry: dict[str, Any] = {
            "id": str(item.get("id") or item.get("budgetId") or ""),
            "name": str(item.get("name") or item.get("label") or item.get("id") or "budget"),
            "period": str(item.get("period") or item.get("interval") or item.get("window") or ""),
            "status": str(item.get("status") or ""),
            "limit": round(limit[0], 6) if limit else None,
            "used": round(used[0], 6) if used else None,
            "currency": (limit or used or (0.0, str(currency or "USD").upper()))[1],
        }
        entry["used_fraction"] = (
            round(entry["used"] / entry["limit"], 4) if entry["limit"] and entry["used"] is not None else None
        )
        out.append(entry)
    return out


def parse_wallet(answer: Any) -> dict[str, Any] | None:
    if not isinstance(answer, Mapping):
        return None
    balance = _money(answer.get("balance"))
    if balance is None:
        return None
    held = _money(answer.get("held"), balance[1])
    return {"balance": round(balance[0], 6), "held": round(held[0], 6) if held else None, "currency": balance[1]}


def _describe(exc: BaseException, secret: str | None) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text[:400]


def _quick_hook(conn_id: str) -> Any:
    """A Monid hook for a page view: short timeouts, at most two attempts (a page must not hang on an outage)."""
    import httpx

    from airflow_monid._http.policy import RetryPolicy
    from airflow_monid.hooks.monid import MonidHook

    hook = MonidHook(conn_id)
    settings = hook.settings
    hook.__dict__["settings"] = dataclasses.replace(
        settings,
        timeout=httpx.Timeout(10.0, connect=5.0),
        retry=RetryPolicy(max_attempts=2, max_elapsed=15.0, retry_after_cap=2.0, backoff_base=0.2, backoff_max=1.0),
    )
    return hook


class MonidBill:
    """Reads and caches Monid's view per connection (one instance per API server process).

    :param ttl: seconds a read is reused (``CACHE_SECONDS``).
    :param page_budget: ``GET /v1/runs`` pages per read at most.
    :param hook_factory: builds the hook of a connection id (tests).
    """

    def __init__(
        self,
        ttl: float = CACHE_SECONDS,
        page_budget: int = PAGE_BUDGET,
        hook_factory: Callable[[str], Any] = _quick_hook,
    ) -> None:
        self.ttl = ttl
        self.page_budget = page_budget
        self.hook_factory = hook_factory
        self._cache: dict[str, MonidView] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def clear(self) -> None:
        with self._guard:
            self._cache.clear()

    def read(self, conn_id: str, start: date) -> MonidView:
        """Monid's runs created on or after ``start`` (and the wallet and budgets), from the cache
        when a read younger than ``ttl`` covers ``start``."""
        with self._guard:
            lock = self._locks.setdefault(conn_id, threading.Lock())
        with lock:  # one read per connection at a time: concurrent page views share it
            cached = self._cache.get(conn_id)
            fresh = cached is not None and time.monotonic() - cached.fetched_at < self.ttl
            covers = cached is not None and cached.covered_from is not None and cached.covered_from <= start
            if cached is not None and fresh and (covers or not cached.complete):
                return cached  # an incomplete read (page budget) would not get further now
            if cached is not None and fresh and cached.error is not None:
                return cached  # an outage is not asked again on every page view
            view = self._fetch(conn_id, start)
            self._cache[conn_id] = view
            return view

    def _fetch(self, conn_id: str, start: date) -> MonidView:
        view = MonidView(conn_id=conn_id, fetched_at=time.monotonic())
        secret: str | None = None
        try:
            hook = self.hook_factory(conn_id)
            secret = hook.settings.key
        except Exception as exc:
            view.error = _describe(exc, secret)
            view.covered_from = None
            return view
        try:
            self._list(hook, view, start)
        except Exception as exc:
            view.error = _describe(exc, secret)
            view.runs, view.covered_from = [], None
        try:
            view.wallet = parse_wallet(hook.get_wallet_balance())
        except Exception as exc:
            view.wallet_error = _describe(exc, secret)
        try:
            view.budgets = parse_budgets(hook.request("GET", "/v1/controls/workspace/budgets"))
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            view.budgets_error = (
                "this Monid API does not offer workspace budgets (404)" if status == 404 else _describe(exc, secret)
            )
        return view

    def _list(self, hook: Any, view: MonidView, start: date) -> None:
        first = start.isoformat()
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(self.page_budget):
            page = hook.list_runs(limit=PAGE_SIZE, cursor=cursor)
            older = False
            for item in page.items:
                raw = item.raw
                day = _day(raw.get("createdAt"))
                if day is None:
                    continue
                if day < first:
                    older = True
                    continue
                cost = actual_cost(raw)
                price = raw.get("price") if isinstance(raw.get("price"), Mapping) else {}
                view.runs.append(
                    MonidRunCost(
                        run_id=item.run_id,
                        day=day,
                        cost=float(cost["value"]) if cost else None,
                        currency=str(cost["currency"] if cost else (price.get("currency") or "USD")).upper(),
                        provider=str(raw.get("provider") or ""),
                        endpoint=str(raw.get("endpoint") or ""),
                        status=str(raw.get("status") or ""),
                    )
                )
            if older or not page.cursor or page.cursor in seen:
                view.covered_from, view.complete = start, True
                return
            seen.add(page.cursor)
            cursor = page.cursor
        # The budget ran out: the oldest day read may be incomplete, the days after it are complete.
        oldest = min((r.day for r in view.runs), default=None)
        view.complete = False
        view.covered_from = date.fromisoformat(oldest) + timedelta(days=1) if oldest else None
