"""One status poller per event loop and Monid connection, shared by every deferred Monid run.

Polling ``GET /v1/runs/{id}`` per run and interval costs one request (and one download of the whole
output) per run; a triggerer holding thousands of runs spends its CPU there. The poller instead pages
``GET /v1/runs?limit=100`` (newest first; each item carries the status) once per interval and resolves
every registered run it sees. Runs it does not see (older than what it paged, or absent from the list)
get a per-run ``GET``, bounded by the connection's ``max_connections``.

Each trigger registers a :class:`Watch` and awaits it; the poller starts with the first watch and
stops with the last. Its task runs in an empty ``contextvars`` context: it serves every trigger, so
its few log lines belong to the triggerer's log, not to the task log of whichever trigger came first.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import hashlib
import logging
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_monid._http.backoff import Backoff, worth_logging
from airflow_monid._http.connection import read_extra
from airflow_monid._http.policy import ApiSettings
from airflow_monid._http.transport import asend
from airflow_monid.exceptions import APIError, ConfigError, PermanentError, ProviderError
from airflow_monid.hooks.monid import MonidHook
from airflow_monid.models._base import parse_time
from airflow_monid.models.monid import MonidRunStatus

log = logging.getLogger(__name__)

#: List pages may be a little out of order around a run's creation (clock skew between API nodes).
CREATED_AT_SKEW = 60.0
#: Consecutive failed list reads after which a cycle also reads its runs one by one: a broken list
#: endpoint must degrade to per-run polling, not stop every wait.
LIST_FAILURES_BEFORE_FALLBACK = 3


@dataclasses.dataclass(frozen=True)
class PollingOptions:
    """How the triggers of one connection poll (connection extras of type ``monid``).

    :param batch: ``batch_status_polling``: share one paged list read per interval (default); ``False``
        polls each run with its own ``GET``.
    :param page_budget: ``status_page_budget``: list pages read per cycle at most (100 runs each).
    """

    batch: bool = True
    page_budget: int = 200

    @classmethod
    def from_extras(cls, extras: Mapping[str, Any], conn_id: str = "?") -> PollingOptions:
        batch = read_extra(extras, "monid", "batch_status_polling")
        if isinstance(batch, str):
            batch = batch.strip().lower() not in ("false", "0", "no", "off")
        budget = read_extra(extras, "monid", "status_page_budget")
        try:
            pages = cls.page_budget if budget in (None, "") else int(budget)
        except (TypeError, ValueError):
            pages = 0
        if pages < 1:
            raise ConfigError(f"Connection {conn_id!r}: extra 'status_page_budget' must be a positive integer.")
        return cls(batch=cls.batch if batch is None else bool(batch), page_budget=pages)


def epoch_of(value: Any) -> float | None:
    """A run's ``createdAt`` (ISO text or epoch) as epoch seconds; ``None`` when unreadable."""
    parsed = parse_time(value)
    return parsed.timestamp() if parsed is not None else None


class Watch:
    """One trigger's interest in one run: the latest status the poller saw, and when.

    :param run_id: the run.
    :param created_at: its ``createdAt`` (epoch seconds), which tells the poller how deep to page.
    :param poll_interval: the most staleness the trigger accepts, in seconds.
    """

    def __init__(self, run_id: str, created_at: float | None, poll_interval: float) -> None:
        self.run_id = run_id
        self.created_at = created_at
        self.poll_interval = poll_interval
        self.seen_at = time.monotonic()  # the task read the run right before deferring
        self.raw_status: str | None = None
        self.terminal = False
        self.error: PermanentError | None = None
        self.last_error: str | None = None
        self.beyond_list = False  # not found in the list last time: read it with its own GET
        self.changed = asyncio.Event()

    @property
    def due_at(self) -> float:
        return self.seen_at + self.poll_interval

    @property
    def final(self) -> bool:
        return self.terminal or self.error is not None

    def report(self, raw_status: Any, now: float) -> None:
        self.seen_at = now
        self.last_error = None
        text = str(raw_status)
        if text != self.raw_status:
            self.raw_status = text
            # An unknown status parses to UNKNOWN, which is not terminal: it never ends a wait.
            self.terminal = MonidRunStatus.parse(raw_status).is_terminal
            self.changed.set()

    def fail(self, exc: PermanentError) -> None:
        self.error = exc
        self.changed.set()


