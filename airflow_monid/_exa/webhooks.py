"""Exa webhook deliveries: the signature, the replay window, and the record both paths share.

* :func:`verify_signature`: ``Exa-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]``, HMAC-SHA256 keyed with
  the connection's ``webhook_secret`` over ``"<t>.<raw body>"``, compared in constant time against
  every ``v1``; ``t`` must lie within :data:`TOLERANCE` seconds in the past and :data:`FUTURE_SKEW`
  in the future.
* :class:`ReplayStore`: event ids seen in this process during the tolerance window (a delivery older
  than the window is refused by its timestamp anyway).
* The **delivery record** (:func:`record_key`): the runs already turned into an asset event, per asset,
  ``{"version": 1, "runs": {"<run id>": "<who>"}}`` where who is ``webhook`` or ``poll:<token>``. On
  Airflow 3.3+ it is an entry of the asset's state store, written by the receiver (in the same
  transaction as the asset event) and by the watcher (before it yields); each path skips a run the
  record already names. Airflow 3.0-3.2 have no store shared by the triggerer and the API server:
  the receiver then checks the asset's recent events for the run id instead, and the watcher cannot
  know what the receiver delivered (see README "Webhooks").

Nothing here logs or returns the secret, a signature or the body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_monid.exceptions import ProviderError
from airflow_monid.models.exa import ExaMonitorRun, ExaRunStatus

SIGNATURE_HEADER = "Exa-Signature"
# A delivery's timestamp may be this old (Exa suggests about five minutes)...
TOLERANCE = 300.0
# ...and this far in the future (clock skew between Exa and the API server).
FUTURE_SKEW = 30.0
# The largest body accepted (bytes): a run's output rides in the delivery.
MAX_BODY_BYTES = 1_048_576
# Events delivered as asset events; others (monitor.run.created, monitor.updated...) are acknowledged.
RUN_COMPLETED = "monitor.run.completed"
RECORD_VERSION = 1
# Runs one record remembers (newest kept): far more than a monitor runs between two safety-net polls.
RECORD_SIZE = 500


class WebhookRejected(Exception):
    """A delivery refused: ``status`` is the HTTP answer, ``reason`` is for the server log only.

    :param status: the 4xx status to answer.
    :param reason: why, for the API server's log (ids only, never the secret or the body).
    :param public: the answer's ``detail`` (nothing an attacker could use).
    """

    def __init__(self, status: int, reason: str, public: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.public = public


def _unauthorized(reason: str) -> WebhookRejected:
    # One answer for every signature failure: unsigned, malformed, stale, future, wrong.
    return WebhookRejected(401, reason, "Signature verification failed.")


def parse_signature(header: str | None) -> tuple[int, list[str]]:
    """``t`` and every ``v1`` of an ``Exa-Signature`` header; a missing or malformed one is refused."""
    if not header:
        raise _unauthorized("no Exa-Signature header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if name == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif name == "v1" and value:
            candidates.append(value.strip().lower())
    if timestamp is None or not candidates:
        raise _unauthorized("a malformed Exa-Signature header")
    return timestamp, candidates


def expected_signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<t>.<body>"`` keyed with ``secret``."""
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, header: str | None, body: bytes, now: float | None = None) -> int:
    """Check a delivery's signature and timestamp; returns the timestamp, or raises :class:`WebhookRejected`.

    :param secret: the monitor's webhook secret (the connection's ``webhook_secret``).
    :param header: the ``Exa-Signature`` header as received.
    :param body: the raw request body, exactly as received.
    :param now: the current Unix time (tests); default ``time.time()``.
    """
    timestamp, candidates = parse_signature(header)
    now = time.time() if now is None else now
    expected = expected_signature(secret, timestamp, body)
    # Every candidate is compared (no early exit), each in constant time.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise _unauthorized("a signature that does not match")
    if timestamp < now - TOLERANCE:
        raise _unauthorized(f"a stale timestamp ({now - timestamp:.0f} s old)")
    if timestamp > now + FUTURE_SKEW:
        raise _unauthorized(f"a timestamp {timestamp - now:.0f} s in the future")
    return timestamp


