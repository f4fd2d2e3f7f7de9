"""The request core's policy: what a request is, and what to do with each answer. No I/O here.

One description of a request (:class:`ApiRequest`) and one retry/error policy (:class:`Attempt`)
serve both :func:`~airflow_monid._http.transport.send` (``httpx.Client``) and
:func:`~airflow_monid._http.transport.asend` (``httpx.AsyncClient``), the way httpx shares its request
model between its two clients. Which layer retries what is written once, in the docs ("Money",
section "Retries, in one place").
"""

from __future__ import annotations

import contextlib
import contextvars
import email.utils
import json
import logging
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from airflow_monid._http.backoff import Backoff
from airflow_monid.exceptions import (
    NOT_RESENT,
    APIError,
    ConfigError,
    ResponseError,
    TransportError,
    UnclearRequestError,
)

__all__ = ["NOT_RESENT"]  # re-exported: the hooks import it from here

log = logging.getLogger("airflow_monid.http")

_BODY_PREVIEW = 200

#: How far past a wait's deadline its last request may run (seconds). A request made while a deadline
#: is set (:func:`deadline_scope`) gets, for each phase (connect, send, each read), the time left until
#: the deadline but at least this much, so the read at the deadline still has a chance; no retry starts
#: after the deadline. The triggerer also bounds each whole poll by the same time (``Waiter.remaining``).
DEADLINE_MARGIN = 5.0

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("airflow_monid_deadline", default=None)


@contextlib.contextmanager
def deadline_scope(end_time: float | None) -> Iterator[None]:
    """Requests sent inside this block respect ``end_time`` (epoch seconds; ``None``: no deadline).

    A context variable, so it follows the code that waits (a thread, or one trigger's asyncio task)
    without passing the deadline through every hook method. The earlier of an enclosing deadline and
    this one applies.
    """
    outer = _deadline.get()
    if outer is not None and end_time is not None:
        end_time = min(outer, end_time)
    token = _deadline.set(end_time if end_time is not None else outer)
    try:
        yield
    finally:
        _deadline.reset(token)


def current_deadline() -> float | None:
    """The deadline set by the innermost :func:`deadline_scope`, if any."""
    return _deadline.get()


