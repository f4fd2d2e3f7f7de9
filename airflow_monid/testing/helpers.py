"""Helpers for testing DAGs against the emulator: connections, triggers and watchers, XComs.

Airflow is imported only inside the functions that need it, so ``airflow_monid.testing`` stays
importable without Airflow (the emulator itself is standard library only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from airflow.triggers.base import BaseTrigger

    from airflow_monid.testing.emulator import Emulator
    from airflow_monid.triggers.exa import ExaMonitorRunWatcher

#: The key a connection gets when the emulator accepts any key (it was started without one).
ANY_KEY = "emulator-accepts-any-key"


def _env_name(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def connection_env(
    emulator: Emulator,
    *,
    monid_conn_id: str | None = "monid_default",
    exa_conn_id: str | None = "exa_default",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The ``AIRFLOW_CONN_*`` environment variables of connections to ``emulator``.

    JSON form, with the emulator's URL as the host and its key as the password, as
    ``airflow_monid`` hooks read them (``{"conn_type": "monid", "host": "http://127.0.0.1:PORT",
    "password": "...", "extra": {...}}``). Pass them to a subprocess, or use
    :func:`emulator_connections` to set them in this process. The values contain the keys: do not
    print them.

    :param emulator: a started emulator.
    :param monid_conn_id: the Monid connection's id; ``None`` for none.
    :param exa_conn_id: the Exa connection's id; ``None`` for none.
    :param extra: connection extras for both, e.g. fast retries ``{"max_attempts": 3,
        "backoff_base": 0.05, "retry_after_cap": 1}``; default none (production defaults).
    """
    env: dict[str, str] = {}
    url = emulator.url
    for conn_type, conn_id, key in (
        ("monid", monid_conn_id, emulator.monid.api_key),
        ("exa", exa_conn_id, emulator.exa.api_key),
    ):
        if conn_id:
            conn = {"conn_type": conn_type, "host": url, "password": key or ANY_KEY, "extra": dict(extra or {})}
            env[_env_name(conn_id)] = json.dumps(conn)
    return env


@contextlib.contextmanager
def emulator_connections(
    emulator: Emulator,
    *,
    monid_conn_id: str | None = "monid_default",
    exa_conn_id: str | None = "exa_default",
    extra: Mapping[str, Any] | None = None,
) -> Iterator[Emulator]:
    """Point ``monid_default`` and ``exa_default`` (or the ids given) at ``emulator`` for a ``with`` block.

    Sets the variables of :func:`connection_env` in ``os.environ`` and puts back what was there
    before (or removes them) on exit, even on an exception. Yields the emulator::

        with Emulator() as emu, emulator_connections(emu):
            dag.test()

    :param emulator: a started emulator.
    :param monid_conn_id: the Monid connection's id; ``None`` for none.
    :param exa_conn_id: the Exa connection's id; ``None`` for none.
    :param extra: connection extras for both (see :func:`connection_env`).
    """
    env = connection_env(emulator, monid_conn_id=monid_conn_id, exa_conn_id=exa_conn_id, extra=extra)
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield emulator
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# ----- triggers ----------------------------------------------------------------------------------


async def arun_trigger_until_event(trigger: BaseTrigger, *, events: int = 1, timeout: float = 30.0) -> list[Any]:
    """Iterate ``trigger.run()`` as the triggerer does until it has yielded ``events`` events.

    Returns the events' payloads (``TriggerEvent.payload``), in order, then closes the generator
    (a watcher's ``run()`` never ends by itself). No clock is involved beyond ``timeout``, the
    wall-clock bound of the whole wait.

    :param trigger: any trigger instance (``MonidRunTrigger``, ``ExaMonitorRunTrigger``,
        ``ExaMonitorRunWatcher``...); its connection must resolve (see :func:`emulator_connections`).
    :param events: how many events to wait for (>= 1).
    :param timeout: seconds; then :class:`TimeoutError` naming the events received so far.
    :raises RuntimeError: ``run()`` ended before yielding ``events`` events.
    """
    if events < 1:
        raise ValueError("events must be >= 1")
    payloads: list[Any] = []
    agen = trigger.run()
    ended = False

    async def collect() -> None:
        nonlocal ended
        async for event in agen:
            payloads.append(event.payload)
            if len(payloads) >= events:
                return
        ended = True

    name = type(trigger).__name__
    try:
        await asyncio.wait_for(collect(), timeout)
    except TimeoutError:
        raise TimeoutError(
            f"{name} yielded {len(payloads)} of {events} event(s) within {timeout} s: {payloads!r}"
        ) from None
    finally:
        await agen.aclose()  # type: ignore[attr-defined]  # run() is an async generator
    if ended:
        raise RuntimeError(f"{name}.run() ended after {len(payloads)} of {events} event(s): {payloads!r}")
    return payloads


