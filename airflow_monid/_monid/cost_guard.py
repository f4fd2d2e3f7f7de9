"""The cost guard's policy: what an endpoint's price allows before paying, and what a run cost. No I/O.

Prices come from ``POST /v1/inspect`` (``price.type`` and ``price.amount``, a bare number in old
answers and ``{value, currency}`` in newer ones). What a run cost comes from its ``billing`` (integer
amounts in ``MICRO_DOLLAR``/``CENT``/``DOLLAR`` units, sync answers) or its ``cost`` (dollars,
``GET /v1/runs/{id}``); both are normalised to a number in the currency.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_monid.exceptions import ConfigError, CostLimitError

# Prices charged once per call, and prices charged per result/item/unit that a results cap bounds.
PER_CALL_TYPES = frozenset({"PER_CALL", "PER_REQUEST", "FLAT"})
PER_RESULT_TYPES = frozenset({"PER_RESULT", "PER_ITEM", "PER_UNIT", "PER_RECORD"})
_UNITS = {"MICRO_DOLLAR": 1e-6, "MICRODOLLAR": 1e-6, "CENT": 1e-2, "DOLLAR": 1.0}
DEFAULT_CURRENCY = "USD"
COMPOSITE_KEYS = frozenset({"body", "queryParams", "pathParams"})


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value == value else None  # NaN is no price


@dataclass(frozen=True)
class Price:
    """An endpoint's price as published: ``amount`` is ``None`` when it is not one number."""

    type: str
    amount: float | None
    currency: str
    raw: Any
    currency_given: bool = True

    @classmethod
    def parse(cls, price: Any) -> Price:
        if not isinstance(price, Mapping):
            return cls("UNKNOWN", None, DEFAULT_CURRENCY, price, currency_given=False)
        amount: Any = price.get("amount")
        currency = price.get("currency")
        if isinstance(amount, Mapping):  # newer answers: {"value": 0.0004, "currency": "USD"}
            currency = amount.get("currency", currency)
            amount = amount.get("value")
        return cls(
            str(price.get("type") or "UNKNOWN").upper(),
            _number(amount),
            # Monid bills in dollars (wallet, ``cost``, ``billing`` units): a price that names no
            # currency is taken as USD, so it can never pass a guard set in another currency.
            str(currency).upper() if currency else DEFAULT_CURRENCY,
            price,
            currency_given=bool(currency),
        )

    def describe(self) -> str:
        amount = "an amount that is not one number" if self.amount is None else f"{self.amount:g}"
        return f"{self.type} {amount} {self.currency}" + ("" if self.currency_given else " (no currency given: USD)")


def results_cap(payload: Mapping[str, Any], max_results: int | None, max_results_field: str | None) -> int | None:
    """The declared bound on the number of results: ``max_results``, else the input field named by
    ``max_results_field`` (looked up in a flat input, or in a composite input's ``body``/``queryParams``)."""
    if max_results is not None:
        return max_results
    if not max_results_field:
        return None
    places = [payload]
    if payload and set(payload) <= COMPOSITE_KEYS:
        places = [p for p in (payload.get("body"), payload.get("queryParams")) if isinstance(p, Mapping)]
    for place in places:
        if max_results_field in place:
            value = place[max_results_field]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(
                    f"max_results_field {max_results_field!r}: the input's value {value!r} is not a whole number >= 0, "
                    "so it cannot bound the cost."
                )
            return value
    raise CostLimitError(
        f"max_results_field {max_results_field!r} is not in the input, so nothing caps the number of results "
        f"(and the cost). Put {max_results_field!r} in the input, or set max_results."
    )


def check_price(
    price: Price,
    *,
    max_cost: float,
    currency: str,
    cap: int | None,
    where: str,
) -> float:
    """The most this run can cost under ``price``; raises :class:`CostLimitError` when that exceeds
    ``max_cost`` or cannot be known (the task then fails before paying)."""
    head = f"{where}: price {price.describe()}"
    if price.currency != currency.upper():
        raise CostLimitError(f"{head} is not in {currency.upper()}, the currency of max_cost={max_cost:g}.")
    if price.amount is None:
        raise CostLimitError(f"{head}: cannot check it against max_cost={max_cost:g} {currency}.")
    if price.type in PER_CALL_TYPES:
        bound = price.amount
        if bound > max_cost:
            raise CostLimitError(f"{head} is above max_cost={max_cost:g} {currency}; nothing was paid.")
        return bound
    if price.type in PER_RESULT_TYPES:
        if cap is None:
            raise CostLimitError(
                f"{head} is charged per result and nothing caps the results, so max_cost={max_cost:g} {currency} "
                "cannot be guaranteed. Bound it with max_results=N, or max_results_field='<the input field that "
                "caps results>' (e.g. 'maxItems'), and make sure the input sets that field."
            )
        bound = price.amount * cap
        if bound > max_cost:
            raise CostLimitError(
                f"{head} x {cap} results (the declared cap) = {bound:g} {currency} is above "
                f"max_cost={max_cost:g} {currency}; nothing was paid."
            )
        return bound
    raise CostLimitError(
        f"{head}: this price type cannot be bounded before the run, so max_cost={max_cost:g} {currency} cannot be "
        "guaranteed. Remove max_cost for this task, and rely on Monid's workspace budgets/run caps."
    )


def actual_cost(run: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the run cost, as ``{value, currency, source}`` in currency units (``None`` when unknown).

    ``billing.reportedCost`` (what is charged, in its ``unit``) when present, else ``cost`` (dollars).
    """
    billing = run.get("billing")
    reported = billing.get("reportedCost") if isinstance(billing, Mapping) else None
    if isinstance(reported, Mapping):
        value, unit = _number(reported.get("value")), str(reported.get("unit") or "").upper()
        if value is not None and unit in _UNITS:
            currency = str(reported.get("currency") or "USD").upper()
            return {"value": round(value * _UNITS[unit], 9), "currency": currency, "source": "billing.reportedCost"}
    cost = run.get("cost")
    if isinstance(cost, Mapping) and _number(cost.get("value")) is not None:
        currency = str(cost.get("currency") or "USD").upper()
        return {"value": _number(cost.get("value")), "currency": currency, "source": "cost"}
    return None
