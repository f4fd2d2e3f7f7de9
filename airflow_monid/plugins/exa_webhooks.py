"""The Exa webhook receiver on the API server: ``POST /monid/api/v1/exa/webhooks/{conn_id}``.

Exa calls it, not a signed-in user, so it needs no Airflow login: the ``Exa-Signature`` HMAC with
the connection's ``webhook_secret`` is its authentication (``airflow_monid._exa.webhooks``). A
verified ``monitor.run.completed`` becomes, for every asset whose
:class:`~airflow_monid.triggers.exa.ExaMonitorRunWatcher` follows that monitor through that
connection, the asset event the watcher would have emitted (same ``extra``), unless that run was
already delivered (the delivery record, and the asset's recent events).

Answers: 200 ``{"status": "delivered" | "duplicate", "asset_events": n}``; 202 for events that start
nothing (``monitor.run.created``, a status no watcher emits); 400 a verified body that is not an
event; 401 unsigned, wrongly signed, stale or future-dated (one answer for all); 404 a monitor no
active watcher of this connection follows; 409 an event id already received; 413 a body over
``MAX_BODY_BYTES``. Logs carry ids only: never the secret, a signature or the body.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from fastapi import Request  # resolved by name in the route's signature (postponed annotations)

from airflow_monid._exa.webhooks import (
    MAX_BODY_BYTES,
    RUN_COMPLETED,
    SIGNATURE_HEADER,
    Delivery,
    ReplayStore,
    WebhookRejected,
    parse_delivery,
    parse_record,
    record_key,
    record_value,
    run_event,
    status_of,
    verify_signature,
)

log = logging.getLogger("airflow_monid.exa_webhooks")

WATCHER_CLASSPATH = "airflow_monid.triggers.exa.ExaMonitorRunWatcher"
WEBHOOK_PATH = "/api/v1/exa/webhooks/{conn_id}"
# Recent events of an asset compared with a delivered run (Airflow 3.0-3.2's only dedupe, and a
# second check on 3.3+).
RECENT_EVENTS = 500

_replays = ReplayStore()
# One delivery at a time per process: the check and the registration are one step (the database
# transaction covers other processes on 3.3+).
_register_lock = threading.Lock()


def _watchers(session: Any, conn_id: str, monitor_id: str) -> list[tuple[Any, dict[str, Any]]]:
    """(asset model, watcher kwargs) of every active watcher of ``monitor_id`` through ``conn_id``."""
    from airflow.models.trigger import Trigger
    from sqlalchemy import select

    found: list[tuple[Any, dict[str, Any]]] = []
    for trigger in session.scalars(select(Trigger).where(Trigger.classpath == WATCHER_CLASSPATH)):
        kwargs = trigger.kwargs or {}  # decrypted by the model
        if kwargs.get("monitor_id") != monitor_id or kwargs.get("exa_conn_id", "exa_default") != conn_id:
            continue
        for asset in trigger.assets:
            found.append((asset, dict(kwargs)))
    return found


def _state_store_model() -> Any:
    try:
        from airflow.models.asset_state_store import AssetStateStoreModel
    except ImportError:  # Airflow < 3.3: no asset state store
        return None
    return AssetStateStoreModel


def _already_in_events(session: Any, asset_id: int, run_id: str) -> bool:
    from airflow.models.asset import AssetEvent
    from sqlalchemy import select

    rows = session.scalars(
        select(AssetEvent.extra)
        .where(AssetEvent.asset_id == asset_id)
        .order_by(AssetEvent.id.desc())
        .limit(RECENT_EVENTS)
    )
    for extra in rows:
        payload = (extra or {}).get("payload") if isinstance(extra, dict) else None
        if isinstance(payload, dict) and payload.get("run_id") == run_id:
            return True
    return False


def _claim_in_record(session: Any, model: Any, asset_id: int, key: str, run_id: str) -> bool:
    """Add ``run_id`` to the asset's delivery record; ``False`` when it is already there."""
    from sqlalchemy import select

    row = session.scalar(select(model).where(model.asset_id == asset_id, model.key == key).with_for_update())
    runs = parse_record(row.value if row is not None else None)
    if run_id in runs:
        return False
    runs[run_id] = "webhook"
    value = json.dumps(record_value(runs))
    if row is None:
        session.add(model(asset_id=asset_id, key=key, value=value, last_updated_by_kind="api"))
    else:
        row.value = value
    session.flush()
    return True


