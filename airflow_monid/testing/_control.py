"""HTTP control surface under /_emulator/ so out-of-process tests (e.g. an Airflow cluster) can script it.

No auth, and never written to the request log: tests count API calls and must not see their own setup.
Each route calls the Python method of the same name with the JSON body as keyword arguments (the
reference is in ``docs/testing.md``)::

    GET    /_emulator/health                  {"ok": true, "url": ...}
    GET    /_emulator/requests                ?method=&path=&path_prefix=  -> emu.requests(...)
    POST   /_emulator/reset                   emu.reset()
    GET    /_emulator/runs                    emu.monid.runs()
    GET    /_emulator/runs/{id}               emu.monid.get_run(id)
    POST   /_emulator/runs/{id}/complete      emu.monid.complete_run(id, **body)
    POST   /_emulator/runs/{id}/fail          emu.monid.fail_run(id, **body)
    POST   /_emulator/runs/{id}/status        emu.monid.set_status(id, **body)
    POST   /_emulator/monid/endpoints         emu.monid.set_endpoint(**body)
    POST   /_emulator/monid/runs              emu.monid.add_run(**body)
    POST   /_emulator/monid/settings          balance, held, last_page_cursor, cursor_loop, next_run_ids, budgets,
                                              list_hide_new_seconds, list_lag_seconds
    GET    /_emulator/monid/charges           emu.monid.charges()
    POST   /_emulator/faults                  emu.add_fault(**body)
    DELETE /_emulator/faults                  emu.clear_faults()
    POST   /_emulator/exa/monitors            emu.exa.add_monitor(**body)
    POST   /_emulator/exa/runs                emu.exa.add_run(**body)
    POST   /_emulator/exa/runs/finish         emu.exa.finish_run(**body)
    GET    /_emulator/exa/runs/{monitor}      emu.exa.runs(monitor)
    POST   /_emulator/exa/webhooks/deliver    emu.exa.deliver_webhook(**body): a signed delivery to a URL
    POST   /_emulator/exa/settings            trigger_creates, trigger_response, trigger_polls_to_finish,
                                              trigger_final_status, advance_on_list
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from airflow_monid.testing._common import Reply, Req

if TYPE_CHECKING:
    from airflow_monid.testing.emulator import Emulator

_MONID_SETTINGS = frozenset(
    {
        "balance",
        "held",
        "last_page_cursor",
        "cursor_loop",
        "next_run_ids",
        "budgets",
        "list_hide_new_seconds",
        "list_lag_seconds",
    }
)
_EXA_SETTINGS = frozenset(
    {"trigger_creates", "trigger_response", "trigger_polls_to_finish", "trigger_final_status", "advance_on_list"}
)


def _ok(body: Any = None) -> Reply:
    return Reply(200, {"ok": True} if body is None else body)


def _settings(target: Any, allowed: frozenset[str], body: dict[str, Any]) -> Reply:
    unknown = set(body) - allowed
    if unknown:
        raise TypeError(f"unknown settings: {sorted(unknown)}")
    for name, value in body.items():
        setattr(target, name, value)
    return _ok({name: getattr(target, name) for name in sorted(allowed)})


def control(emu: Emulator, req: Req) -> Reply:
    if req.body_error is not None:
        return Reply(400, {"code": 400, "message": f"Malformed JSON body: {req.body_error}"})
    body = req.body if isinstance(req.body, dict) else {}
    parts = [unquote(p) for p in req.path.split("/")[2:]]
    try:
        return _dispatch(emu, req.method, parts, body, req.query)
    except KeyError as exc:
        return Reply(404, {"code": 404, "message": f"Not found: {exc}"})
    except (TypeError, ValueError) as exc:
        return Reply(400, {"code": 400, "message": str(exc)})


def _dispatch(emu: Emulator, method: str, parts: list[str], body: dict[str, Any], query: dict[str, str]) -> Reply:
    route = (method, *parts)
    if route == ("GET", "health"):
        return _ok({"ok": True, "url": emu.url})
    if route == ("GET", "requests"):
        records = emu.requests(query.get("method"), query.get("path"), query.get("path_prefix"))
        return _ok([r.to_dict() for r in records])
    if route == ("POST", "reset"):
        emu.reset()
        return _ok()
    if route == ("GET", "runs"):
        return _ok(emu.monid.runs())
    if len(parts) == 2 and parts[0] == "runs" and method == "GET":
        return _ok(emu.monid.get_run(parts[1]))
    if len(parts) == 3 and parts[0] == "runs" and method == "POST":
        if parts[2] == "complete":
            return _ok(emu.monid.complete_run(parts[1], **body))
        if parts[2] == "fail":
            return _ok(emu.monid.fail_run(parts[1], **body))
        if parts[2] == "status":
            return _ok(emu.monid.set_status(parts[1], **body))
    if route == ("POST", "monid", "endpoints"):
        emu.monid.set_endpoint(**body)
        return _ok()
    if route == ("POST", "monid", "runs"):
        return _ok(emu.monid.add_run(**body))
    if route == ("GET", "monid", "charges"):
        return _ok(emu.monid.charges())
    if route == ("POST", "monid", "settings"):
        return _settings(emu.monid, _MONID_SETTINGS, body)
    if route == ("POST", "faults"):
        emu.add_fault(**body)
        return _ok()
    if route == ("DELETE", "faults"):
        emu.clear_faults()
        return _ok()
    if route == ("POST", "exa", "monitors"):
        return _ok(emu.exa.add_monitor(**body))
    if route == ("POST", "exa", "runs"):
        return _ok(emu.exa.add_run(**body))
    if len(parts) == 3 and parts[:2] == ["exa", "runs"] and method == "GET":
        return _ok(emu.exa.runs(parts[2]))
    if route == ("POST", "exa", "runs", "finish"):
        return _ok(emu.exa.finish_run(**body))
    if route == ("POST", "exa", "webhooks", "deliver"):
        return _ok(emu.exa.deliver_webhook(**body))
    if route == ("POST", "exa", "settings"):
        return _settings(emu.exa, _EXA_SETTINGS, body)
    return Reply(404, {"code": 404, "message": f"No control route for {method} /_emulator/{'/'.join(parts)}"})
