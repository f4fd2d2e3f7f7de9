"""Exa monitors behaviour: search monitors (/monitors and the older /search-monitors) and Websets monitors."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from airflow_monid.testing._common import (
    DEFAULT,
    BadRequest,
    Reply,
    Req,
    iso,
    new_ulid,
    paginate,
    parse_limit,
    to_epoch,
)

SEARCH_PREFIXES = ("monitors", "search-monitors")
# The two families spell the same things differently; the emulator keeps each family's own spelling.
CANCELLED = {"search": "cancelled", "websets": "canceled"}
INITIAL = {"search": "pending", "websets": "created"}


def _norm(family: str, status: str) -> str:
    return CANCELLED[family] if status in ("cancelled", "canceled") else status


def sample_output(monitor_name: str) -> dict[str, Any]:
    now = time.time()
    results = [
        {
            "id": f"https://news.example.com/{monitor_name}/{i}",
            "url": f"https://news.example.com/{monitor_name}/{i}",
            "title": f"Emulated result {i} for {monitor_name}",
            "publishedDate": iso(now - 86400 * i),
            "author": None,
            "text": f"Body text of emulated result {i}.",
        }
        for i in (1, 2)
    ]
    return {
        "results": results,
        "content": f"Two new items were found for {monitor_name}.",
        "grounding": [
            {
                "field": "content",
                "citations": [{"url": r["url"], "title": r["title"]} for r in results],
                "confidence": "high",
            }
        ],
    }


@dataclass
class _Run:
    id: str
    monitor_id: str
    family: str
    status: str
    created: float
    seq: int
    polls_to_finish: int | None
    final_status: str
    fail_reason: str | None
    output: Any
    run_type: str
    updated: float = 0.0
    started: float | None = None
    ended: float | None = None
    polls: int = 0
    # A listing that includes the run counts as one poll, as a GET of the run does.
    advance_on_list: bool = False
    # time.monotonic() at which the run finishes, whoever reads it (then polls do not count).
    deadline: float | None = None


@dataclass
class _Monitor:
    id: str
    family: str
    status: str
    name: str | None
    created: float
    seq: int
    # Search monitors: the ``webhook`` object (the SDK requires one; ``None`` renders ``null`` to
    # reproduce an API that omits it). Websets monitors: the webset they belong to.
    webhook: dict[str, Any] | None = None
    webset_id: str = "webset_emulated"
    runs: dict[str, _Run] = field(default_factory=dict)


def default_webhook(monitor_id: str) -> dict[str, Any]:
    """What a search monitor created with a webhook looks like (the create call requires one)."""
    return {
        "url": f"https://hooks.example.com/exa/{monitor_id}",
        "events": ["monitor.run.created", "monitor.run.completed"],
    }


class ExaState:
    """State and HTTP behaviour of the Exa monitor APIs (``Emulator.exa``).

    All mutation happens under the emulator's lock. Search monitors are served under ``/monitors``
    and the older ``/search-monitors``; Websets monitors under ``/websets/v0/monitors``.

    Settings (plain attributes, also set by ``POST /_emulator/exa/settings``):

    * ``advance_on_list`` (``False``): the default of :meth:`add_run`'s ``advance_on_list``, and
      whether runs created by ``POST /monitors/{id}/trigger`` advance when listed;
    * ``trigger_creates`` (``True``): a trigger call creates a run;
    * ``trigger_response`` (``None``: ``{"triggered": true}``): the trigger call's answer;
    * ``trigger_polls_to_finish`` (1) and ``trigger_final_status`` (``completed``): how a
      triggered run ends.

    :param lock: the emulator's lock, shared with the Monid state and the request log.
    :param api_key: the key ``x-api-key`` (or ``Authorization: Bearer``) must carry; ``None``
        accepts any non-empty key.
    """

    def __init__(self, lock: threading.RLock, api_key: str | None) -> None:
        self._lock = lock
        self.api_key = api_key
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._monitors: dict[str, _Monitor] = {}
            self._seq = 0
            self.trigger_creates = True
            self.trigger_response: dict[str, Any] | None = None
            self.trigger_polls_to_finish: int | None = 1
            self.trigger_final_status = "completed"
            self.advance_on_list = False
            # Deliveries sent by deliver_webhook: event id -> (raw body, Exa-Signature header).
            self._sent: dict[str, tuple[bytes, str | None]] = {}

    # ----- scripting API -----------------------------------------------------------------------------

    def add_monitor(
        self,
        monitor_id: str,
        *,
        family: str = "search",
        status: str | None = None,
        name: str | None = None,
        webhook: Any = DEFAULT,
        webset_id: str | None = None,
    ) -> dict[str, Any]:
        """Add (or replace) a monitor; returns it as ``GET /monitors/{id}`` renders it.

        :param monitor_id: the monitor's id, as DAGs name it (``monitor_id=``).
        :param family: ``search`` (search monitors) or ``websets`` (Websets monitors).
        :param status: default ``active`` (search) or ``enabled`` (Websets); ``paused`` or
            ``disabled`` to test how a sensor or operator reacts.
        :param name: the monitor's name (also its search query); default: the id.
        :param webhook: search monitors: the ``webhook`` object to return (default: an HTTPS URL and
            the two run events); ``None`` returns ``null``, which the official SDK rejects.
        :param webset_id: Websets monitors: the webset it belongs to (``GET /v0/monitors?websetId=``
            filters on it); default ``webset_emulated``.
        """
        if family not in ("search", "websets"):
            raise ValueError("family must be 'search' or 'websets'")
        if webhook is not DEFAULT and webhook is not None and not isinstance(webhook, dict):
            raise TypeError("webhook must be a JSON object or None")
        with self._lock:
            self._seq += 1
            default_status = "active" if family == "search" else "enabled"
            monitor = _Monitor(
                monitor_id,
                family,
                status or default_status,
                name,
                time.time(),
                self._seq,
                webhook=default_webhook(monitor_id) if webhook is DEFAULT else copy.deepcopy(webhook),
                webset_id=webset_id or "webset_emulated",
            )
            self._monitors[monitor_id] = monitor
            return self._monitor_view(monitor, prefix="monitors")

    def add_run(
        self,
        monitor_id: str,
        *,
        run_id: str | None = None,
        status: str | None = None,
        created_at: Any = None,
        polls_to_finish: int | None = 1,
        final_status: str = "completed",
        fail_reason: str | None = None,
        output: Any = DEFAULT,
        run_type: str = "search",
        advance_on_list: bool | None = None,
        finish_after_seconds: float | None = None,
    ) -> dict[str, Any]:
        """Add a run to a monitor; returns it as ``GET .../runs/{id}`` renders it (without advancing it).

        A run that is not terminal advances when it is observed: by default each ``GET`` of the run
        counts as one poll; it turns ``running`` on the first and ``final_status`` on the
        ``polls_to_finish``-th. Listing the monitor's runs counts too with ``advance_on_list=True``
        (what an ``ExaMonitorRunWatcher`` or a sensor selecting by time reads). With
        ``finish_after_seconds`` it finishes that many seconds after this call instead, whoever
        reads it and however often.

        :param monitor_id: a monitor added with :meth:`add_monitor`.
        :param run_id: default: a new id in Exa's format (Websets ids start ``mrun_``).
        :param status: the initial status: default ``pending`` (search) or ``created`` (Websets);
            a terminal one (``completed``, ``failed``, ``cancelled``/``canceled``) makes a finished
            run that never changes.
        :param created_at: ``createdAt``: a datetime (naive = UTC), an ISO 8601 string or epoch
            seconds; default now. Runs are listed newest first by it.
        :param polls_to_finish: observations until the run ends; ``None``: never on its own (end it
            with :meth:`finish_run`).
        :param final_status: the status it ends with: ``completed``, ``failed`` or ``cancelled``
            (``canceled`` accepted; each family keeps its own spelling).
        :param fail_reason: ``failReason`` (search; e.g. ``rate_limited``) or ``failedReason``
            (Websets) of a failed run; default ``internal_error`` / a generic text.
        :param output: a completed search run's ``output``; default two sample results with
            content and grounding; ``None`` renders ``null``.
        :param run_type: Websets runs' ``type`` (``search`` or ``refresh``).
        :param advance_on_list: a listing that includes the run counts as a poll. Default: the
            ``advance_on_list`` setting (``False``). A watcher records the runs already terminal
            when it first lists as its starting point and never emits them, so give a run it must
            see finish ``polls_to_finish=2`` or more.
        :param finish_after_seconds: finish ``final_status`` this many seconds from now (wall
            clock, checked whenever the run is read: GET, listing, :meth:`get_run`,
            :meth:`runs`); the run reads ``running`` until then. Replaces ``polls_to_finish``.
        """
        if finish_after_seconds is not None and not (
            isinstance(finish_after_seconds, (int, float)) and math.isfinite(finish_after_seconds)
        ):
            raise ValueError("finish_after_seconds must be a finite number of seconds")
        with self._lock:
            monitor = self._monitors.get(monitor_id)
            if monitor is None:
                raise KeyError(f"unknown monitor {monitor_id!r}; call add_monitor first")
            run = self._create_run(
                monitor,
                run_id,
                status,
                created_at,
                None if finish_after_seconds is not None else polls_to_finish,
                final_status,
                fail_reason,
                output,
                run_type,
                self.advance_on_list if advance_on_list is None else bool(advance_on_list),
            )
            if finish_after_seconds is not None and run.ended is None:
                run.deadline = time.monotonic() + max(0.0, float(finish_after_seconds))
            return self._view(run, "monitors")

    def finish_run(
        self, monitor_id: str, run_id: str, status: str = "completed", fail_reason: str | None = None
    ) -> dict[str, Any]:
        """End a run now (or force any status); it then stops advancing on its own.

        :param monitor_id: the run's monitor.
        :param run_id: the run.
        :param status: ``completed``, ``failed``, ``cancelled``/``canceled``, or a non-terminal one.
        :param fail_reason: the failure reason of a ``failed`` run.
        """
        with self._lock:
            run = self._monitors[monitor_id].runs[run_id]
            if fail_reason is not None:
                run.fail_reason = fail_reason
            self._finish(run, status)
            return self._view(run, "monitors")

    def get_run(self, monitor_id: str, run_id: str) -> dict[str, Any]:
        """A run as ``GET /monitors/{id}/runs/{runId}`` renders it, without counting as a poll.

        :param monitor_id: the run's monitor.
        :param run_id: the run.
        """
        with self._lock:
            run = self._monitors[monitor_id].runs[run_id]
            self._tick(run)
            return self._view(run, "monitors")

    def runs(self, monitor_id: str) -> list[dict[str, Any]]:
        """A monitor's runs, newest first, without counting as polls.

        :param monitor_id: the monitor.
        """
        with self._lock:
            ordered = self._ordered(self._monitors[monitor_id])
            for run in ordered:
                self._tick(run)
            return [self._view(r, "monitors") for r in ordered]

    # ----- signed webhook deliveries -------------------------------------------------------------------

    def webhook_body(
        self, monitor_id: str, run_id: str, *, event_id: str | None = None, event_type: str = "monitor.run.completed"
    ) -> dict[str, Any]:
        """The envelope Exa posts for a run event: ``{id, object, type, data: <the run>, createdAt}``.

        :param monitor_id: the run's monitor.
        :param run_id: the run (as ``GET /monitors/{id}/runs/{runId}`` renders it, without counting as a poll).
        :param event_id: the event's id; default a new ``event_...`` id.
        :param event_type: ``monitor.run.completed`` (default) or another event type.
        """
        with self._lock:
            run = self._monitors[monitor_id].runs[run_id]
            self._tick(run)
            data = self._view(run, "monitors")
        return {
            "id": event_id or "event_" + new_ulid(lowercase=True),
            "object": "event",
            "type": event_type,
            "data": data,
            "createdAt": iso(time.time()),
        }

    def deliver_webhook(
        self,
        url: str,
        secret: str,
        monitor_id: str | None = None,
        run_id: str | None = None,
        *,
        event_id: str | None = None,
        event_type: str = "monitor.run.completed",
        signature: str = "valid",
        timestamp_offset: float = 0.0,
        replay: str | None = None,
        pad_to_bytes: int | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """POST a signed delivery to ``url`` as Exa does; returns ``{status, event_id, body, sent_at}``.

        ``Exa-Signature: t=<unix>,v1=<hex>``: HMAC-SHA256 keyed with ``secret`` over
        ``"<t>.<raw body>"``. Faults on demand:

        :param url: the receiver, e.g. ``{api}/monid/api/v1/exa/webhooks/exa_default``.
        :param secret: the monitor's webhook secret.
        :param monitor_id: the run's monitor (not needed with ``replay``).
        :param run_id: the run (not needed with ``replay``).
        :param event_id: the event id; default a new one.
        :param event_type: the event type.
        :param signature: ``valid``; ``wrong`` (signed with another secret); ``none`` (no header);
            ``extra`` (a wrong ``v1`` first, then the right one, as during a secret rotation).
        :param timestamp_offset: seconds added to ``t`` (``-600``: stale; ``+600``: from the future).
        :param replay: an event id delivered before: the very same body and header are sent again.
        :param pad_to_bytes: pad the body (JSON whitespace) to at least this many bytes.
        :param timeout: seconds to wait for the receiver.
        """
        import httpx

        if replay is not None:
            with self._lock:
                body, header = self._sent[replay]
        else:
            if monitor_id is None or run_id is None:
                raise TypeError("monitor_id and run_id are required unless replay is given")
            envelope = self.webhook_body(monitor_id, run_id, event_id=event_id, event_type=event_type)
            body = json.dumps(envelope).encode()
            if pad_to_bytes is not None and len(body) < pad_to_bytes:
                body = body + b" " * (pad_to_bytes - len(body))
            t = int(time.time() + timestamp_offset)
            key = secret if signature != "wrong" else secret + "-not-the-secret"
            digest = hmac.new(key.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
            header = {
                "valid": f"t={t},v1={digest}",
                "wrong": f"t={t},v1={digest}",
                "extra": f"t={t},v1={'0' * 64},v1={digest}",
                "none": None,
            }[signature]
            with self._lock:
                self._sent[envelope["id"]] = (body, header)
        headers = {"content-type": "application/json", "user-agent": "Exa-Webhooks (emulated)"}
        if header is not None:
            headers["Exa-Signature"] = header
        sent_at = time.time()
        response = httpx.post(url, content=body, headers=headers, timeout=timeout)
        try:
            answer: Any = response.json()
        except ValueError:
            answer = response.text[:500]
        return {
            "status": response.status_code,
            "event_id": json.loads(body).get("id"),
            "body": answer,
            "sent_at": sent_at,
        }

    # ----- lifecycle ---------------------------------------------------------------------------------

    def _create_run(
        self,
        monitor: _Monitor,
        run_id: str | None,
        status: str | None,
        created_at: Any,
        polls_to_finish: int | None,
        final_status: str,
        fail_reason: str | None,
        output: Any,
        run_type: str,
        advance_on_list: bool = False,
    ) -> _Run:
        family = monitor.family
        self._seq += 1
        if run_id is None:
            run_id = new_ulid(lowercase=True) if family == "search" else "mrun_" + new_ulid(lowercase=True)
        created = to_epoch(created_at)
        initial = _norm(family, status or INITIAL[family])
        run = _Run(
            run_id,
            monitor.id,
            family,
            initial,
            created,
            self._seq,
            polls_to_finish,
            _norm(family, final_status),
            fail_reason,
            output,
            run_type,
            updated=created,
            advance_on_list=advance_on_list,
        )
        monitor.runs[run_id] = run
        if initial == "running":
            run.started = created
        if initial in ("completed", "failed", CANCELLED[family]):
            run.started = created
            self._finish(run, initial, at=created + 5.0)
        return run

    def _finish(self, run: _Run, status: str, at: float | None = None) -> None:
        run.status = _norm(run.family, status)
        run.polls_to_finish = None  # settled: no further automatic transitions
        run.deadline = None
        now = time.time() if at is None else at
        if run.status in ("completed", "failed", CANCELLED[run.family]):
            run.started = run.started or now
            run.ended = now
        if run.status == "failed" and run.fail_reason is None:
            run.fail_reason = "internal_error" if run.family == "search" else "Emulated monitor run failure"
        run.updated = now

    def _tick(self, run: _Run) -> None:
        """Wall-clock completion (``finish_after_seconds``), evaluated lazily whenever the run is read."""
        if run.deadline is None:
            return
        now = time.time()
        if time.monotonic() >= run.deadline:
            self._finish(run, run.final_status)
        elif run.status != "running":
            run.status, run.started, run.updated = "running", run.started or now, now

    def _poll(self, run: _Run) -> None:
        run.polls += 1
        if run.deadline is not None:
            self._tick(run)
            return
        if run.polls_to_finish is None:
            return
        if run.polls >= run.polls_to_finish:
            self._finish(run, run.final_status)
        elif run.status != "running":
            run.status, run.started, run.updated = "running", time.time(), time.time()

    @staticmethod
    def _ordered(monitor: _Monitor) -> list[_Run]:
        return sorted(monitor.runs.values(), key=lambda r: (r.created, r.seq), reverse=True)

    # ----- rendering ---------------------------------------------------------------------------------

    def _monitor_view(self, monitor: _Monitor, prefix: str) -> dict[str, Any]:
        name = monitor.name or monitor.id
        runs = self._ordered(monitor)
        if monitor.family == "websets":
            return {
                "id": monitor.id,
                "object": "monitor",
                "status": monitor.status,
                "websetId": monitor.webset_id,
                "cadence": {"cron": "0 9 * * *", "timezone": "Etc/UTC"},
                "behavior": {
                    "type": "search",
                    "config": {"query": name, "criteria": [], "count": 10, "behavior": "append"},
                },
                "lastRun": self._view(runs[0], prefix) if runs else None,
                "nextRunAt": iso(time.time() + 86400),
                "metadata": {},
                "createdAt": iso(monitor.created),
                "updatedAt": iso(monitor.created),
            }
        body: dict[str, Any] = {
            "id": monitor.id,
            "name": monitor.name,
            "status": monitor.status,
            "search": {"query": name, "numResults": 10, "contents": {"text": True}},
            "trigger": {"type": "interval", "period": "1d"},
            "outputSchema": {"type": "text"},
            "metadata": None,
            "webhook": copy.deepcopy(monitor.webhook),
            "nextRunAt": iso(time.time() + 86400) if monitor.status == "active" else None,
            "createdAt": iso(monitor.created),
            "updatedAt": iso(monitor.created),
        }
        if prefix == "search-monitors":
            body = {"object": "search_monitor", **body}
        return body

    def _view(self, run: _Run, prefix: str) -> dict[str, Any]:
        ended = iso(run.ended)
        status = run.status
        if run.family == "websets":
            return {
                "id": run.id,
                "object": "monitor_run",
                "status": status,
                "monitorId": run.monitor_id,
                "type": run.run_type,
                "completedAt": ended if status == "completed" else None,
                "failedAt": ended if status == "failed" else None,
                "failedReason": run.fail_reason if status == "failed" else None,
                "canceledAt": ended if status == "canceled" else None,
                "createdAt": iso(run.created),
                "updatedAt": iso(run.updated),
            }
        output = None
        if status == "completed":
            output = sample_output(run.monitor_id) if run.output is DEFAULT else copy.deepcopy(run.output)
        body: dict[str, Any] = {
            "id": run.id,
            "monitorId": run.monitor_id,
            "status": status,
            "output": output,
            "failReason": run.fail_reason if status == "failed" else None,
            "startedAt": iso(run.started),
            "completedAt": ended if status == "completed" else None,
            "failedAt": ended if status == "failed" else None,
            "cancelledAt": ended if status == "cancelled" else None,
            "durationMs": round((run.ended - run.started) * 1000) if run.ended and run.started else None,
            "createdAt": iso(run.created),
            "updatedAt": iso(run.updated),
        }
        if prefix == "search-monitors":
            body = {"id": run.id, "object": "search_monitor_run", **body}
        return body

    # ----- HTTP --------------------------------------------------------------------------------------

    def handle(self, req: Req) -> Reply:
        key = req.headers.get("x-api-key", "").strip()
        auth = req.headers.get("authorization", "")
        if not key and auth[:7].lower() == "bearer ":
            key = auth[7:].strip()
        if not key or (self.api_key is not None and key != self.api_key):
            return _error(req, 401, "Invalid API key", "INVALID_API_KEY")
        parts = req.path.split("/")[1:]
        try:
            with self._lock:
                if parts[0] in SEARCH_PREFIXES:
                    return self._route(req, "search", parts[0], parts[1:])
                if parts[:3] == ["websets", "v0", "monitors"]:
                    return self._route(req, "websets", "websets", parts[3:])
                return _error(req, 404, "Not found", "NOT_FOUND")
        except BadRequest as exc:
            return _error(req, exc.status, exc.message, exc.tag)

    def _route(self, req: Req, family: str, prefix: str, parts: list[str]) -> Reply:
        method = req.method
        if not parts or parts == [""]:
            if method != "GET":
                return _error(req, 405, "Method not allowed", "INVALID_REQUEST")
            return self._list_monitors(req, family, prefix)
        monitor = self._monitors.get(unquote(parts[0]))
        if monitor is None or monitor.family != family:
            return _error(req, 404, f"Monitor {unquote(parts[0])} not found", "NOT_FOUND")
        rest = parts[1:]
        expected = "POST" if rest == ["trigger"] else "GET"
        if rest not in ([], ["trigger"], ["runs"]) and not (len(rest) == 2 and rest[0] == "runs" and rest[1]):
            return _error(req, 404, "Not found", "NOT_FOUND")
        if rest == ["trigger"] and family != "search":  # Websets monitors have no manual trigger
            return _error(req, 404, "Not found", "NOT_FOUND")
        if method != expected:
            return _error(req, 405, "Method not allowed", "INVALID_REQUEST")
        if not rest:
            return Reply(200, self._monitor_view(monitor, prefix))
        if rest == ["trigger"]:
            return self._trigger(req, monitor)
        if rest == ["runs"]:
            # Websets runs are paged here too although their spec declares no cursor or limit and the
            # SDK sends none: the page still carries {hasMore, nextCursor} as the spec's response
            # does, so tests can show what a client reading only the first page misses.
            limit = parse_limit(
                req.query,
                default=50 if family == "search" else 25,
                maximum=100 if family == "search" else 200,
            )
            page, cursor = paginate(self._ordered(monitor), lambda r: r.id, req.query.get("cursor"), limit)
            for listed in page:
                # Runs scripted with advance_on_list count a listing as a poll (as the Monid list
                # does), so a watcher or a sensor that only lists sees them finish; runs with
                # finish_after_seconds finish by the clock, whoever reads them.
                if listed.advance_on_list:
                    self._poll(listed)
                else:
                    self._tick(listed)
            data = [self._view(r, prefix) for r in page]
            return Reply(200, {"data": data, "hasMore": cursor is not None, "nextCursor": cursor})
        run = monitor.runs.get(unquote(rest[1]))
        if run is None:
            return _error(req, 404, f"Run {unquote(rest[1])} not found", "NOT_FOUND")
        self._poll(run)
        return Reply(200, self._view(run, prefix))

    def _list_monitors(self, req: Req, family: str, prefix: str) -> Reply:
        limit = parse_limit(
            req.query, default=50 if family == "search" else 25, maximum=100 if family == "search" else 200
        )
        wanted = req.query.get("status")
        # Websets: ``websetId`` filters (documented, and sent by the SDK's ``webset_id``).
        webset = req.query.get("websetId") if family == "websets" else None
        monitors = [
            m
            for m in sorted(self._monitors.values(), key=lambda m: m.seq, reverse=True)
            if m.family == family and (not wanted or m.status == wanted) and (not webset or m.webset_id == webset)
        ]
        page, cursor = paginate(monitors, lambda m: m.id, req.query.get("cursor"), limit)
        data = [self._monitor_view(m, prefix) for m in page]
        return Reply(200, {"data": data, "hasMore": cursor is not None, "nextCursor": cursor})

    def _trigger(self, req: Req, monitor: _Monitor) -> Reply:
        if monitor.status == "disabled":
            return _error(req, 400, "Monitor is disabled", "INVALID_REQUEST")
        body = {"triggered": True} if self.trigger_response is None else copy.deepcopy(self.trigger_response)
        if self.trigger_creates and body.get("triggered") is True:
            self._create_run(
                monitor,
                None,
                None,
                None,
                self.trigger_polls_to_finish,
                self.trigger_final_status,
                None,
                DEFAULT,
                "search",
                self.advance_on_list,
            )
        return Reply(200, body)


def _error(req: Req, status: int, message: str, tag: str) -> Reply:
    return Reply(status, {"requestId": req.request_id, "error": message, "tag": tag})
