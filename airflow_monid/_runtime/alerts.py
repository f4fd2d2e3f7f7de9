"""``spend_alert``: call an Airflow notifier when a DAG run's (or a DAG's daily) Monid spend crosses a threshold.

Evaluated by the task that has just recorded a run (its spend record written), so the amounts are what
the spend page counts. A DAG run's total comes from the budget rows (:mod:`airflow_monid._monid.budget`);
a DAG's daily total, and which thresholds have fired, are kept in one Airflow Variable per DAG
(``monid_alerts_<digest of the DAG id>``). The Execution API has no compare-and-set: two tasks recording
at the same moment may both notify for one threshold, and one may overwrite the other's addition to the
daily total (the total is then low by that run until the next record). Alerts are a signal; the budget
(``max_dag_run_cost``) is the control.

A notifier that fails is logged as a warning and never fails the task.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

log = logging.getLogger("airflow_monid.alerts")

VARIABLE_PREFIX = "monid_alerts_"
KEEP_RUNS = 50
KEEP_DAYS = 8


def _config_error(message: str) -> Exception:
    from airflow_monid.exceptions import ConfigError

    return ConfigError(message)


def _amount(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise _config_error(f"{name} must be a finite number > 0, got {value!r}.")
    return float(value)


@dataclass(frozen=True)
class SpendAlert:
    """Notify when Monid spend crosses thresholds: once per threshold and DAG run (``fractions`` of
    ``max_dag_run_cost``), or once per threshold, DAG and UTC day (``daily`` amounts).

    The notifier is called with the task's context plus ``monid_spend_alert``: ``{dag_id, run_id,
    threshold, amount, budget, currency, scope, url, message}`` (``url``: the spend page filtered on the
    DAG). Any ``BaseNotifier`` (``SlackNotifier(text="{{ monid_spend_alert.message }}")``,
    ``SmtpNotifier``...) or a callable taking the context.

    :param notifier: a ``BaseNotifier`` or a callable ``f(context)``.
    :param fractions: fractions of the task's ``max_dag_run_cost`` (e.g. ``(0.5, 0.8, 1.0)``); used only
        when the task has ``max_dag_run_cost``.
    :param daily: amounts in the budget's currency (``max_cost_currency``) per DAG and UTC day.
    """

    notifier: Any
    fractions: Sequence[float] = (0.5, 0.8, 1.0)
    daily: Sequence[float] = ()

    def __post_init__(self) -> None:
        if not callable(self.notifier):
            raise _config_error(f"SpendAlert.notifier must be a BaseNotifier or a callable, got {self.notifier!r}.")
        fractions = self.fractions if isinstance(self.fractions, list | tuple) else [self.fractions]
        daily = self.daily if isinstance(self.daily, list | tuple) else [self.daily]
        object.__setattr__(self, "fractions", tuple(sorted(_amount(f, "SpendAlert.fractions") for f in fractions)))
        object.__setattr__(self, "daily", tuple(sorted(_amount(d, "SpendAlert.daily") for d in daily)))
        if not self.fractions and not self.daily:
            raise _config_error("SpendAlert needs fractions of max_dag_run_cost or daily amounts.")


def require_alert(value: Any, max_dag_run_cost: Any) -> SpendAlert | None:
    """Checked when the task is built."""
    if value is None:
        return None
    if not isinstance(value, SpendAlert):
        raise _config_error(f"spend_alert must be a SpendAlert (from airflow_monid import SpendAlert), got {value!r}.")
    if not value.daily and max_dag_run_cost is None:
        raise _config_error(
            "spend_alert has only fractions of max_dag_run_cost, but the task has no max_dag_run_cost: set it, "
            "or give SpendAlert(daily=[...]) amounts."
        )
    return value


def spend_url(dag_id: str) -> str:
    from airflow.providers.common.compat.sdk import conf

    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    return f"{base}/monid/spend?dag_id={quote(dag_id, safe='')}"


def _label(amount: float) -> str:
    return f"{amount:g}"


def _variable_key(dag_id: str) -> str:
    return VARIABLE_PREFIX + hashlib.sha256(dag_id.encode()).hexdigest()[:24]


def _load(key: str) -> dict[str, Any]:
    try:
        from airflow.providers.common.compat.sdk import Variable

        value = Variable.get(key, default=None, deserialize_json=True)
    except Exception as exc:
        log.warning("spend_alert: could not read Variable %s (%s); alerts may repeat.", key, exc)
        return {}
    return value if isinstance(value, dict) else {}


def _save(key: str, value: dict[str, Any]) -> None:
    try:
        from airflow.providers.common.compat.sdk import Variable

        Variable.set(key, value, serialize_json=True)
    except Exception as exc:
        log.warning("spend_alert: could not write Variable %s (%s); alerts may repeat.", key, exc)


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def notify(alert: SpendAlert, context: Any, info: dict[str, Any]) -> bool:
    """Call the notifier; a failure is a warning. Returns whether it was called without an error."""
    full = dict(context) if isinstance(context, Mapping) else {}
    full["monid_spend_alert"] = info
    notifier = alert.notifier
    try:
        # A BaseNotifier renders its templates into itself: a copy per alert keeps each message its own.
        target = copy.deepcopy(notifier)
    except Exception:
        target = notifier
    try:
        target(full)
    except Exception as exc:
        log.warning(
            "spend_alert: the notifier failed (%s: %s); the alert '%s' was not delivered. The task goes on.",
            type(exc).__name__,
            exc,
            info["message"],
        )
        return False
    log.info("spend_alert: notified: %s", info["message"])
    return True


def evaluate(
    context: Any,
    alert: SpendAlert,
    *,
    budget: float | None,
    currency: str,
    run_total: float | None,
    records: Iterable[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Fire the thresholds the spend has reached and that have not fired yet; returns what was sent.

    :param run_total: the DAG run's recorded spend (``None``: unknown, DAG-run thresholds are skipped).
    :param records: the spend records just written by this task (added to the day's total).
    """
    ti = context["ti"]
    dag_id, run_id = str(ti.dag_id), str(ti.run_id)
    key = _variable_key(dag_id)
    state = _load(key)
    runs: dict[str, Any] = _dict(state.get("runs"))
    days: dict[str, Any] = _dict(state.get("days"))
    due: list[tuple[str, float, float, float | None]] = []  # (scope, threshold, amount, budget)
    fired_run = [x for x in runs.get(run_id, []) if isinstance(x, str)]
    if budget is not None and run_total is not None:
        for fraction in alert.fractions:
            label = _label(fraction)
            if run_total + 1e-9 >= fraction * budget and label not in fired_run:
                fired_run.append(label)
                due.append(("dag_run", fraction, run_total, budget))
    today = datetime.now(UTC).date().isoformat()
    day_total: float | None = None
    if alert.daily:
        day = _dict(days.get(today))
        day_runs: dict[str, Any] = _dict(day.get("runs"))
        for record in records:
            if record.get("monid_run_id") and str(record.get("currency") or "USD") == currency:
                day_runs[str(record["monid_run_id"])] = float(record.get("cost") or 0.0)
        day_total = sum(float(v) for v in day_runs.values() if isinstance(v, int | float) and not isinstance(v, bool))
        fired_day = [x for x in day.get("fired", []) if isinstance(x, str)]
        for amount in alert.daily:
            if day_total + 1e-9 >= amount and _label(amount) not in fired_day:
                fired_day.append(_label(amount))
                due.append(("day", amount, day_total, None))
        days[today] = {"runs": day_runs, "fired": fired_day}
    runs[run_id] = fired_run
    new_state = {
        "dag_id": dag_id,
        "runs": dict(list(runs.items())[-KEEP_RUNS:]),
        "days": {d: days[d] for d in sorted(days)[-KEEP_DAYS:]},
    }
    if new_state != state:
        _save(key, new_state)  # before notifying: a slow or failing notifier does not make it repeat
    sent = []
    url = spend_url(dag_id)
    for scope, threshold, amount, of in due:
        if scope == "dag_run":
            message = (
                f"Monid spend of DAG {dag_id}, run {run_id}: {amount:g} {currency}, {threshold:.0%} of its budget "
                f"max_dag_run_cost={of:g} {currency} reached. Spend page: {url}"
            )
        else:
            message = (
                f"Monid spend of DAG {dag_id} on {today} (UTC): {amount:g} {currency}, at or above the daily alert "
                f"of {threshold:g} {currency}. Spend page: {url}"
            )
        info = {
            "dag_id": dag_id,
            "run_id": run_id,
            "scope": scope,
            "threshold": threshold,
            "amount": round(amount, 9),
            "budget": of,
            "currency": currency,
            "day": today if scope == "day" else None,
            "url": url,
            "message": message,
        }
        notify(alert, context, info)
        sent.append(info)
    return sent