def run_trigger_until_event(trigger: BaseTrigger, *, events: int = 1, timeout: float = 30.0) -> list[Any]:
    """:func:`arun_trigger_until_event` on a new event loop, for synchronous tests and scripts.

    In an ``async def`` test, ``await arun_trigger_until_event(...)`` instead (an event loop is
    already running there).

    :param trigger: any trigger instance.
    :param events: how many events to wait for (>= 1).
    :param timeout: seconds; then :class:`TimeoutError`.
    """
    return asyncio.run(arun_trigger_until_event(trigger, events=events, timeout=timeout))


def exa_watcher(watcher: Any, *, poll_interval: float | None = 0.05) -> ExaMonitorRunWatcher:
    """A fresh :class:`~airflow_monid.triggers.exa.ExaMonitorRunWatcher` like ``watcher``, polling faster.

    :param watcher: an ``ExaMonitorRunWatcher``, the ``AssetWatcher`` holding one, the ``Asset``
        whose only watcher holds one (the object a DAG is scheduled on), or the watcher's kwargs.
    :param poll_interval: seconds between the copy's cycles; ``None`` keeps the original's.
    """
    from airflow_monid.triggers.exa import ExaMonitorRunWatcher

    found = watcher
    watchers = getattr(found, "watchers", None)
    if watchers is not None:  # an Asset
        if len(watchers) != 1:
            raise ValueError(f"the asset has {len(watchers)} watchers; pass the one to run")
        found = watchers[0]
    found = getattr(found, "trigger", found)  # an AssetWatcher
    if isinstance(found, ExaMonitorRunWatcher):
        kwargs = dict(found.serialize()[1])
    elif isinstance(found, Mapping):
        kwargs = dict(found)
    else:
        raise TypeError(f"expected an ExaMonitorRunWatcher, an AssetWatcher, an Asset or kwargs, got {type(found)}")
    if poll_interval is not None:
        kwargs["poll_interval"] = poll_interval
    return ExaMonitorRunWatcher(**kwargs)


async def awatcher_events(
    watcher: Any,
    emulator: Emulator | None = None,
    *,
    events: int = 1,
    timeout: float = 30.0,
    poll_interval: float | None = 0.05,
) -> list[dict[str, Any]]:
    """Run an Exa monitor watcher against the emulator until it emits ``events`` events; their payloads.

    What the triggerer would turn into asset events, without a triggerer: each payload is
    ``{monitor_id, monitor_type, run_id, status, created_at, completed_at}``. The watcher starts
    from "now" (no asset state store): runs already terminal at its first listing are its starting
    point and are not emitted, so script the runs it must see finish to advance when listed
    (``emu.exa.add_run(..., polls_to_finish=2, advance_on_list=True)``) or by the clock
    (``finish_after_seconds=``).

    :param watcher: see :func:`exa_watcher` (e.g. the ``Asset`` your DAG is scheduled on).
    :param emulator: when given, the watcher's ``exa_conn_id`` points at it during the call (the
        ``monid_emulator`` fixture already does this for ``exa_default``).
    :param events: how many events to wait for.
    :param timeout: wall-clock bound, seconds; then :class:`TimeoutError`.
    :param poll_interval: seconds between the watcher's cycles (your DAG's may be 60).
    """
    trigger = exa_watcher(watcher, poll_interval=poll_interval)
    with contextlib.ExitStack() as stack:
        if emulator is not None:
            stack.enter_context(emulator_connections(emulator, monid_conn_id=None, exa_conn_id=trigger.exa_conn_id))
        return await arun_trigger_until_event(trigger, events=events, timeout=timeout)


