"""Local HTTP emulator of the Monid and Exa APIs: server, request log, fault injection, control surface."""

from __future__ import annotations

import contextlib
import functools
import json
import re
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote

from airflow_monid.testing._common import Reply, Req, new_request_id
from airflow_monid.testing._control import control
from airflow_monid.testing._exa import ExaState
from airflow_monid.testing._monid import MonidState

FAULT_ACTIONS = ("respond", "reset", "hang", "truncate", "html")
_SECRET_HEADERS = frozenset({"authorization", "x-api-key"})
_MAX_LOG = 200_000
_HTML = (
    "<html><head><title>{status} {phrase}</title></head><body><center><h1>{status} {phrase}</h1></center>"
    "<hr><center>nginx</center></body></html>"
)


@dataclass
class RecordedRequest:
    """One API request the emulator received (``emu.requests()``); never holds the API key.

    :param method: ``GET``, ``POST``...
    :param path: the raw path (percent-encoding kept), without the query string.
    :param query: the query parameters.
    :param body: the parsed JSON body, or ``None``.
    :param headers: lower-case names; ``Authorization`` and ``x-api-key`` removed.
    :param status: the status sent; 0 when a fault sent no response.
    :param time: when it arrived (epoch seconds).
    :param request_id: the ``x-request-id`` answered.
    :param fault: the fault action applied to it, if any.
    """

    method: str
    path: str  # raw path as received (percent-encoding kept), without the query string
    query: dict[str, str]
    body: Any  # parsed JSON, or None when absent or not JSON
    headers: dict[str, str]  # lowercase names; Authorization and x-api-key removed
    status: int  # status sent on the wire; 0 when a fault sent no response at all
    time: float
    request_id: str = ""
    fault: str | None = None  # fault action applied to this request, if any

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Fault:
    """A scripted failure (what :meth:`Emulator.add_fault` returns); the fields are its arguments.

    :param method: the HTTP method, or ``"*"``.
    :param path: a regular expression the whole raw path must match.
    :param action: ``respond``, ``reset``, ``hang``, ``truncate`` or ``html``.
    :param status: the status to answer.
    :param body: the body to answer.
    :param headers: extra response headers.
    :param times: requests left to apply it to; ``None``: unlimited.
    :param hang_seconds: how long ``hang`` holds a request.
    :param after_handling: handle the request first, then apply the fault.
    """

    method: str
    path: str
    action: str = "respond"
    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    times: int | None = 1
    hang_seconds: float = 60.0
    after_handling: bool = False

    def __post_init__(self) -> None:
        if self.action not in FAULT_ACTIONS:
            raise ValueError(f"action must be one of {FAULT_ACTIONS}")
        self._regex = re.compile(self.path)

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and self._regex.fullmatch(path) is not None