def deliver(conn_id: str, delivery: Delivery) -> tuple[int, dict[str, Any]]:
    """Register the asset events of a verified delivery; returns the HTTP status and answer.

    :param conn_id: the Exa connection the delivery was addressed to.
    :param delivery: the verified delivery.
    """
    from sqlalchemy.exc import IntegrityError

    try:
        return _register(conn_id, delivery)
    except IntegrityError:
        # Another API-server worker inserted the monitor's first delivery record in the same instant
        # (the row lock orders writers only once the row exists). Its commit won and ours rolled back
        # whole; once more, the row is there and its lock decides which of the two registers the run.
        return _register(conn_id, delivery)


def _register(conn_id: str, delivery: Delivery) -> tuple[int, dict[str, Any]]:
    """One transaction: the check and the registration of every asset event of a delivery."""
    from airflow.assets.manager import AssetManager
    from airflow.utils.session import create_session

    run = delivery.run
    if delivery.event_type != RUN_COMPLETED or run is None:
        return 202, {"status": "ignored", "asset_events": 0}
    status = status_of(run)
    model = _state_store_model()
    created = 0
    with _register_lock, create_session() as session:
        watchers = _watchers(session, conn_id, delivery.monitor_id)
        if not watchers:
            raise WebhookRejected(
                404, f"monitor {delivery.monitor_id} has no active watcher on {conn_id}", "Unknown monitor."
            )
        wanted = [(a, kw) for a, kw in watchers if status is not None and status in _statuses(kw)]
        if not wanted:
            return 202, {"status": "ignored", "asset_events": 0}
        for asset, kwargs in wanted:
            monitor_type = str(kwargs.get("monitor_type") or "search")
            if _already_in_events(session, asset.id, run.id):
                continue
            key = record_key(monitor_type, delivery.monitor_id)
            if model is not None and not _claim_in_record(session, model, asset.id, key, run.id):
                continue
            payload = run_event(delivery.monitor_id, monitor_type, run, ended_fallback=delivery.created_at)
            extra = {"from_trigger": True, "payload": payload, "exa_webhook_event": delivery.event_id}
            if AssetManager.register_asset_change(asset=asset, extra=extra, session=session) is not None:
                created += 1
        session.commit()
    return 200, {"status": "delivered" if created else "duplicate", "asset_events": created}


def _statuses(kwargs: dict[str, Any]) -> list[str]:
    from airflow_monid._exa.watermark import normalise_statuses

    try:
        return normalise_statuses(kwargs.get("statuses") or ["completed"])
    except ValueError:
        return ["completed"]


def _secret(conn_id: str) -> str | None:
    from airflow_monid.hooks.exa import ExaHook

    try:
        return ExaHook(conn_id).webhook_secret()
    except Exception:  # an unknown connection answers as a wrong signature does
        return None


async def _read_body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        raise WebhookRejected(413, f"a body of {length} bytes", f"The body exceeds {MAX_BODY_BYTES} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise WebhookRejected(413, "a streamed body over the limit", f"The body exceeds {MAX_BODY_BYTES} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def add_routes(app: Any) -> None:
    """Add the receiver to a FastAPI app (the provider's plugin app, mounted at ``/monid``).

    :param app: the FastAPI app.
    """
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    @app.post(WEBHOOK_PATH, summary="Exa webhook receiver (signed deliveries; no Airflow login)")
    async def exa_webhook(conn_id: str, request: Request) -> Any:
        event_id: str | None = None
        try:
            body = await _read_body(request)
            secret = await run_in_threadpool(_secret, conn_id)
            if not secret:
                raise WebhookRejected(
                    401, f"connection {conn_id} has no webhook_secret", "Signature verification failed."
                )
            verify_signature(secret, request.headers.get(SIGNATURE_HEADER), body)
            delivery = parse_delivery(body)
            if not _replays.claim(delivery.event_id):
                raise WebhookRejected(409, f"event {delivery.event_id} received before", "Event already received.")
            event_id = delivery.event_id
            status, answer = await run_in_threadpool(deliver, conn_id, delivery)
        except WebhookRejected as exc:
            if event_id is not None and exc.status != 409:
                _replays.release(event_id)
            log.warning("Exa webhook on %s refused (%d): %s.", conn_id, exc.status, exc.reason)
            return JSONResponse(status_code=exc.status, content={"detail": exc.public})
        except Exception as exc:
            if event_id is not None:
                _replays.release(event_id)  # Exa's retry must get through
            log.error("Exa webhook on %s: event %s failed: %s.", conn_id, event_id, type(exc).__name__)
            return JSONResponse(status_code=500, content={"detail": "The event could not be registered."})
        run_id = delivery.run.id if delivery.run is not None else None
        log.info(
            "Exa webhook on %s: event %s (%s) monitor %s run %s: %s, %d asset event(s).",
            conn_id,
            delivery.event_id,
            delivery.event_type,
            delivery.monitor_id,
            run_id,
            answer["status"],
            answer["asset_events"],
        )
        return JSONResponse(status_code=status, content=answer)
