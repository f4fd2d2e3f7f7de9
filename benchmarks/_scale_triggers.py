"""Benchmark-only triggers for benchmarks/triggerer_scale.py, imported by the triggerer.

``start_from_trigger`` gives every mapped task the same trigger kwargs, so :class:`BenchMonidTrigger`
takes its run id from its task's map index; it is otherwise the project's :class:`MonidRunTrigger`,
unchanged. :class:`BenchSleepTrigger` only sleeps, with the same wake-ups: Airflow's own floor. Both
report to one probe per triggerer process, which writes its figures to ``$BENCH_PROBE_FILE`` every
second (in a thread: the event loop never waits on the file): triggers started, events yielded
(with times), and the event loop's lag measured by a 0.5 s sleeper.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_monid.triggers.monid import MonidRunTrigger


class _Probe:
    def __init__(self) -> None:
        self.started = 0
        self.events: dict[int, float] = {}
        self.lags: list[tuple[float, float]] = []  # (time, lag in seconds)
        self._task: asyncio.Task[None] | None = None

    def ensure(self) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._report(), context=contextvars.Context())

    async def _report(self) -> None:
        path = os.environ["BENCH_PROBE_FILE"]
        last_write = 0.0
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.5)
            now = time.monotonic()
            self.lags.append((time.time(), now - before - 0.5))
            if now - last_write >= 1.0:
                last_write = now
                snapshot = {"started": self.started, "events": dict(self.events), "lags": self.lags[-600:]}
                await asyncio.to_thread(_write, path, json.dumps(snapshot))


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


PROBE = _Probe()


def _map_index(trigger: BaseTrigger) -> int:
    ti = getattr(trigger, "task_instance", None)
    return int(getattr(ti, "map_index", -1) if ti is not None else -1)


class BenchMonidTrigger(MonidRunTrigger):
    async def run(self) -> AsyncIterator[TriggerEvent]:
        index = _map_index(self)
        self.run_id = f"bench-{index}"
        PROBE.ensure()
        PROBE.started += 1
        async for event in super().run():
            PROBE.events[index] = time.time()
            yield event


class BenchSleepTrigger(BaseTrigger):
    def __init__(self, poll_interval: float, end_time: float, **_: Any) -> None:
        super().__init__()
        self.poll_interval = float(poll_interval)
        self.end_time = float(end_time)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"poll_interval": self.poll_interval, "end_time": self.end_time},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        PROBE.ensure()
        PROBE.started += 1
        while time.time() < self.end_time:
            await asyncio.sleep(self.poll_interval)
        yield TriggerEvent({"status": "timeout"})
