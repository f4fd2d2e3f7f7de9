"""The official ``exa-py`` SDK against the emulator: every monitor and run call it has that the emulator serves.

Served and called here (sync ``Exa`` and async ``AsyncExa``): search monitors ``list`` (status
filter, pagination), ``list_all``, ``get_all``, ``get``, ``trigger``; their runs ``list``
(pagination), ``list_all``, ``get_all``, ``get``; Websets monitors ``list`` (``webset_id``,
pagination), ``list_all``, ``get_all``, ``get``; their runs ``list`` and ``get``. Everything must
parse into the SDK's own models. Not served by the emulator, so not called: monitor create, update,
delete and batch (the provider only reads monitors and triggers runs).

Websets runs: the emulator pages them (``hasMore``/``nextCursor``, as the spec's response has),
but the SDK's ``runs.list`` takes no cursor or limit, so only the first page is checked here.
"""

from __future__ import annotations

import typing

import pytest

exa_py = pytest.importorskip("exa_py", reason="the official SDK is a test dependency: pip install -e '.[test]'")

from exa_py import AsyncExa, Exa  # noqa: E402
from exa_py.monitors.types import KnownSearchMonitorRunFailReason, SearchMonitor, SearchMonitorRun  # noqa: E402
from exa_py.websets.types import Monitor, MonitorRun  # noqa: E402

from airflow_monid._exa.outcome import PERMANENT_FAIL_REASONS, RETRYABLE_FAIL_REASONS  # noqa: E402
from airflow_monid.testing.emulator import Emulator  # noqa: E402
from tests._support import EXA_KEY  # noqa: E402


@pytest.fixture
def seeded(emulator: Emulator) -> Emulator:
    emu = emulator
    for i in range(3):
        emu.exa.add_monitor(f"mon_{i}", name=f"Monitor {i}", status="paused" if i == 2 else None)
    emu.exa.add_monitor("mon_nohook", webhook={"url": "https://hooks.example.com/custom"})
    for i, status in enumerate(["completed", "failed", "cancelled", "running", "pending"]):
        emu.exa.add_run("mon_0", run_id=f"run_{i}", status=status, created_at=f"2026-11-01T0{i}:00:00Z")
    emu.exa.add_monitor("wm_a", family="websets", webset_id="ws_a")
    emu.exa.add_monitor("wm_b", family="websets", webset_id="ws_b")
    for i, status in enumerate(["completed", "failed", "canceled", "running", "created"]):
        emu.exa.add_run("wm_a", run_id=f"wrun_{i}", status=status, created_at=f"2026-11-01T0{i}:00:00Z")
    return emu


def _client(emu: Emulator) -> Exa:
    return Exa(api_key=EXA_KEY, base_url=emu.url)


def test_search_monitors_parse(seeded: Emulator) -> None:
    exa = _client(seeded)
    page = exa.monitors.list(limit=2)
    assert all(isinstance(m, SearchMonitor) for m in page.data)
    assert len(page.data) == 2 and page.has_more and page.next_cursor
    rest = exa.monitors.list(limit=2, cursor=page.next_cursor)
    assert not rest.has_more and rest.next_cursor is None
    assert {m.id for m in page.data + rest.data} == {"mon_0", "mon_1", "mon_2", "mon_nohook"}
    assert [m.id for m in exa.monitors.list(status="paused").data] == ["mon_2"]
    assert len(list(exa.monitors.list_all(limit=1))) == 4
    assert len(exa.monitors.get_all(limit=3)) == 4

    monitor = exa.monitors.get("mon_0")
    assert monitor.id == "mon_0" and monitor.name == "Monitor 0" and monitor.status == "active"
    assert monitor.webhook.url.startswith("https://")  # an object, as the SDK requires
    assert exa.monitors.get("mon_nohook").webhook.url == "https://hooks.example.com/custom"
    assert exa.monitors.trigger("mon_1").triggered is True