def display_url(url: str) -> str:
    """``url`` for messages: no query string or fragment, and no password in its user part."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("?", 1)[0]
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def encode_segment(value: Any, what: str = "id") -> str:
    """Encode one path parameter as exactly one URL segment.

    Every character is percent-encoded (``/``, ``?``, ``#`` included) and ``.``/``..`` become
    ``%2E``/``%2E%2E`` so an id can never change the path it is placed in. Only an empty id is an
    error: ids are the API's business, not ours.
    """
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} must be a non-empty string, got {value!r}.")
    try:
        encoded = quote(value, safe="")
    except UnicodeEncodeError:  # a lone surrogate (JSON allows "\\ud800") has no UTF-8 form
        raise ConfigError(f"{what} is not valid Unicode text, got {value!r}.") from None
    if encoded in (".", ".."):
        encoded = encoded.replace(".", "%2E")
    return encoded


def build_path(template: str, *segments: tuple[Any, str]) -> str:
    """Fill ``{}`` placeholders of ``template`` with encoded ``(value, what)`` segments."""
    return template.format(*(encode_segment(v, what) for v, what in segments))


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of the retry loop of one API call.

    :param max_attempts: attempts per call, the first included.
    :param max_elapsed: seconds after which no new attempt starts.
    :param retry_after_cap: upper bound for a server's ``Retry-After``.
    :param backoff_base: first backoff in seconds (doubled per attempt, full jitter).
    :param backoff_max: upper bound of one backoff.
    """

    max_attempts: int = 6
    max_elapsed: float = 120.0
    retry_after_cap: float = 60.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0

    def backoff(self, attempt: int) -> float:
        return Backoff(base=self.backoff_base, cap=self.backoff_max, jitter=True).delay(attempt)


@dataclass(frozen=True)
class ApiProfile:
    """What differs between the APIs we speak: name, auth header and error body shape."""

    name: str
    auth_header: Callable[[str], dict[str, str]]
    error_message: Callable[[Any], tuple[str | None, str | None]]


class Secret:
    """A string that never shows itself in ``repr``, ``str`` or ``vars`` (it has no ``__dict__``)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class ApiSettings:
    """Everything needed to send a request; built by a hook from its connection.

    The key is excluded from ``repr`` so that logging a settings object can never leak it.
    """

    profile: ApiProfile
    base_url: str
    api_key: Secret | str = field(repr=False)
    timeout: httpx.Timeout = field(default_factory=lambda: httpx.Timeout(30.0, connect=10.0))
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    verify: bool | str = True
    user_agent: str = "airflow-provider-monid"
    #: requests in flight per pooled client (connection extra ``max_connections``).
    max_connections: int = 20

    def __post_init__(self) -> None:
        # Wrapped so that not even ``vars(settings)`` (what debuggers and error reporters print) shows it.
        if not isinstance(self.api_key, Secret):
            object.__setattr__(self, "api_key", Secret(self.api_key))

    @property
    def key(self) -> str:
        """The API key itself, for the one place that needs it: the auth header."""
        assert isinstance(self.api_key, Secret)
        return self.api_key.reveal()


@dataclass(frozen=True)
class ApiRequest:
    """One API call.

    :param paid: the call spends money; it is re-sent only when it provably never reached the API.
    :param run_body_ok: a JSON body carrying ``run_key`` is a result whatever the HTTP status.
    :param ok_statuses: extra statuses returned to the caller instead of raising (e.g. 409 on stop).
    """

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    paid: bool = False
    run_body_ok: bool = False
    run_key: str = "runId"
    ok_statuses: frozenset[int] = frozenset()


@dataclass(frozen=True)
class ApiResponse:
    status_code: int
    data: Any
    request_id: str | None
    headers: Mapping[str, str]


def parse_retry_after(value: str | None, cap: float, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds (delta or HTTP date), capped; ``None`` when absent or unparseable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(seconds, cap))


def _preview(text: str, secret: str) -> str:
    text = " ".join(text.split())[:_BODY_PREVIEW]
    return scrub(text, secret)


def scrub(text: str, secret: str) -> str:
    """Remove the key from text we did not write (an API echoing a header back, for instance)."""
    return text.replace(secret, "***") if secret else text


class Attempt:
    """The retry and error policy of one call, free of I/O so both clients share it.

    Each outcome of an attempt goes to :meth:`on_response` or :meth:`on_error`, which either return
    the final :class:`ApiResponse`, raise the final error, or return a delay before the next attempt.

    :param deadline: epoch seconds the call must respect (default: the enclosing :func:`deadline_scope`).
    :param clock: wall clock, epoch seconds (tests inject one).
    """

    def __init__(
        self,
        settings: ApiSettings,
        request: ApiRequest,
        *,
        deadline: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.request = request
        self.policy = settings.retry
        self.number = 0
        self.started = time.monotonic()
        self.deadline = deadline if deadline is not None else current_deadline()
        self.clock = clock
        self.stopped_by_deadline = False

    @property
    def url(self) -> str:
        """The URL tried, for messages: no query string (it may carry cursors or secrets), never the key."""
        return display_url(self.settings.base_url.rstrip("/") + self.request.path)

    @property
    def api(self) -> str:
        """``Monid``/``Exa``: the API's short name for messages."""
        return self.settings.profile.name.removesuffix(" API")

    @property
    def label(self) -> str:
        return f"{self.settings.profile.name} {self.request.method} {self.url}"

    def begin(self) -> None:
        self.number += 1

    def timeout(self) -> httpx.Timeout:
        """The timeouts of the next attempt: the connection's, capped by the time left to the deadline.

        Each phase gets at most ``max(time left, DEADLINE_MARGIN)``: a request never outlives the wait
        it serves by more than :data:`DEADLINE_MARGIN` seconds per phase.
        """
        base = self.settings.timeout
        if self.deadline is None:
            return base
        left = max(self.deadline - self.clock(), DEADLINE_MARGIN)

        def cap(value: float | None) -> float:
            return left if value is None else min(value, left)

        return httpx.Timeout(connect=cap(base.connect), read=cap(base.read), write=cap(base.write), pool=cap(base.pool))

    def _next_delay(self, reason: str, retry_after: float | None = None) -> float | None:
        """Delay before the next attempt, or ``None`` when the retry budget is spent."""
        if self.number >= self.policy.max_attempts:
            return None
        delay = retry_after if retry_after is not None else self.policy.backoff(self.number)
        if time.monotonic() - self.started + delay > self.policy.max_elapsed:
            return None
        if self.deadline is not None and self.clock() + delay >= self.deadline:
            self.stopped_by_deadline = True  # the wait this call serves ends first: no retry after it
            return None
        log.warning(
            "%s: %s; attempt %d of %d, next in %.1f s",
            self.label,
            reason,
            self.number,
            self.policy.max_attempts,
            delay,
        )
        return delay

    def _attempts(self) -> str:
        text = f"{self.number} attempt(s)"
        return text + ", none more before the wait's deadline" if self.stopped_by_deadline else text

    def on_error(self, exc: httpx.HTTPError) -> float:
        what, advice, never_sent = self._describe_error(exc)
        reason = f"{type(exc).__name__}: {scrub(str(exc), self.settings.key) or 'no detail'}"
        if self.request.paid and not never_sent:
            happened = (
                f"{self.label}: the request may have reached {self.api} but its answer was lost ({what}; {reason})."
            )
            raise UnclearRequestError(f"{happened} {NOT_RESENT}", happened=happened, url=self.url) from None
        delay = self._next_delay(reason)
        if delay is None:
            if never_sent:
                money = f"nothing reached {self.api}, nothing was paid"
            elif self.request.paid:  # only idempotent=False POSTs are paid; kept for completeness
                money = f"the request may have reached {self.api}"
            else:
                money = "nothing was paid (this request costs nothing)"
            raise TransportError(
                f"{self.label} {what} ({reason}) after {self._attempts()}: {money}; {advice}.",
                api=self.settings.profile.name,
                method=self.request.method,
                url=self.url,
                base_url=display_url(self.settings.base_url),
                reached=not never_sent,
            ) from None
        return delay

    def _describe_error(self, exc: httpx.HTTPError) -> tuple[str, str, bool]:
        """(what happened, what to do, whether the request certainly never reached the API)."""
        timeout = self.timeout()
        if isinstance(exc, httpx.ConnectTimeout):
            return (
                f"could not connect within {timeout.connect or 0:g} s",
                "check the connection's host and port, and that this machine can reach the API",
                True,
            )
        if isinstance(exc, httpx.PoolTimeout):
            return "waited too long for a free connection of the pool", "try again later", True
        if isinstance(exc, httpx.ConnectError):
            text = str(exc).lower()
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, ssl.SSLError) or any(k in text for k in ("ssl", "certificate", "tls")):
                return (
                    "could not connect: the TLS handshake failed",
                    "check the scheme of the connection's host (http or https) and its 'verify' extra",
                    True,
                )
            if any(
                k in text
                for k in ("name or service not known", "nodename nor servname", "name resolution", "getaddrinfo")
            ):
                return (
                    "could not connect: the host name does not resolve",
                    "check the connection's host",
                    True,
                )
            if "refused" in text:
                return (
                    "could not connect: the connection was refused",
                    "check the connection's host and port, and that the API is up",
                    True,
                )
            return "could not connect", "check the connection's host and port", True
        if isinstance(exc, httpx.ReadTimeout):
            return (
                f"got no answer within {timeout.read or 0:g} s",
                "the API is slow or unreachable; try again later (extra 'timeout' sets the read timeout)",
                False,
            )
        if isinstance(exc, httpx.WriteTimeout | httpx.WriteError):
            return "could not send the request", "try again later", False
        return (
            "lost the connection before the answer (reset or closed)",
            "the API or the network failed; try again later",
            False,
        )

    def on_response(self, response: httpx.Response) -> ApiResponse | float:
        status = response.status_code
        request_id = response.headers.get("x-request-id")
        text = response.text
        try:
            data: Any = json.loads(text) if text.strip() else None
            is_json = True
        except ValueError:
            data, is_json = None, False
        result = ApiResponse(status, data, request_id, response.headers)
        has_run = self.request.run_body_ok and isinstance(data, dict) and bool(data.get(self.request.run_key))
        if has_run or status in self.request.ok_statuses:
            return result
        if 200 <= status < 300:
            if self.request.paid and (not is_json or self.request.run_body_ok):
                # Accepted, but we cannot tell which run: sending it again could pay twice.
                body = "without a readable run id" if self.request.run_body_ok else "with a body that is not JSON"
                happened = (
                    f"{self.label} answered HTTP {status} {body} (x-request-id: {request_id or 'none'}): "
                    f"{_preview(text, self.settings.key)!r}; {self.api} accepted the request, so a run may have "
                    "been started and paid."
                )
                raise UnclearRequestError(f"{happened} {NOT_RESENT}", happened=happened, url=self.url)
            if not is_json:
                raise ResponseError(
                    f"{self.label} answered HTTP {status} with a body that is not JSON "
                    f"(x-request-id: {request_id or 'none'}): {_preview(text, self.settings.key)!r}"
                )
            return result
        retry_after = None
        if status in (429, 503):  # the API sends Retry-After with 429 and with 503 (wallet not active yet)
            retry_after = parse_retry_after(response.headers.get("retry-after"), self.policy.retry_after_cap)
        retryable = status in (408, 429) or status >= 500
        if self.request.paid and retryable and status != 429:
            # 408/5xx without a run id: the API may have started (and billed) a run before failing.
            # Only an API that returns runs in its answer (run_body_ok) lacks "a run id"; Exa's never has one.
            answer = f"HTTP {status} without a run id" if self.request.run_body_ok else f"HTTP {status}"
            happened = (
                f"{self.label} answered {answer} (x-request-id: {request_id or 'none'}): "
                f"{self._message(data, text)}; the request reached {self.api}, which may have started (and "
                "billed) a run before failing."
            )
            raise UnclearRequestError(f"{happened} {NOT_RESENT}", happened=happened, url=self.url)
        if retryable:
            delay = self._next_delay(f"HTTP {status}", retry_after)
            if delay is not None:
                return delay
        message = self._message(data, text) if is_json else f"non-JSON body: {_preview(text, '')!r}"
        tag = data.get("tag") if isinstance(data, dict) and isinstance(data.get("tag"), str) else None
        raise APIError(
            api=self.settings.profile.name,
            method=self.request.method,
            path=self.request.path,
            status_code=status,
            message=scrub(message, self.settings.key),
            request_id=request_id,
            tag=tag,
            retry_after=retry_after,
            url=self.url,
            paid=self.request.paid,
        )

    def _message(self, data: Any, text: str) -> str:
        message, _ = self.settings.profile.error_message(data)
        return scrub(message or _preview(text, "") or "no message", self.settings.key)