class StatusPoller:
    """The shared poller of one event loop and connection (base URL, TLS setting, key, options)."""

    _registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], StatusPoller]]
    _registry = weakref.WeakKeyDictionary()

    def __init__(self, settings: ApiSettings, options: PollingOptions, key: tuple[Any, ...]) -> None:
        # One attempt per request: the poller retries on its own schedule (and honours a 429's
        # Retry-After once for every run), rather than each request sleeping inside the core.
        self.settings = dataclasses.replace(settings, retry=dataclasses.replace(settings.retry, max_attempts=1))
        self.options = options
        self._key = key
        self._watches: dict[str, list[Watch]] = {}
        self._wake = asyncio.Event()
        self._next_cycle = float("inf")
        self._task: asyncio.Task[None] | None = None
        self._list_failures = 0
        self._stalls = 0
        self._pause_until = 0.0
        self._list_refused: str | None = None
        self.cycles = 0
        self.requests = 0

    @classmethod
    def shared(cls, settings: ApiSettings, options: PollingOptions) -> StatusPoller:
        loop = asyncio.get_running_loop()
        digest = hashlib.sha256(settings.key.encode()).hexdigest()
        key = (settings.base_url, str(settings.verify), digest, options)
        pollers = cls._registry.setdefault(loop, {})
        poller = pollers.get(key)
        if poller is None:
            poller = pollers[key] = cls(settings, options, key)
        return poller

    @classmethod
    def active(cls) -> list[StatusPoller]:
        """The pollers of the running loop (tests and benchmarks)."""
        return list(cls._registry.get(asyncio.get_running_loop(), {}).values())

    # --- registration ---------------------------------------------------------------------------

    def watch(self, run_id: str, created_at: float | None, poll_interval: float) -> Watch:
        watch = Watch(run_id, created_at, poll_interval)
        self._watches.setdefault(run_id, []).append(watch)
        if self._task is None or self._task.done():
            # An empty context: see the module docstring.
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="monid-status-poller", context=contextvars.Context()
            )
        elif watch.due_at < self._next_cycle:
            self._wake.set()
        return watch

    def release(self, watch: Watch) -> None:
        """Forget ``watch``; the last release stops the poller. Safe to call twice."""
        watches = self._watches.get(watch.run_id)
        if watches and watch in watches:
            watches.remove(watch)
            if not watches:
                del self._watches[watch.run_id]
        if not self._watches:
            pollers = self._registry.get(asyncio.get_running_loop(), {})
            if pollers.get(self._key) is self:
                del pollers[self._key]
            if self._task is not None and not self._task.done() and self._task is not asyncio.current_task():
                self._task.cancel()

    @property
    def size(self) -> int:
        """Runs watched."""
        return len(self._watches)

    def _all(self) -> Iterable[Watch]:
        for watches in self._watches.values():
            yield from watches

    # --- the loop ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        while self._watches:
            now = time.monotonic()
            due = min((w.due_at for w in self._all() if not w.final), default=float("inf"))
            self._next_cycle = max(due, self._pause_until)
            if self._next_cycle > now:
                self._wake.clear()
                delay = self._next_cycle - now
                try:
                    async with asyncio.timeout(None if delay == float("inf") else delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            self._next_cycle = float("inf")
            try:
                await self._cycle(now)
            except Exception as exc:  # a bug or an odd answer must not leave every wait unattended
                log.exception("Monid status cycle failed; trying again after a pause.")
                self._stall([w for w in self._all() if not w.final], exc, None)

    async def _cycle(self, started: float) -> None:
        # Every run due within half its interval is read now: runs registered at different moments
        # fall into step after one cycle, so the list is paged about once per interval, not per run.
        targets = [w for w in self._all() if not w.final and w.due_at <= started + w.poll_interval / 2]
        pending = {w.run_id for w in targets}
        self.cycles += 1
        pages = single = 0
        try:
            if self.options.batch and self._list_refused is None:
                pages = await self._page(targets, pending)
            if pending:
                single = await self._read_each(pending)
        except _Pause as pause:
            self._stall(targets, pause.error, pause.retry_after)
            return
        if targets and all(w.seen_at < started and not w.final for w in targets):
            self._stall(targets, None, None)  # every read failed: back off instead of spinning
            return
        if self._stalls:
            log.info("Monid run statuses readable again after %d failed cycle(s).", self._stalls)
            self._stalls = 0
        resolved = sum(1 for w in targets if w.final)
        level = logging.INFO if resolved or single else logging.DEBUG
        log.log(
            level,
            "Monid status cycle: %d run(s) due, %d finished, %d list page(s), %d single read(s), %d watched.",
            len(targets),
            resolved,
            pages,
            single,
            len(self._watches),
        )

    async def _page(self, targets: list[Watch], pending: set[str]) -> int:
        """Read list pages until every target is seen or the list is older than the oldest target."""
        window = [w.created_at for w in targets if w.created_at is not None and not w.beyond_list]
        if not window:
            return 0
        floor = min(window) - CREATED_AT_SKEW
        cursor: str | None = None
        pages = 0
        while pending and pages < self.options.page_budget:
            try:
                page = await self._send(MonidHook._list_call(100, cursor))
            except PermanentError as exc:
                # This key may not list runs (or the API has no list): read each run instead, for good.
                self._list_refused = str(exc)
                log.warning("Monid run list unusable (%s): polling each run on its own from now on.", exc)
                return pages
            except ProviderError as exc:
                self._list_failures += 1
                if self._list_failures < LIST_FAILURES_BEFORE_FALLBACK:
                    raise _Pause(exc) from None
                return pages  # the runs are read one by one below; the list is tried again next cycle
            pages += 1
            self._list_failures = 0
            now = time.monotonic()
            oldest: float | None = None
            for item in page.items:
                for watch in self._watches.get(item.run_id, ()):
                    watch.report(item.raw_status, now)
                    watch.beyond_list = False
                pending.discard(item.run_id)
                created = epoch_of(item.created_at)
                if created is not None:
                    oldest = created if oldest is None else min(oldest, created)
            if not page.cursor or oldest is None or oldest < floor:
                break
            cursor = page.cursor
        for run_id in pending:  # not in the pages read: read on its own until the list shows it again
            for watch in self._watches.get(run_id, ()):
                watch.beyond_list = True
        return pages

    async def _read_each(self, pending: set[str]) -> int:
        gate = asyncio.Semaphore(self.settings.max_connections)
        pause: list[_Pause] = []

        async def read(run_id: str) -> None:
            async with gate:
                if pause or run_id not in self._watches:
                    return
                try:
                    run = await self._send(MonidHook._get_run_call(run_id))
                except PermanentError as exc:  # 404, 401...: this wait cannot succeed
                    for watch in self._watches.get(run_id, ()):
                        watch.fail(exc)
                except _Pause as exc:
                    pause.append(exc)
                    self._note_error(run_id, exc.error)
                except ProviderError as exc:
                    self._note_error(run_id, exc)
                else:
                    now = time.monotonic()
                    for watch in self._watches.get(run_id, ()):
                        watch.report(run.raw_status, now)
                        watch.created_at = watch.created_at or epoch_of(run.created_at)

        await asyncio.gather(*(read(run_id) for run_id in pending))
        if pause:
            raise pause[0]
        return len(pending)

    async def _send(self, call: Any) -> Any:
        self.requests += 1
        try:
            return call.parse(await asend(self.settings, call.request))
        except APIError as exc:
            if exc.status_code == 429:
                raise _Pause(exc) from None
            raise

    def _note_error(self, run_id: str, exc: BaseException) -> None:
        for watch in self._watches.get(run_id, ()):
            watch.last_error = f"{type(exc).__name__}: {exc}"

    def _stall(self, targets: list[Watch], error: BaseException | None, retry_after: float | None) -> None:
        """Back off once for every run: the server's Retry-After, or doubling up to a minute."""
        self._stalls += 1
        if error is not None:
            text = f"{type(error).__name__}: {error}"
            for watch in targets:
                watch.last_error = text
        else:
            text = next((w.last_error for w in targets if w.last_error), "no run could be read")
        interval = min((w.poll_interval for w in targets), default=1.0)
        delay = Backoff.for_polling(interval).delay(self._stalls, retry_after or None)
        self._pause_until = time.monotonic() + delay
        if worth_logging(self._stalls):
            log.warning("Monid status read failed (%s); %d run(s) wait, next try in %.0f s.", text, len(targets), delay)


class _Pause(Exception):
    """Stop this cycle and wait: the API asked to slow down, or the list read failed."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = getattr(error, "retry_after", None)