def test_search_monitor_runs_parse(seeded: Emulator) -> None:
    exa = _client(seeded)
    page = exa.monitors.runs.list("mon_0", limit=2)
    assert [r.id for r in page.data] == ["run_4", "run_3"] and page.has_more  # newest first
    rest = exa.monitors.runs.list("mon_0", limit=10, cursor=page.next_cursor)
    assert [r.id for r in rest.data] == ["run_2", "run_1", "run_0"] and not rest.has_more
    runs = exa.monitors.runs.get_all("mon_0", limit=2)
    assert [r.status for r in runs] == ["pending", "running", "cancelled", "failed", "completed"]
    assert len(list(exa.monitors.runs.list_all("mon_0", limit=3))) == 5
    done = exa.monitors.runs.get("mon_0", "run_0")
    assert isinstance(done, SearchMonitorRun) and done.status == "completed"
    assert done.output is not None and done.output.results and done.output.grounding
    failed = exa.monitors.runs.get("mon_0", "run_1")
    assert failed.fail_reason == "internal_error" and failed.failed_at is not None and failed.output is None


def test_websets_monitors_and_runs_parse(seeded: Emulator) -> None:
    exa = _client(seeded)
    assert [m.id for m in exa.websets.monitors.list(webset_id="ws_a").data] == ["wm_a"]
    assert [m.id for m in exa.websets.monitors.list(webset_id="ws_b").data] == ["wm_b"]
    page = exa.websets.monitors.list(limit=1)
    assert len(page.data) == 1 and page.has_more
    assert {m.id for m in exa.websets.monitors.get_all(limit=1)} == {"wm_a", "wm_b"}
    assert [m.id for m in exa.websets.monitors.list_all(webset_id="ws_b")] == ["wm_b"]
    monitor = exa.websets.monitors.get("wm_a")
    assert isinstance(monitor, Monitor) and monitor.webset_id == "ws_a"
    assert monitor.last_run is not None and monitor.last_run.id == "wrun_4"

    runs = exa.websets.monitors.runs.list("wm_a")
    assert all(isinstance(r, MonitorRun) for r in runs.data)
    assert [str(getattr(r.status, "value", r.status)) for r in runs.data] == [
        "created",
        "running",
        "canceled",
        "failed",
        "completed",
    ]
    one = exa.websets.monitors.runs.get("wm_a", "wrun_1")
    assert one.id == "wrun_1" and one.failed_at is not None
    assert getattr(one, "failedReason", None) or getattr(one, "failed_reason", None)  # kept as an extra


async def test_async_client_parses_the_same(seeded: Emulator) -> None:
    exa = AsyncExa(api_key=EXA_KEY, api_base=seeded.url)
    try:
        page = await exa.monitors.list(limit=2)
        assert len(page.data) == 2 and page.has_more
        assert len(await exa.monitors.get_all(limit=1)) == 4
        assert len([m async for m in exa.monitors.list_all(limit=3)]) == 4
        assert (await exa.monitors.get("mon_1")).webhook.url
        assert (await exa.monitors.trigger("mon_1")).triggered is True
        runs = await exa.monitors.runs.list("mon_0", limit=3)
        assert len(runs.data) == 3 and runs.has_more
        assert len(await exa.monitors.runs.get_all("mon_0", limit=2)) == 5
        assert len([r async for r in exa.monitors.runs.list_all("mon_0")]) == 5
        assert (await exa.monitors.runs.get("mon_0", "run_0")).output is not None
        assert [m.id for m in (await exa.websets.monitors.list(webset_id="ws_b")).data] == ["wm_b"]
        assert len(await exa.websets.monitors.get_all(limit=1)) == 2
        assert len([m async for m in exa.websets.monitors.list_all()]) == 2
        assert (await exa.websets.monitors.get("wm_b")).webset_id == "ws_b"
        assert len((await exa.websets.monitors.runs.list("wm_a")).data) == 5
        assert (await exa.websets.monitors.runs.get("wm_a", "wrun_0")).id == "wrun_0"
    finally:
        await exa.aclose()


def test_a_null_webhook_is_what_the_sdk_rejects(emulator: Emulator) -> None:
    # The emulator can still reproduce the shape that broke the SDK, for tests of other clients.
    emulator.exa.add_monitor("mon_null", webhook=None)
    with pytest.raises(Exception, match="webhook"):
        _client(emulator).monitors.get("mon_null")


def test_every_fail_reason_the_sdk_knows_is_classified() -> None:
    known = set(typing.get_args(KnownSearchMonitorRunFailReason))
    assert {"source_not_available", "forbidden"} <= known
    assert not RETRYABLE_FAIL_REASONS & PERMANENT_FAIL_REASONS
    assert known == RETRYABLE_FAIL_REASONS | PERMANENT_FAIL_REASONS, known ^ (
        RETRYABLE_FAIL_REASONS | PERMANENT_FAIL_REASONS
    )