def _is_exa(path: str) -> bool:
    parts = path.split("/", 2)
    return len(parts) > 1 and parts[1] in ("monitors", "search-monitors", "websets")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: Emulator
    # The default listen backlog (5) drops SYNs when hundreds of triggers connect at once.
    request_queue_size = 1024

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), which can stall start-up for seconds.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server
    lheaders: dict[str, str]
    raw_requestline: bytes

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.emulator._track(self.connection, True)

    def finish(self) -> None:
        self.server.emulator._track(self.connection, False)
        with contextlib.suppress(OSError):
            super().finish()

    def parse_request(self) -> bool:
        """Lean HTTP/1.x request-line and header parsing.

        The stock implementation runs headers through the email package, which is about half of the
        per-request cost; tests poll the emulator in tight loops, so that matters.
        """
        self.command = ""
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request line {self.requestline!r}")
            return False
        self.command, self.path, self.request_version = words
        headers: dict[str, str] = {}
        for _ in range(200):
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            name, sep, value = str(line, "iso-8859-1").partition(":")
            if not sep or len(line) > 65536:
                self.send_error(HTTPStatus.BAD_REQUEST, "Bad header line")
                return False
            key, value = name.strip().lower(), value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        else:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
            return False
        self.lheaders = headers
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive"
        )
        if headers.get("expect", "").lower() == "100-continue" and self.request_version == "HTTP/1.1":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Parser-level errors (bad request line, unsupported method) keep the API's error shape and
        # x-request-id; the connection is closed because an unread body may follow.
        self.close_connection = True
        reply = Reply(code, {"code": code, "message": message or _phrase(code)})
        self._send(reply, new_request_id())

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in self.lheaders.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.lheaders.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        emu = self.server.emulator
        request_id = new_request_id()
        target = self.path
        if "://" in target:  # absolute-form request target
            target = "/" + target.split("://", 1)[1].partition("/")[2]
        raw_path, _, query_string = target.partition("?")
        raw = self._read_body()
        body: Any = None
        body_error = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                body_error = str(exc)
        headers = self.lheaders
        query = dict(parse_qsl(query_string, keep_blank_values=True))
        req = Req(self.command, raw_path, query, headers, body, body_error, request_id)
        if raw_path == "/_emulator" or raw_path.startswith("/_emulator/"):
            self._send(control(emu, req), request_id)
            return
        record = RecordedRequest(
            self.command,
            raw_path,
            query,
            body,
            {k: v for k, v in headers.items() if k not in _SECRET_HEADERS},
            0,
            time.time(),
            request_id,
        )
        fault = emu._take_fault(self.command, raw_path)
        reply = self._safe_handle(emu, req) if fault is None or fault.after_handling else None
        if fault is None:
            assert reply is not None
            record.status = reply.status
            emu._record(record)
            self._send(reply, request_id)
            return
        record.fault = fault.action
        self._apply_fault(emu, fault, reply, record)

    @staticmethod
    def _safe_handle(emu: Emulator, req: Req) -> Reply:
        try:
            return emu._handle(req)
        except Exception as exc:  # an emulator bug must surface as a 500 in the test, not a dropped socket
            traceback.print_exc(file=sys.stderr)
            return Reply(500, {"code": 500, "message": f"Emulator error: {exc!r}"})

    def _apply_fault(self, emu: Emulator, fault: Fault, handled: Reply | None, record: RecordedRequest) -> None:
        request_id = record.request_id
        if fault.action in ("reset", "hang"):
            emu._record(record)
            if fault.action == "hang":
                emu._release.wait(fault.hang_seconds)
                self.close_connection = True
            else:
                self._abort()
            return
        if fault.action == "html":
            status = fault.status or 502
            phrase = _phrase(status)
            page = fault.body if isinstance(fault.body, str) else _HTML.format(status=status, phrase=phrase)
            reply = Reply(status, raw=page.encode(), content_type="text/html", headers=dict(fault.headers))
        elif fault.action == "truncate" and handled is not None:
            reply = Reply(handled.status, handled.body, {**handled.headers, **fault.headers}, handled.raw)
        else:
            default_status = 200 if fault.action == "truncate" else 500
            reply = _fault_reply(fault, fault.status or default_status, record.path, request_id)
        record.status = reply.status
        emu._record(record)
        self._send(reply, request_id, truncate=fault.action == "truncate")

    def _abort(self) -> None:
        """Close with SO_LINGER 0 so the peer gets a TCP RST instead of an orderly FIN."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()  # the makefile() reference would otherwise keep the descriptor open
            self.connection.close()
        except OSError:
            pass

    def _send(self, reply: Reply, request_id: str, truncate: bool = False) -> None:
        payload = reply.raw if reply.raw is not None else json.dumps(reply.body, separators=(",", ":")).encode()
        extra = {k.lower(): (k, v) for k, v in reply.headers.items()}
        content_type = extra.pop("content-type", ("Content-Type", reply.content_type))[1]
        lines = [
            f"HTTP/1.1 {reply.status} {_phrase(reply.status)}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(payload)}",
            f"x-request-id: {request_id}",
            f"Date: {_http_date(int(time.time()))}",
            "Server: airflow-monid-emulator",
        ]
        lines.extend(f"{name}: {value}" for name, value in extra.values() if name.lower() != "content-length")
        if truncate:
            self.close_connection = True
            payload = payload[: len(payload) // 2]
        if self.close_connection:
            lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True


@functools.lru_cache(maxsize=4)
def _http_date(second: int) -> str:
    return formatdate(second, usegmt=True)


@functools.lru_cache(maxsize=64)
def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _fault_reply(fault: Fault, status: int, path: str, request_id: str) -> Reply:
    headers = dict(fault.headers)
    if isinstance(fault.body, (str, bytes)):
        raw = fault.body.encode() if isinstance(fault.body, str) else fault.body
        return Reply(status, raw=raw, headers=headers, content_type="text/plain")
    body = fault.body
    if body is None and _is_exa(path):
        body = {"requestId": request_id, "error": f"Emulated fault ({status})", "tag": "DEFAULT_ERROR"}
    elif body is None:
        body = {"code": status, "message": f"Emulated fault ({status})"}
    return Reply(status, body, headers)


class Emulator:
    """In-process Monid + Exa API emulator on a local port (standard library only).

    ``emu.monid`` (:class:`~airflow_monid.testing.MonidState`) and ``emu.exa``
    (:class:`~airflow_monid.testing.ExaState`) script the two APIs; the emulator itself keeps the
    request log and the faults. Use it as a context manager (``with Emulator() as emu:``) or call
    :meth:`start` / :meth:`stop`; the pytest fixtures in ``airflow_monid.testing.pytest_plugin``
    do it for you.

    :param monid_api_key: the key Monid requests must carry (``Authorization: Bearer``); a wrong
        one gets 401. ``None`` accepts any non-empty key.
    :param exa_api_key: the key Exa requests must carry (``x-api-key``); ``None``: any.
    :param host: the address to listen on; ``::1`` for IPv6.
    :param port: 0 picks a free port (read it back from :attr:`url`).
    """

    def __init__(
        self,
        monid_api_key: str | None = None,
        exa_api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.host = host
        self.port = port
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self.monid = MonidState(self._lock, monid_api_key)
        self.exa = ExaState(self._lock, exa_api_key)
        self._log: list[RecordedRequest] = []
        self._log_base = 0  # records dropped from the front of _log; keeps absolute indexes stable
        self._faults: list[Fault] = []
        self._callbacks: list[Callable[[RecordedRequest], None]] = []
        self._release = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ----- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Start serving in a background thread; after a :meth:`stop`, on the same port."""
        if self._server is not None:
            raise RuntimeError("emulator already started")
        server_cls: type[_Server] = _Server
        if ":" in self.host:
            server_cls = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
        server = server_cls((self.host, self.port), _Handler)
        server.emulator = self
        # Remember the port so that stop() + start() comes back on the same URL ("API outage" tests).
        self.port = int(server.server_address[1])
        self._release = threading.Event()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="monid-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections (the state is kept: :meth:`start` resumes it)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        self._release.set()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # idle keep-alive handlers would otherwise keep serving after stop()
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:41234``: the ``host`` of a connection to it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether it is serving."""
        return self._server is not None

    def __enter__(self) -> Emulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Back to a fresh state: default catalog, no runs/monitors, no faults, empty log, no callbacks."""
        with self._lock:
            self.monid.reset()
            self.exa.reset()
            self._faults.clear()
            self._log.clear()
            self._log_base = 0
            self._callbacks.clear()
            released, self._release = self._release, threading.Event()
        released.set()

    # ----- faults ------------------------------------------------------------------------------------

    def add_fault(
        self,
        method: str,
        path: str,
        *,
        action: str = "respond",
        status: int | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        times: int | None = 1,
        hang_seconds: float = 60.0,
        after_handling: bool = False,
    ) -> Fault:
        """Apply ``action`` to the next ``times`` requests whose raw path fullmatches the regex ``path``.

        ``status`` defaults to 500 for respond, 502 for html, 200 for truncate. ``method`` may be ``"*"``.
        Faults are tried in the order added; a request uses the first that matches. Requests under
        ``/_emulator/`` are never faulted.

        :param method: the HTTP method, or ``"*"``.
        :param path: a regular expression the whole raw path must match (``r"/v1/runs/.*"``).
        :param action: ``respond`` (answer ``status`` with ``body``, without handling the request),
            ``reset`` (TCP reset, no answer), ``hang`` (no answer for ``hang_seconds``; released by
            :meth:`reset` or :meth:`stop`), ``truncate`` (half of the real answer, then close) or
            ``html`` (an nginx-style HTML error page).
        :param status: the status to answer.
        :param body: a JSON body, or a string/bytes sent as is; default: the API's error shape.
        :param headers: extra response headers, e.g. ``{"Retry-After": "1"}``.
        :param times: how many requests it applies to; ``None``: all until :meth:`clear_faults`.
        :param hang_seconds: how long ``hang`` holds the request.
        :param after_handling: handle the request first (a run is created, a charge made), then
            apply the fault: "the answer was lost".
        """
        fault = Fault(
            method.upper() if method != "*" else "*",
            path,
            action,
            status,
            body,
            dict(headers or {}),
            times,
            hang_seconds,
            after_handling,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every fault not used up yet."""
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    # ----- request log -------------------------------------------------------------------------------

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _record(self, record: RecordedRequest) -> None:
        with self._cond:
            self._log.append(record)
            if len(self._log) > _MAX_LOG:
                drop = len(self._log) // 2
                del self._log[:drop]
                self._log_base += drop
            self._cond.notify_all()
            callbacks = list(self._callbacks)
        for callback in callbacks:  # outside the lock: callbacks may call back into the emulator
            try:
                callback(record)
            except Exception:
                traceback.print_exc(file=sys.stderr)

    def requests(
        self, method: str | None = None, path: str | None = None, path_prefix: str | None = None
    ) -> list[RecordedRequest]:
        """Logged API requests in arrival order (control calls under ``/_emulator/`` are not logged).

        :param method: only this method.
        :param path: only this exact path (raw or percent-decoded), without the query string.
        :param path_prefix: only paths starting with this.
        """
        with self._lock:
            records = list(self._log)
        return [r for r in records if _matches(r, method, path, path_prefix)]

    def count(self, method: str | None = None, path: str | None = None, path_prefix: str | None = None) -> int:
        """How many logged requests match; the arguments are those of :meth:`requests`.

        ``emu.count("POST", "/v1/run")`` is how many Monid runs were paid for.
        """
        return len(self.requests(method, path, path_prefix))

    def wait_for_request(self, predicate: Callable[[RecordedRequest], bool], timeout: float = 30) -> RecordedRequest:
        """First logged request (already received or arriving later) for which ``predicate`` is true.

        :param predicate: called with each :class:`RecordedRequest`.
        :param timeout: seconds; then :class:`TimeoutError`.
        """
        deadline = time.monotonic() + timeout
        position = 0
        with self._cond:
            while True:
                start = max(position - self._log_base, 0)
                for record in self._log[start:]:
                    if predicate(record):
                        return record
                position = self._log_base + len(self._log)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching request within {timeout}s")
                self._cond.wait(remaining)

    def on_request(self, callback: Callable[[RecordedRequest], None]) -> None:
        """Call ``callback(record)`` after each API request is logged, before its response is sent.

        Useful to change the state at an exact point ("a run appears after the first listing").
        Callbacks are removed by :meth:`reset`.

        :param callback: called with the :class:`RecordedRequest`, on the server's thread.
        """
        with self._lock:
            self._callbacks.append(callback)

    # ----- routing -----------------------------------------------------------------------------------

    def _handle(self, req: Req) -> Reply:
        path = req.path
        if path == "/v1" or path.startswith("/v1/"):
            return self.monid.handle(req)
        if _is_exa(path):
            return self.exa.handle(req)
        return Reply(404, {"code": 404, "message": f"No route for {req.method} {path}"})


def _matches(record: RecordedRequest, method: str | None, path: str | None, prefix: str | None) -> bool:
    if method is not None and record.method != method.upper():
        return False
    if path is not None and path not in (record.path, unquote(record.path)):
        return False
    if prefix is not None:
        return record.path.startswith(prefix) or unquote(record.path).startswith(prefix)
    return True
