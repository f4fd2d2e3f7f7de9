"""Checks made before paying for a new Monid run: ``max_cost`` and ``validate_input``, one inspect.

``POST /v1/inspect`` is free but slow-changing, so its answer is cached:

* per process, for :data:`INSPECT_TTL` seconds, keyed by (connection, base URL, provider, endpoint):
  every try runs in its own process on a real deployment, so this serves ``dag.test()`` and the
  tries of one process only;
* shared between processes through one Airflow Variable per base URL and endpoint
  (``share_inspect=True``, the default), with the time it was read: the tasks of a 10,000-way map
  then make one inspect call (a few, when the first tasks start together) instead of 10,000. The
  answer holds only the public catalog entry (price, schema); a Variable older than the TTL, for
  another URL, or unreadable is ignored. Whoever may edit Variables could change the price the
  guard reads: the guard protects against mistakes; Monid's workspace budgets and run caps are the
  control that cannot be bypassed.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from airflow_monid._monid.cost_guard import Price, actual_cost, check_price, results_cap
from airflow_monid._monid.input_schema import check, message
from airflow_monid._runtime.validation import require_amount
from airflow_monid.exceptions import InputSchemaError, PermanentError, ProviderError
from airflow_monid.hooks.monid import MonidHook

INSPECT_TTL = 600.0
VARIABLE_PREFIX = "monid_inspect_"
_cache: dict[tuple[str, str, str, str], tuple[float, dict[str, Any]]] = {}
_lock = threading.Lock()


def clear_inspect_cache() -> None:
    with _lock:
        _cache.clear()


def variable_key(base_url: str, provider: str, endpoint: str) -> str:
    digest = hashlib.sha256(json.dumps([base_url, provider, endpoint]).encode()).hexdigest()[:24]
    return VARIABLE_PREFIX + digest


def _shared_get(key: str, base_url: str, now: float) -> dict[str, Any] | None:
    try:
        from airflow.providers.common.compat.sdk import Variable

        value = Variable.get(key, default=None, deserialize_json=True)
    except Exception:  # no task context, a secrets backend down...: the cache is only an optimisation
        return None
    if not isinstance(value, Mapping) or value.get("base_url") != base_url:
        return None
    fetched, data = value.get("fetched_at"), value.get("data")
    if not isinstance(fetched, int | float) or not 0 <= now - fetched < INSPECT_TTL or not isinstance(data, dict):
        return None
    return data


def _shared_set(key: str, base_url: str, now: float, data: dict[str, Any]) -> None:
    try:
        from airflow.providers.common.compat.sdk import Variable

        Variable.set(key, {"base_url": base_url, "fetched_at": now, "data": data}, serialize_json=True)
    except Exception:  # read-only secrets backend, no task context: the next task asks Monid itself
        pass


def inspect_cached(
    hook: MonidHook,
    provider: str,
    endpoint: str,
    *,
    share: bool = True,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """The endpoint's inspect answer, from a cache younger than :data:`INSPECT_TTL` or from Monid."""
    base_url = hook.settings.base_url
    key = (hook.conn_id, base_url, provider, endpoint)
    with _lock:
        hit = _cache.get(key)
    if hit is not None and clock() - hit[0] < INSPECT_TTL:
        return hit[1]
    shared_key = variable_key(base_url, provider, endpoint)
    data = _shared_get(shared_key, base_url, wall()) if share else None
    if data is None:
        data = hook.inspect(provider, endpoint)
        if not isinstance(data, dict):
            data = {}
        if share:
            _shared_set(shared_key, base_url, wall(), data)
    with _lock:
        _cache[key] = (clock(), data)
    return data


