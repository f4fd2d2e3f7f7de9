"""The escape hatch: MonidHook.request / ExaHook.request (sync and async) through the request core."""

from __future__ import annotations

import asyncio

import pytest

from airflow_monid.exceptions import (
    ConfigError,
    PermanentAPIError,
    TransientAPIError,
    UnclearRequestError,
)
from airflow_monid.hooks.exa import ExaHook
from airflow_monid.hooks.monid import MonidHook
from airflow_monid.testing import Emulator
from tests._support import EXA_KEY, MONID_KEY

pytestmark = pytest.mark.usefixtures("connections")


def test_get_returns_the_json_and_is_retried(connections: Emulator) -> None:
    connections.add_fault("GET", "/v1/wallet/balance", action="respond", status=503, times=2)
    data = MonidHook().request("get", "/v1/wallet/balance")
    assert data["balance"]["currency"] == "USD"
    assert connections.count("GET", "/v1/wallet/balance") == 3


def test_a_non_get_is_treated_as_paid_and_never_resent(connections: Emulator) -> None:
    connections.add_fault("POST", "/v1/run", action="respond", status=500, times=3)
    body = {"provider": "pdl", "endpoint": "/person/enrich", "input": {"email": "x@y.example"}}
    with pytest.raises(UnclearRequestError, match="not sent again") as info:
        MonidHook().request("POST", "/v1/run", json=body)
    assert connections.count("POST", "/v1/run") == 1
    assert MONID_KEY not in str(info.value)


def test_idempotent_true_lets_a_non_get_be_retried(connections: Emulator) -> None:
    connections.add_fault("POST", "/v1/inspect", action="respond", status=503, times=2)
    data = MonidHook().request("POST", "/v1/inspect", json={"provider": "pdl", "endpoint": "/company/enrich"},
                               idempotent=True)  # fmt: skip
    assert data["price"]["type"] == "PER_CALL"
    assert connections.count("POST", "/v1/inspect") == 3


def test_errors_are_mapped_like_every_other_call(connections: Emulator) -> None:
    with pytest.raises(PermanentAPIError, match="HTTP 404") as info:
        MonidHook().request("GET", "/v1/runs/nope")
    assert info.value.request_id and MONID_KEY not in str(info.value)
    connections.add_fault("GET", "/v1/runs", action="respond", status=503, times=10)
    with pytest.raises(TransientAPIError):
        MonidHook().request("GET", "/v1/runs", params={"limit": 1, "cursor": None})


@pytest.mark.parametrize("path", ["https://evil.example/v1/runs", "//evil.example/x", "v1/runs", "/v1/ runs", ""])
def test_only_paths_under_the_base_url_are_accepted(connections: Emulator, path: str) -> None:
    with pytest.raises(ConfigError):
        MonidHook().request("GET", path)
    assert connections.count() == 0


def test_unknown_methods_are_refused(connections: Emulator) -> None:
    with pytest.raises(ConfigError, match="method must be one of"):
        MonidHook().request("TRACE", "/v1/runs")


def test_async_request_shares_the_call_description(connections: Emulator) -> None:
    hook = MonidHook()
    data = asyncio.run(hook.arequest("GET", "/v1/runs", params={"limit": 2}))
    assert data["items"] == [] and connections.requests("GET", "/v1/runs")[0].query == {"limit": "2"}
    connections.add_fault("POST", "/v1/run", action="respond", status=502, times=3)
    with pytest.raises(UnclearRequestError):
        asyncio.run(hook.arequest("POST", "/v1/run", json={"provider": "pdl"}))
    assert connections.count("POST", "/v1/run") == 1


def test_exa_hook_request_uses_the_exa_key_and_error_shape(connections: Emulator) -> None:
    connections.exa.add_monitor("mon_1", name="Funding")
    data = ExaHook().request("GET", "/monitors/mon_1")
    assert data["id"] == "mon_1"
    (req,) = connections.requests("GET", "/monitors/mon_1")
    assert "x-api-key" not in req.headers  # the log never keeps the key header...
    with pytest.raises(PermanentAPIError, match="Exa API GET /monitors/nope failed with HTTP 404") as info:
        ExaHook().request("GET", "/monitors/nope")
    assert EXA_KEY not in str(info.value)  # ...and no error shows it
    with pytest.raises(UnclearRequestError):  # POST /monitors/{id}/trigger bills: the 5xx is not retried
        connections.add_fault("POST", "/monitors/mon_1/trigger", action="respond", status=500, times=3)
        ExaHook().request("POST", "/monitors/mon_1/trigger")
    assert connections.count("POST", "/monitors/mon_1/trigger") == 1
