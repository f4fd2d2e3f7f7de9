"""The request core's transport: pooled httpx clients, the concurrency gate, and the two send loops.

:func:`send` and :func:`asend` differ only in how they wait and which client they use; every decision
is :class:`~airflow_monid._http.policy.Attempt`'s.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
import weakref

import httpx

from airflow_monid._http.policy import ApiRequest, ApiResponse, ApiSettings, Attempt, build

# --- client pools -------------------------------------------------------------------------------
# Building an httpx client loads the CA bundle (~18 ms of blocking CPU, ~0.8 MiB). One SSL context
# per CA setting and one client per (event loop, base URL, TLS setting) keep a triggerer holding
# thousands of runs from paying that per trigger. Keys travel per request, never in a client.

_ssl_contexts: dict[str, ssl.SSLContext] = {}
_sync_clients: dict[tuple[str, str, int], httpx.Client] = {}
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str, int], httpx.AsyncClient]]
_async_clients = weakref.WeakKeyDictionary()
_pool_lock = threading.Lock()
# httpcore assigns queued requests to connections in O(queued x connections) per event, so 10,000
# triggers queueing inside one pool would spend their time there. A semaphore per pooled client keeps
# at most ``max_connections`` (a connection extra, 20 by default) requests inside httpcore; the rest
# wait on the semaphore, which is O(1).
_async_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str, int], asyncio.Semaphore]]
_async_gates = weakref.WeakKeyDictionary()


def _verify(settings: ApiSettings) -> ssl.SSLContext | bool:
    if settings.verify is False or not settings.base_url.startswith("https"):
        return False
    key = settings.verify if isinstance(settings.verify, str) else ""
    with _pool_lock:
        ctx = _ssl_contexts.get(key)
        if ctx is None:
            ctx = ssl.create_default_context(cafile=key or None)
            if not key:
                try:
                    import certifi

                    ctx.load_verify_locations(certifi.where())
                except ImportError:  # pragma: no cover - certifi ships with httpx
                    pass
            _ssl_contexts[key] = ctx
    return ctx


def _limits(settings: ApiSettings) -> httpx.Limits:
    # A few keep-alive connections serve thousands of polls; beyond that, requests queue in the pool
    # (no pool timeout) rather than open ever more sockets against one API.
    return httpx.Limits(max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections)


def _pool_key(settings: ApiSettings) -> tuple[str, str, int]:
    return (settings.base_url, str(settings.verify), settings.max_connections)


def sync_client(settings: ApiSettings) -> httpx.Client:
    key = _pool_key(settings)
    with _pool_lock:
        client = _sync_clients.get(key)
    if client is None:
        client = httpx.Client(verify=_verify(settings), limits=_limits(settings))
        with _pool_lock:
            client = _sync_clients.setdefault(key, client)
    return client


def async_client(settings: ApiSettings) -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    key = _pool_key(settings)
    # A closed loop's clients can never be used again, yet their open connections reference the loop,
    # so the weak key alone would keep them (and their sockets) forever: drop them here.
    for closed in [other for other in list(_async_clients.keys()) if other.is_closed()]:
        _async_clients.pop(closed, None)
    per_loop = _async_clients.setdefault(loop, {})
    client = per_loop.get(key)
    if client is None or client.is_closed:
        client = per_loop[key] = httpx.AsyncClient(verify=_verify(settings), limits=_limits(settings))
    return client


def _async_gate(settings: ApiSettings) -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    gates = _async_gates.setdefault(loop, {})
    key = _pool_key(settings)
    gate = gates.get(key)
    if gate is None:
        gate = gates[key] = asyncio.Semaphore(settings.max_connections)
    return gate


def pool_size() -> tuple[int, int]:
    """(sync clients, async clients across live loops): for benchmarks and tests of the pool."""
    live = [clients for loop, clients in list(_async_clients.items()) if not loop.is_closed()]
    return len(_sync_clients), sum(len(v) for v in live)


def send(settings: ApiSettings, request: ApiRequest) -> ApiResponse:
    """Send ``request`` with the sync client, applying the shared retry and error policy."""
    attempt = Attempt(settings, request)
    kwargs = build(settings, request)
    client = sync_client(settings)
    while True:
        attempt.begin()
        kwargs["timeout"] = attempt.timeout()  # capped by the wait's deadline, if any
        try:
            response = client.request(**kwargs)
            outcome = attempt.on_response(response)
        except httpx.HTTPError as exc:
            outcome = attempt.on_error(exc)
        if isinstance(outcome, ApiResponse):
            return outcome
        time.sleep(outcome)


async def asend(settings: ApiSettings, request: ApiRequest) -> ApiResponse:
    """Send ``request`` with the pooled async client; same policy as :func:`send`."""
    attempt = Attempt(settings, request)
    kwargs = build(settings, request)
    client = async_client(settings)
    gate = _async_gate(settings)
    while True:
        attempt.begin()
        kwargs["timeout"] = attempt.timeout()  # capped by the wait's deadline, if any
        try:
            async with gate:
                response = await client.request(**kwargs)
            outcome = attempt.on_response(response)
        except httpx.HTTPError as exc:
            outcome = attempt.on_error(exc)
        if isinstance(outcome, ApiResponse):
            return outcome
        await asyncio.sleep(outcome)