def before_paying(
    hook: MonidHook,
    provider: str,
    endpoint: str,
    payload: dict[str, Any],
    *,
    max_cost: float | None,
    currency: str,
    max_results: int | None,
    max_results_field: str | None,
    validate_input: bool | str,
    share_inspect: bool,
    log: Any,
) -> float | None:
    """Run the checks the task asked for; the most the run may cost (``None`` without ``max_cost``).

    Raises :class:`~airflow_monid.exceptions.CostLimitError` or
    :class:`~airflow_monid.exceptions.InputSchemaError` (both permanent) to refuse the run.
    """
    if max_cost is None and not validate_input:
        return None
    where = f"Monid {provider} {endpoint}"
    try:
        inspected = inspect_cached(hook, provider, endpoint, share=share_inspect)
    except ProviderError as exc:
        if max_cost is None and validate_input == "warn":
            log.warning("%s: could not read the endpoint's schema (%s); the input was not checked.", where, exc)
            return None
        raise _unchecked(exc, where, max_cost is not None) from exc.__cause__
    if validate_input:
        problems, notes = check(payload, inspected)
        for note in notes:
            log.warning("%s: %s.", where, note)
        if problems and validate_input == "warn":
            log.warning("%s (validate_input='warn': paying anyway)", message(where, problems))
        elif problems:
            raise InputSchemaError(message(where, problems) + " Nothing was paid.")
        elif not notes:
            log.info("%s: the input matches the endpoint's schema.", where)
    if max_cost is None:
        return None
    price = Price.parse(inspected.get("price"))
    cap = results_cap(payload, max_results, max_results_field)
    bound = check_price(price, max_cost=max_cost, currency=currency, cap=cap, where=where)
    log.info(
        "%s: price %s; this run costs at most %g %s (max_cost %g).", where, price.describe(), bound, currency, max_cost
    )
    return bound


def _unchecked(exc: ProviderError, where: str, guarded: bool) -> ProviderError:
    """``exc`` (same type: it decides the retry) with a message that says which check could not run,
    that nothing was paid, and what to do."""
    what = "the cost guard (max_cost) could not read the price"
    if not guarded:
        what = "validate_input could not read the endpoint's input schema"
    if isinstance(exc, PermanentError):
        todo = "Check the provider and endpoint (MonidHook.discover() lists them) and the connection."
    else:
        todo = "Airflow retries the task if it has retries left."
    opt_out = "remove max_cost" if guarded else "set validate_input=False or 'warn'"
    # The exception keeps its type (retry or not is decided by it); only its text gains the context.
    exc.args = (
        f"{where}: {what} (POST /v1/inspect failed: {exc}). Nothing was paid. {todo} "
        f"To pay without this check, {opt_out}.",
    )
    return exc


def with_cost(summary: dict[str, Any], max_cost: float | None, currency: str, log: Any) -> dict[str, Any]:
    """The ``run`` XCom with ``actual_cost`` (normalised to currency units) added; logs the cost,
    and warns when it exceeds ``max_cost`` (possible with per-result prices: the cap is the user's)."""
    cost = actual_cost(summary)
    if cost is None:
        return summary
    run_id = summary.get("runId")
    log.info("Monid run %s cost %g %s (%s).", run_id, cost["value"], cost["currency"], cost["source"])
    if max_cost is not None and cost["currency"] == currency.upper() and cost["value"] > max_cost:
        log.warning(
            "Monid run %s cost %g %s, above max_cost=%g: the declared results cap did not hold.",
            run_id,
            cost["value"],
            cost["currency"],
            max_cost,
        )
    return {**summary, "actual_cost": cost}


def require_options(
    max_cost: Any,
    currency: Any,
    max_results: Any,
    max_results_field: Any,
    validate_input: Any,
    *,
    rendered: bool = False,
) -> tuple[Any, str, Any, str | None, bool | str]:
    """The guard's arguments, checked when the task is built (a typo fails the DAG, not a paid run),
    and again with ``rendered=True`` once templates are rendered, before anything is paid.

    ``max_cost`` and ``max_results`` may be Jinja templates until rendered; NaN, infinity, booleans
    and text that is no number never pass (a comparison with NaN is always false: the guard would be off).
    """
    from airflow_monid.exceptions import ConfigError

    max_cost = require_amount(max_cost, "max_cost", rendered=rendered)
    max_results = require_amount(max_results, "max_results", whole=True, rendered=rendered)
    if not isinstance(currency, str) or not currency.strip():
        raise ConfigError(f"max_cost_currency must be a currency code such as 'USD', got {currency!r}.")
    if max_results_field is not None and (not isinstance(max_results_field, str) or not max_results_field.strip()):
        raise ConfigError(f"max_results_field must name an input field (e.g. 'maxItems'), got {max_results_field!r}.")
    if validate_input not in (True, False, "warn"):
        raise ConfigError(f"validate_input must be True, False or 'warn', got {validate_input!r}.")
    return max_cost, currency.strip().upper(), max_results, max_results_field, validate_input