class KeyAuth(httpx.Auth):
    """Adds the API's auth header to each request as it is sent.

    The key stays inside this object (whose repr hides it) rather than in a headers dict that would sit
    in the sending frame's locals, which error reporters capturing locals print with every traceback.
    """

    def __init__(self, settings: ApiSettings) -> None:
        self._settings = settings

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers.update(self._settings.profile.auth_header(self._settings.key))
        yield request

    def __repr__(self) -> str:
        return f"KeyAuth({self._settings.profile.name}, key=***)"

    def headers(self) -> dict[str, str]:
        """The auth header itself (for tests of the wire format)."""
        return self._settings.profile.auth_header(self._settings.key)


def build(settings: ApiSettings, request: ApiRequest) -> dict[str, Any]:
    if not settings.key:
        raise ConfigError(
            f"The {settings.profile.name} connection has no API key: put the key in the connection's password field."
        )
    kwargs: dict[str, Any] = {
        "method": request.method,
        "url": settings.base_url.rstrip("/") + request.path,
        "headers": {"User-Agent": settings.user_agent, "Accept": "application/json"},
        "auth": KeyAuth(settings),
        "timeout": settings.timeout,
    }
    if request.params:
        kwargs["params"] = {k: v for k, v in request.params.items() if v is not None}
    if request.json is not None:
        kwargs["content"] = json.dumps(request.json, allow_nan=False).encode()
        kwargs["headers"]["Content-Type"] = "application/json"
    return kwargs
