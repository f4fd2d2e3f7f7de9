"""Monid API behaviour (docs.monid.ai + the 2026-07 OpenAPI capture), scriptable per endpoint."""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from airflow_monid.testing._common import (
    DEFAULT,
    BadRequest,
    Reply,
    Req,
    decode_cursor,
    encode_cursor,
    iso,
    new_ulid,
    parse_limit,
    to_epoch,
)
from airflow_monid.testing._monid_catalog import (
    CALLER,
    COMPOSITE_KEYS,
    PROVIDER_NAMES,
    TERMINAL,
    EndpointScript,
    Outcome,
    default_catalog,
    ok_status,
)


@dataclass
class _Run:
    run_id: str
    seq: int
    script: EndpointScript
    input: Any
    outcome: Outcome
    status: str
    created: float
    started: float | None = None
    completed: float | None = None
    reason: str | None = None
    polls: int = 0
    settled: bool = False
    stop_requested: bool = False
    deadline: float | None = None


class MonidState:
    """State and HTTP behaviour of the Monid API (``Emulator.monid``).

    All mutation happens under the emulator's lock. The default catalog (restored by
    :meth:`reset`) has three endpoints: ``apify /apidojo/tweet-scraper`` (async, finishes on the
    second poll, three sample tweets, PER_RESULT $0.0004), ``pdl /person/enrich`` (sync; an email
    ending ``@nomatch.example`` gets the provider's 404 "no match") and ``pdl /company/enrich``
    (sync). Any other endpoint answers 404 until :meth:`set_endpoint` adds it.

    Settings (plain attributes, also set by ``POST /_emulator/monid/settings``): ``balance`` and
    ``held`` (the wallet, USD), ``last_page_cursor`` (``None``: the last page of ``GET /v1/runs``
    carries ``"cursor": null``; ``"absent"``: no cursor key), ``cursor_loop`` (every page repeats
    the cursor it was given), ``next_run_ids`` (ids the next submitted runs get, in order) and
    ``unlisted`` (run ids ``GET /v1/runs`` leaves out), ``list_hide_new_seconds`` (the list leaves out
    runs created less than this many seconds ago) and ``list_lag_seconds`` (the list still shows a run
    that ended less than this many seconds ago as ``RUNNING``, while its own ``GET`` is current).

    :param lock: the emulator's lock, shared with the Exa state and the request log.
    :param api_key: the key ``Authorization: Bearer`` must carry; ``None`` accepts any non-empty key.
    """

    def __init__(self, lock: threading.RLock, api_key: str | None) -> None:
        self._lock = lock
        self.api_key = api_key
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._catalog = default_catalog()
            self._runs: dict[str, _Run] = {}
            self._seq = 0
            self.balance: float = 25.0
            self.held: float = 0.0
            self.last_page_cursor: str | None = None  # None -> "cursor": null; "absent" -> key omitted
            self.cursor_loop = False
            self.next_run_ids: list[str] = []
            self.unlisted: set[str] = set()  # run ids GET /v1/runs leaves out (another project's runs)
            # GET /v1/runs lags: a run created less than list_hide_new_seconds ago is left out, and one
            # that ended less than list_lag_seconds ago still reads RUNNING there (its own GET is current)
            self.list_hide_new_seconds: float = 0.0
            self.list_lag_seconds: float = 0.0
            # GET /v1/controls/workspace/budgets: None serves one monthly USD 100 budget; [] none.
            self.budgets: list[dict[str, Any]] | None = None

    # ----- scripting API -----------------------------------------------------------------------------

    def set_endpoint(
        self,
        provider: str,
        endpoint: str,
        *,
        mode: str | None = None,
        polls_to_finish: int | None = 1,
        delay: float | None = None,
        final_status: str | list[str] = "COMPLETED",
        provider_status: int = 200,
        output: Any = DEFAULT,
        provider_error: Any = None,
        response_style: str = "docs",
        reason: str | None = None,
        input_shape: str = "any",
        stoppable: bool = True,
        price: dict[str, Any] | None = None,
        description: str | None = None,
        input_schema: Any = DEFAULT,
        schema_style: str | None = None,
    ) -> None:
        """Add or replace a catalog endpoint: how the runs submitted to it from now on behave.

        ``mode``, ``price`` and ``description`` default to the existing entry's values (a new endpoint:
        async, PER_CALL $0.003), so re-scripting ``pdl /person/enrich`` keeps it synchronous. ``delay``
        switches completion from poll-counting to wall-clock time. ``input_schema`` (``None``: none
        published) and ``schema_style`` (``composite``: ``input.body``; ``flat``: ``inputSchema``) are
        what ``POST /v1/inspect`` serves; they default to the existing entry's too.

        :param provider: e.g. ``apify``.
        :param endpoint: e.g. ``/apidojo/tweet-scraper``.
        :param mode: ``sync`` (``POST /v1/run`` answers 200 with the finished run) or ``async``
            (202, then polled).
        :param polls_to_finish: async runs: observations (a ``GET /v1/runs/{id}``, or a listing
            that includes the run) until the run ends; ``None``: never on its own (end it with
            :meth:`complete_run`, :meth:`fail_run` or :meth:`set_status`).
        :param delay: async runs: end this many seconds after submission instead (wall clock).
        :param final_status: the status runs end with (``COMPLETED``, ``FAILED``, ``TIMED_OUT``,
            ``BLOCKED``, ``STOPPED``...), or a list walked one poll at a time
            (``["RUNNING", "STOPPING", "STOPPED"]``).
        :param provider_status: ``providerResponse.httpStatus`` of a completed run; not 2xx means
            the provider failed (with ``providerResponse.error``) and nothing is charged.
        :param output: the run's ``output``; default: the endpoint's sample (generic for a new one).
        :param provider_error: ``providerResponse.error`` when ``provider_status`` is not 2xx.
        :param response_style: sync runs whose provider failed: ``docs`` answers 200, ``spec``
            mirrors the provider's status (402 as 502, 408 as 504).
        :param reason: the run's ``reason`` field when it does not complete.
        :param input_shape: what ``input`` must look like: ``flat``, ``composite``
            (``{body, queryParams, pathParams}``) or ``any``; others get a 400.
        :param stoppable: whether ``POST /v1/runs/{id}/stop`` is accepted (else 409).
        :param price: ``{"type": "PER_CALL" | "PER_RESULT", "amount": ..., "currency": "USD"}``.
        :param description: shown by ``/v1/discover`` and ``/v1/inspect``.
        :param input_schema: the JSON Schema ``/v1/inspect`` publishes; ``None``: none.
        :param schema_style: ``composite`` (``input.body``) or ``flat`` (``inputSchema``).
        """
        if mode not in (None, "sync", "async"):
            raise ValueError("mode must be 'sync' or 'async'")
        if response_style not in ("docs", "spec"):
            raise ValueError("response_style must be 'docs' or 'spec'")
        if input_shape not in ("flat", "composite", "any"):
            raise ValueError("input_shape must be 'flat', 'composite' or 'any'")
        if isinstance(final_status, list) and not final_status:
            raise ValueError("final_status list must not be empty")
        with self._lock:
            old = self._catalog.get((provider, endpoint)) or EndpointScript(provider, endpoint)
            self._catalog[(provider, endpoint)] = EndpointScript(
                provider,
                endpoint,
                mode=mode or old.mode,
                polls_to_finish=polls_to_finish,
                delay=delay,
                final_status=list(final_status) if isinstance(final_status, list) else final_status,
                provider_status=provider_status,
                output=output,
                provider_error=provider_error,
                response_style=response_style,
                reason=reason,
                input_shape=input_shape,
                stoppable=stoppable,
                description=old.description if description is None else description,
                price=dict(old.price if price is None else price),
                input_schema=old.input_schema if input_schema is DEFAULT else input_schema,
                schema_style=schema_style or old.schema_style,
            )

    def add_run(
        self,
        *,
        run_id: str | None = None,
        provider: str = "apify",
        endpoint: str = "/apidojo/tweet-scraper",
        input: Any = None,
        status: str = "COMPLETED",
        provider_status: int = 200,
        output: Any = DEFAULT,
        created_at: Any = None,
        polls_to_finish: int | None = None,
        final_status: str = "COMPLETED",
    ) -> dict[str, Any]:
        """Insert a run directly (pre-existing runs for reconciliation tests, odd ids, unknown statuses).

        :param run_id: default: a new ULID (or the next of ``next_run_ids``).
        :param provider: the run's provider (need not be in the catalog).
        :param endpoint: the run's endpoint.
        :param input: the run's ``input``; default ``{}``.
        :param status: its status now; a terminal one settles it.
        :param provider_status: ``providerResponse.httpStatus`` once completed.
        :param output: the run's output; default: the endpoint's sample.
        :param created_at: ``createdAt`` (datetime, ISO 8601 string or epoch seconds); default now.
        :param polls_to_finish: a non-terminal run: polls until it ends; ``None``: never on its own.
        :param final_status: the status it ends with.
        """
        with self._lock:
            script = copy.copy(self._catalog.get((provider, endpoint)) or EndpointScript(provider, endpoint))
            script.provider_status, script.output = provider_status, output
            script.polls_to_finish, script.final_status, script.delay = polls_to_finish, final_status, None
            run = self._new_run(script, {} if input is None else input, run_id, to_epoch(created_at))
            run.started = run.created
            self._apply(run, status, settle=status in TERMINAL)
            if status in TERMINAL:
                run.completed = run.created + 1.0
            return self._view(run)

    def complete_run(self, run_id: str, provider_status: int = 200, output: Any = DEFAULT) -> dict[str, Any]:
        """Complete a run now (``COMPLETED``); it then stops advancing on its own.

        :param run_id: the run (``emu.monid.runs()[0]["runId"]`` is the newest).
        :param provider_status: ``providerResponse.httpStatus``; not 2xx: the provider failed.
        :param output: the run's output; default: the endpoint's sample for its input.
        """
        with self._lock:
            run = self._runs[run_id]
            run.script = copy.copy(run.script)
            run.script.provider_status, run.script.output = provider_status, output
            run.outcome = run.script.outcome(run.input)
            self._apply(run, "COMPLETED", settle=True)
            return self._view(run)

    def fail_run(self, run_id: str, reason: str = "Emulated infrastructure failure") -> dict[str, Any]:
        """Fail a run now (``FAILED`` with ``reason``).

        :param run_id: the run.
        :param reason: the run's ``reason`` field.
        """
        return self.set_status(run_id, "FAILED", reason=reason)

    def set_status(self, run_id: str, status: str, reason: str | None = None) -> dict[str, Any]:
        """Force any status (terminal or not); the run then stops advancing on its own.

        :param run_id: the run.
        :param status: e.g. ``RUNNING``, ``STOPPING``, ``TIMED_OUT``, ``BLOCKED`` or an unknown one.
        :param reason: the run's ``reason`` field.
        """
        with self._lock:
            run = self._runs[run_id]
            if reason is not None:
                run.reason = reason
            self._apply(run, status, settle=True)
            return self._view(run)

    def get_run(self, run_id: str) -> dict[str, Any]:
        """A run as ``GET /v1/runs/{id}`` renders it, without counting as a poll.

        :param run_id: the run.
        """
        with self._lock:
            run = self._runs[run_id]
            self._tick(run)
            return self._view(run)

    def runs(self) -> list[dict[str, Any]]:
        """Every run, newest first, without counting as polls."""
        with self._lock:
            ordered = sorted(self._runs.values(), key=lambda r: r.seq, reverse=True)
            for run in ordered:
                self._tick(run)
            return [self._view(r) for r in ordered]

    def charges(self) -> list[dict[str, Any]]:
        """The emulator's ledger of charges: every terminal run with what it cost, newest first
        (what a spend report must add up to). Runs still in progress are not charged yet."""
        with self._lock:
            out = []
            for run in sorted(self._runs.values(), key=lambda r: r.seq, reverse=True):
                self._tick(run)
                view = self._view(run, full=False)
                if view["cost"] is not None:
                    keys = ("runId", "provider", "endpoint", "status", "createdAt")
                    out.append({**{k: view[k] for k in keys}, **view["cost"]})
            return out

    def _budgets(self) -> dict[str, Any]:
        spent = round(sum(c["value"] for c in self.charges()), 6)
        budgets = self.budgets
        if budgets is None:
            budgets = [{"id": "bgt_emulated", "name": "Workspace budget", "period": "MONTHLY", "limit": 100.0}]
        items = []
        for b in budgets:
            limit = b.get("limit", 100.0)
            items.append(
                {
                    "id": b.get("id", "bgt_" + str(b.get("name", "budget")).lower().replace(" ", "_")),
                    "name": b.get("name", "budget"),
                    "period": b.get("period", "MONTHLY"),
                    "status": b.get("status", "ACTIVE"),
                    "limit": {"value": limit, "currency": "USD"},
                    "spent": {"value": spent, "currency": "USD"},
                }
            )
        return {"items": items}

    # ----- lifecycle ---------------------------------------------------------------------------------

    def _new_run(self, script: EndpointScript, run_input: Any, run_id: str | None, created: float) -> _Run:
        if run_id is None:
            run_id = self.next_run_ids.pop(0) if self.next_run_ids else new_ulid()
        self._seq += 1
        run = _Run(run_id, self._seq, script, run_input, script.outcome(run_input), "RUNNING", created)
        run.started = created
        run.reason = script.reason
        if script.delay is not None:
            run.deadline = time.monotonic() + script.delay
        self._runs[run_id] = run
        return run

    def _apply(self, run: _Run, status: str, settle: bool) -> None:
        run.status = status
        run.settled = run.settled or settle
        if status in TERMINAL:
            run.completed = run.completed or time.time()

    def _tick(self, run: _Run) -> None:
        """Time-based completion, evaluated lazily whenever the run is read."""
        due = run.deadline is not None and time.monotonic() >= run.deadline
        if due and not run.settled and not run.stop_requested:
            self._apply(run, self._final(run.script), settle=True)

    @staticmethod
    def _final(script: EndpointScript) -> str:
        return script.final_status[-1] if isinstance(script.final_status, list) else script.final_status

    def _poll(self, run: _Run) -> None:
        run.polls += 1
        if run.settled:
            return
        if run.stop_requested:
            self._apply(run, "STOPPED", settle=True)
            return
        script = run.script
        if isinstance(script.final_status, list):
            steps = script.final_status
            index = min(run.polls, len(steps)) - 1
            self._apply(run, steps[index], settle=index == len(steps) - 1)
        elif run.deadline is not None:
            self._tick(run)
        elif script.polls_to_finish is not None and run.polls >= script.polls_to_finish:
            self._apply(run, script.final_status, settle=True)

    # ----- rendering ---------------------------------------------------------------------------------

    def _view(self, run: _Run, *, full: bool = True, billing: bool = False) -> dict[str, Any]:
        script = run.script
        provider_status, output, error = run.outcome
        completed = run.status == "COMPLETED"
        price = script.price
        raw_amount = price.get("amount")
        if isinstance(raw_amount, dict):  # newer responses nest the amount as {value, currency}
            raw_amount = raw_amount.get("value")
        amount = float(raw_amount) if isinstance(raw_amount, (int, float)) else 0.0
        if completed and not isinstance(output, (list, dict)):
            result_count: int | None = None
        elif completed:
            result_count = len(output) if isinstance(output, list) else 1
        else:
            result_count = None
        charged = 0.0
        if completed and ok_status(provider_status):
            charged = amount * (result_count or 0) if price.get("type") == "PER_RESULT" else amount
        body: dict[str, Any] = {
            "runId": run.run_id,
            "caller": CALLER,
            "provider": script.provider,
            "providerName": PROVIDER_NAMES.get(script.provider, script.provider.title()),
            "endpoint": script.endpoint,
            "status": run.status,
        }
        if full:
            body["input"] = run.input
            body["output"] = output if completed else None
        provider_response: dict[str, Any] | None = None
        if completed:
            provider_response = {"httpStatus": provider_status}
            if not ok_status(provider_status):
                provider_response["error"] = error
        body["providerResponse"] = provider_response
        body["price"] = price
        terminal = run.status in TERMINAL
        body["cost"] = {"value": round(charged, 6), "currency": "USD"} if terminal else None
        body["resultCount"] = result_count
        body["createdAt"] = iso(run.created)
        body["startedAt"] = iso(run.started)
        body["completedAt"] = iso(run.completed) if terminal else None
        body["stoppable"] = bool(script.stoppable and script.mode == "async" and not terminal)
        if run.reason is not None and run.status != "COMPLETED":
            body["reason"] = run.reason
        if run.status == "BLOCKED":
            body["controls"] = []
        if billing:
            micro = round(charged * 1_000_000)
            body["billing"] = {
                "calculatedCost": {
                    "value": round(amount * 1_000_000),
                    "unit": "MICRO_DOLLAR",
                    "currency": "USD",
                },
                "actualCost": {"value": micro, "unit": "MICRO_DOLLAR", "currency": "USD"},
                "reportedCost": {"value": micro, "unit": "MICRO_DOLLAR", "currency": "USD"},
            }
        return body

    # ----- HTTP --------------------------------------------------------------------------------------

    def handle(self, req: Req) -> Reply:
        auth = req.headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not token or (self.api_key is not None and token != self.api_key):
            return _error(401, "Invalid API key")
        parts = req.path.split("/")[2:]  # drop "" and "v1"
        try:
            with self._lock:
                return self._route(req, parts)
        except BadRequest as exc:
            return _error(exc.status, exc.message)

    def _route(self, req: Req, parts: list[str]) -> Reply:
        method = req.method
        if parts == ["run"]:
            return self._post_run(req) if method == "POST" else _error(405, "Method not allowed")
        if parts == ["runs"]:
            return self._list_runs(req) if method == "GET" else _error(405, "Method not allowed")
        if len(parts) in (2, 3) and parts[0] == "runs" and parts[1]:
            run = self._runs.get(unquote(parts[1]))
            if len(parts) == 3 and parts[2] != "stop":
                return _error(404, "Not found")
            expected = "GET" if len(parts) == 2 else "POST"
            if method != expected:
                return _error(405, "Method not allowed")
            if run is None:
                return _error(404, "Run not found")
            return self._get_run(run) if len(parts) == 2 else self._stop(run)
        if parts == ["wallet", "balance"] and method == "GET":
            return Reply(
                200,
                {
                    "balance": {"value": self.balance, "currency": "USD"},
                    "held": {"value": self.held, "currency": "USD"},
                },
            )
        if parts == ["controls", "workspace", "budgets"] and method == "GET":
            return Reply(200, self._budgets())
        if parts == ["discover"] and method == "POST":
            return self._discover(req)
        if parts == ["inspect"] and method == "POST":
            return self._inspect(req)
        return _error(404, "Not found")

    @staticmethod
    def _json_object(req: Req) -> dict[str, Any]:
        if req.body_error is not None:
            raise BadRequest(f"Malformed JSON body: {req.body_error}")
        if not isinstance(req.body, dict):
            raise BadRequest("Request body must be a JSON object")
        return req.body

    def _lookup(self, body: dict[str, Any]) -> EndpointScript:
        provider, endpoint = body.get("provider"), body.get("endpoint")
        if not isinstance(provider, str) or not provider:
            raise BadRequest("provider is required and must be a non-empty string")
        if not isinstance(endpoint, str) or not endpoint:
            raise BadRequest("endpoint is required and must be a non-empty string")
        script = self._catalog.get((provider, endpoint))
        if script is None:
            raise BadRequest(f"Endpoint not found: {provider} {endpoint}", status=404)
        return script

    def _post_run(self, req: Req) -> Reply:
        body = self._json_object(req)
        script = self._lookup(body)
        run_input = body.get("input")
        if not isinstance(run_input, dict):
            raise BadRequest("input is required and must be an object")
        composite = bool(run_input) and set(run_input) <= COMPOSITE_KEYS
        if script.input_shape == "composite":
            extra = set(body) - {"provider", "endpoint", "input"}
            if not composite or extra or not all(isinstance(v, dict) for v in run_input.values()):
                raise BadRequest("input must be {body?, queryParams?, pathParams?} objects; no other properties")
        elif script.input_shape == "flat" and composite:
            raise BadRequest("input must be the flat parameter object of the endpoint")
        run = self._new_run(script, copy.deepcopy(run_input), None, time.time())
        if script.mode == "async":
            view = self._view(run)
            keys = ("runId", "provider", "endpoint", "status", "price", "createdAt")
            return Reply(202, {k: view[k] for k in keys})
        self._apply(run, self._final(script), settle=True)
        return Reply(self._sync_status(run), self._view(run, billing=True))

    @staticmethod
    def _sync_status(run: _Run) -> int:
        if run.status in ("TIMED_OUT", "TIME_OUT"):
            return 408
        provider_status = run.outcome[0]
        if run.script.response_style == "spec" and run.status == "COMPLETED" and not ok_status(provider_status):
            return {402: 502, 408: 504}.get(provider_status, provider_status)
        return 200

    def _get_run(self, run: _Run) -> Reply:
        self._poll(run)
        headers = {"Cache-Control": "max-age=300"} if run.status in TERMINAL else {}
        return Reply(200, self._view(run), headers)

    def _stop(self, run: _Run) -> Reply:
        self._tick(run)
        if run.status in TERMINAL:
            return _error(409, f"Run is already {run.status}")
        if not run.script.stoppable:
            return _error(409, "Run is not stoppable")
        run.stop_requested = True
        self._apply(run, "STOPPING", settle=False)
        return Reply(202, {"runId": run.run_id, "status": "STOPPING", "message": "Stop requested"})

    def _list_runs(self, req: Req) -> Reply:
        limit = parse_limit(req.query, default=10, maximum=100)
        ordered = sorted(self._runs.values(), key=lambda r: r.seq, reverse=True)
        ordered = [r for r in ordered if r.run_id not in self.unlisted]
        now = time.time()
        if self.list_hide_new_seconds > 0:
            ordered = [r for r in ordered if now - r.created >= self.list_hide_new_seconds]
        if req.query.get("status"):
            for run in ordered:
                self._tick(run)
            ordered = [r for r in ordered if r.status == req.query["status"]]
        cursor = req.query.get("cursor") or None
        start = 0
        if cursor is not None:
            decoded = decode_cursor(cursor)
            if decoded is None or not decoded.startswith("seq:") or not decoded[4:].isdigit():
                raise BadRequest("Invalid cursor")
            start = sum(1 for r in ordered if r.seq >= int(decoded[4:]))
        page = ordered[start : start + limit]
        for run in page:
            # A listed run was observed, as a GET observes it: runs scripted to finish after N polls
            # finish whether the client reads them one by one or through the list (shared poller).
            self._poll(run)
        result: dict[str, Any] = {"items": [self._listed_view(r, now) for r in page]}
        if cursor is not None and self.cursor_loop:
            result["cursor"] = cursor
        elif start + limit < len(ordered) and page:
            result["cursor"] = encode_cursor(f"seq:{page[-1].seq}")
        elif self.last_page_cursor != "absent":
            result["cursor"] = self.last_page_cursor
        return Reply(200, result)

    def _listed_view(self, run: _Run, now: float) -> dict[str, Any]:
        view = self._view(run, full=False)
        ended = run.completed
        lag = self.list_lag_seconds
        lagging = lag > 0 and ended is not None and now - ended < lag  # the list has not caught up yet
        if lagging and run.status in TERMINAL:
            view.update(status="RUNNING", cost=None, completedAt=None, providerResponse=None, resultCount=None)
            view.pop("reason", None)
            view.pop("controls", None)
        return view

    def _entry(self, script: EndpointScript) -> dict[str, Any]:
        return {
            "provider": script.provider,
            "providerName": PROVIDER_NAMES.get(script.provider, script.provider.title()),
            "endpoint": script.endpoint,
            "description": script.description or f"{script.provider} {script.endpoint}",
            "price": {
                "type": script.price.get("type", "PER_CALL"),
                "amount": {"value": script.price.get("amount", 0), "currency": script.price.get("currency", "USD")},
            },
        }

    def _discover(self, req: Req) -> Reply:
        body = self._json_object(req)
        query, limit = body.get("query"), body.get("limit", 5)
        if not isinstance(query, str) or not 1 <= len(query) <= 1000:
            raise BadRequest("query must be a string of 1-1000 characters")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise BadRequest("limit must be a positive integer")
        words = {w for w in query.lower().replace("/", " ").replace("-", " ").split() if w}
        scored = []
        for script in self._catalog.values():
            entry = self._entry(script)
            text = " ".join([script.provider, entry["providerName"], script.endpoint, entry["description"]])
            haystack = text.lower().replace("/", " ").replace("-", " ")
            score = sum(1 for w in words if w in haystack) / max(len(words), 1)
            if score > 0:
                scored.append({**entry, "score": round(score * 2, 3), "tags": ["emulated"]})
        scored.sort(key=lambda e: -e["score"])
        results = scored[:limit]
        return Reply(200, {"query": query, "count": len(results), "results": results})

    def _inspect(self, req: Req) -> Reply:
        script = self._lookup(self._json_object(req))
        return Reply(
            200,
            {
                "id": new_ulid(),
                **self._entry(script),
                "summary": script.description,
                "method": "POST",
                "docUrl": f"https://docs.example/{script.provider}{script.endpoint}",
                "notes": [],
                "tags": ["emulated"],
                **self._input_schema(script),
            },
        )

    @staticmethod
    def _input_schema(script: EndpointScript) -> dict[str, Any]:
        schema = copy.deepcopy(script.input_schema)
        if schema is None:
            return {}
        if script.schema_style == "flat":  # older backends: one flat schema of the parameters
            return {"inputSchema": schema}
        return {"input": {"body": schema, "bodyType": "json"}}


def _error(status: int, message: str) -> Reply:
    return Reply(status, {"code": status, "message": message})