class ReplayStore:
    """Event ids delivered in this process during the last ``TOLERANCE + FUTURE_SKEW`` seconds.

    Only verified deliveries reach it, so it cannot be filled by forgeries. A delivery that fails
    after :meth:`claim` calls :meth:`release`, so that Exa's retry is not refused.

    :param window: seconds an event id is remembered (default: the timestamp tolerance, after which
        the signature check refuses the delivery anyway).
    :param limit: ids kept at most (the oldest go first).
    """

    def __init__(self, window: float = TOLERANCE + FUTURE_SKEW, limit: int = 100_000) -> None:
        self.window = window
        self.limit = limit
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, event_id: str, now: float | None = None) -> bool:
        """``True`` the first time ``event_id`` is seen within the window, ``False`` for a replay."""
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._seen and (next(iter(self._seen.values())) < now - self.window or len(self._seen) >= self.limit):
                self._seen.popitem(last=False)
            if event_id in self._seen:
                return False
            self._seen[event_id] = now
            return True

    def release(self, event_id: str) -> None:
        """Forget ``event_id`` (its delivery failed before anything was registered)."""
        with self._lock:
            self._seen.pop(event_id, None)


@dataclass(frozen=True)
class Delivery:
    """A verified webhook body.

    :param event_id: the envelope's ``id`` (``event_...``).
    :param event_type: e.g. ``monitor.run.completed``.
    :param monitor_id: the run's monitor (``data.monitorId``).
    :param run: the run the event carries (``data``); ``None`` for events about no run.
    :param created_at: the envelope's ``createdAt``.
    """

    event_id: str
    event_type: str
    monitor_id: str
    run: ExaMonitorRun | None
    created_at: str | None


def parse_delivery(body: bytes) -> Delivery:
    """The envelope of a verified body; a body that is not one is refused with 400."""
    try:
        data = json.loads(body)
    except ValueError:
        raise WebhookRejected(400, "a body that is not JSON", "The body is not a JSON event.") from None
    if not isinstance(data, Mapping):
        raise WebhookRejected(400, "a body that is not a JSON object", "The body is not a JSON event.")
    event_id, event_type, run = data.get("id"), data.get("type"), data.get("data")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
        raise WebhookRejected(400, "an event without id or type", "The event has no id or type.")
    monitor_id = run.get("monitorId") if isinstance(run, Mapping) else None
    if event_type == RUN_COMPLETED and (
        not isinstance(run, Mapping) or not isinstance(run.get("id"), str) or not isinstance(monitor_id, str)
    ):
        raise WebhookRejected(400, f"event {event_id} without a run", "The event carries no run.")
    parsed: ExaMonitorRun | None = None
    if event_type == RUN_COMPLETED and isinstance(run, Mapping):
        try:
            parsed = ExaMonitorRun.from_api(dict(run))
        except ProviderError:
            raise WebhookRejected(
                400, f"event {event_id} with an unreadable run", "The event's run is unreadable."
            ) from None
    created = data.get("createdAt")
    return Delivery(
        event_id=event_id,
        event_type=event_type,
        monitor_id=str(monitor_id or ""),
        run=parsed,
        created_at=created if isinstance(created, str) else None,
    )


def run_event(
    monitor_id: str, monitor_type: str, run: ExaMonitorRun, ended_fallback: str | None = None
) -> dict[str, Any]:
    """The payload a watcher emits for a run that ended (and the receiver registers).

    :param monitor_id: the monitor.
    :param monitor_type: ``search`` or ``websets``.
    :param run: the run.
    :param ended_fallback: ``completed_at`` when the run carries no end time (a delivery's ``createdAt``).
    """
    raw = run.raw
    ended = next(
        (raw.get(k) for k in ("completedAt", "failedAt", "cancelledAt", "canceledAt") if raw.get(k)),
        ended_fallback,
    )
    return {
        "monitor_id": monitor_id,
        "monitor_type": monitor_type,
        "run_id": run.id,
        "status": str(run.status_text),
        "created_at": run.created_at,
        "completed_at": ended,
    }


def status_of(run: ExaMonitorRun) -> str | None:
    """The normalised terminal status of a delivered run, or ``None`` when it is not terminal."""
    status = run.status
    return status.value if status.is_terminal and status is not ExaRunStatus.UNKNOWN else None


# --- the delivery record ------------------------------------------------------------------------------


def record_key(monitor_type: str, monitor_id: str) -> str:
    """The asset state store key of a monitor's delivery record (beside the watcher's watermark)."""
    return f"delivered:{monitor_type}:{monitor_id}"


def parse_record(value: Any) -> dict[str, str]:
    """run id -> who delivered it, from a stored record (anything unreadable is an empty record)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if not isinstance(value, Mapping) or value.get("version") != RECORD_VERSION:
        return {}
    runs = value.get("runs")
    return {str(k): str(v) for k, v in runs.items()} if isinstance(runs, Mapping) else {}


def record_value(runs: Mapping[str, str]) -> dict[str, Any]:
    """The stored form of a record, keeping the :data:`RECORD_SIZE` newest entries (insertion order)."""
    items = list(runs.items())[-RECORD_SIZE:]
    return {"version": RECORD_VERSION, "runs": dict(items)}