def watcher_events(
    watcher: Any,
    emulator: Emulator | None = None,
    *,
    events: int = 1,
    timeout: float = 30.0,
    poll_interval: float | None = 0.05,
) -> list[dict[str, Any]]:
    """:func:`awatcher_events` on a new event loop, for synchronous tests and scripts.

    :param watcher: an ``ExaMonitorRunWatcher``, its ``AssetWatcher``, the ``Asset`` or the kwargs.
    :param emulator: when given, the watcher's ``exa_conn_id`` points at it during the call.
    :param events: how many events to wait for.
    :param timeout: wall-clock bound, seconds; then :class:`TimeoutError`.
    :param poll_interval: seconds between the watcher's cycles.
    """
    return asyncio.run(awatcher_events(watcher, emulator, events=events, timeout=timeout, poll_interval=poll_interval))


def asset_events(payloads: Sequence[Mapping[str, Any]], *, start: datetime | None = None) -> list[dict[str, Any]]:
    """Asset events as Airflow makes them from watcher payloads, for calling a task function directly.

    Airflow stores a watcher's event as an asset event whose ``extra`` is ``{"from_trigger": True,
    "payload": payload}``; these dicts have that ``extra`` and increasing ``timestamp``s, which is
    what :func:`airflow_monid.models.exa_events.exa_runs_from_events` reads::

        runs = exa_runs_from_events({asset: asset_events(payloads)})

    :param payloads: e.g. what :func:`watcher_events` returned.
    :param start: the first event's timestamp; default now (UTC). Each next one is 1 ms later.
    """
    first = start or datetime.now(UTC)
    return [
        {"extra": {"from_trigger": True, "payload": dict(payload)}, "timestamp": first + timedelta(milliseconds=i)}
        for i, payload in enumerate(payloads)
    ]


V = TypeVar("V")


class _ByAsset(Mapping[Any, V]):
    """A mapping keyed by assets compared by equality (``Asset`` is unhashable before Airflow 3.3)."""

    def __init__(self, items: list[tuple[Any, V]]) -> None:
        self._items = items

    def __getitem__(self, key: Any) -> V:
        for asset, value in self._items:
            if asset is key or asset == key:
                return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[Any]:
        return (asset for asset, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)


def asset_event_map(asset: Any, events: Sequence[Any], *more: Any) -> Mapping[Any, Sequence[Any]]:
    """``{asset: events}`` as a task's ``triggering_asset_events`` / ``inlet_events`` argument.

    A plain dict needs a hashable ``Asset``, which Airflow 3.0-3.2 do not have; this mapping looks
    assets up by equality and works on every version::

        handle(triggering_asset_events=asset_event_map(runs, asset_events(payloads)),
               inlet_events=asset_event_map(runs, []))

    :param asset: the asset (e.g. the one the DAG is scheduled on).
    :param events: its events, e.g. from :func:`asset_events`.
    :param more: further ``asset, events`` pairs, flat.
    """
    if len(more) % 2:
        raise ValueError("more must be asset, events pairs")
    pairs = [(asset, events), *((more[i], more[i + 1]) for i in range(0, len(more), 2))]
    return _ByAsset(pairs)


# ----- dag.test() results ------------------------------------------------------------------------


def xcom_value(dag_run: Any, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
    """An XCom of a finished ``dag.test()`` run, deserialised.

    :param dag_run: what ``dag.test()`` returned.
    :param task_id: the task that pushed it.
    :param key: the XCom key (``return_value``, or e.g. ``run_id``, ``run`` for ``MonidRunOperator``).
    :param map_index: a mapped task instance's index; -1 for an unmapped task.
    :raises KeyError: no such XCom.
    """
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key=key, map_index=map_index)
            .one_or_none()
        )
        if row is None:
            raise KeyError(f"no XCom {key!r} of task {task_id!r} (map index {map_index}) in {dag_run.run_id!r}")
        return XComModel.deserialize_value(row)
