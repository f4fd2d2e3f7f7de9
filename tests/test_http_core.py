"""The request core: URL building, base URL and connection settings, headers, Retry-After, client pool.

Everything that sends a request does so over real HTTP to the emulator on 127.0.0.1.
"""

from __future__ import annotations

import email.utils
import json
import uuid
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest

from airflow_monid import __version__
from airflow_monid._http import policy as _request_policy
from airflow_monid._http import transport as _transport
from airflow_monid._http.connection import USER_AGENT, base_url_from, read_extra
from airflow_monid._http.policy import (
    ApiRequest,
    RetryPolicy,
    build_path,
    encode_segment,
    parse_retry_after,
)
from airflow_monid.exceptions import ConfigError
from airflow_monid.hooks.monid import MonidHook
from airflow_monid.testing.emulator import Emulator
from tests._support import MONID_KEY, monid_conn

# ----- helpers -------------------------------------------------------------------------------------


def _conn_id() -> str:
    return f"monid_core_{uuid.uuid4().hex[:10]}"


def hook_for(monkeypatch: pytest.MonkeyPatch, url: str, key: str = MONID_KEY, **extras: Any) -> MonidHook:
    """A hook on a fresh connection (JSON env var) with the fast test extras plus ``extras``."""
    conn_id = _conn_id()
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", monid_conn(url, key, **extras))
    return MonidHook(conn_id)


def hook_from_json(monkeypatch: pytest.MonkeyPatch, **conn: Any) -> MonidHook:
    """A hook on a connection given field by field (no default extras)."""
    conn_id = _conn_id()
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "monid", **conn}))
    return MonidHook(conn_id)


def hook_from_uri(monkeypatch: pytest.MonkeyPatch, uri: str) -> MonidHook:
    conn_id = _conn_id()
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", uri)
    return MonidHook(conn_id)


def expected_segment(run_id: str) -> str:
    encoded = quote(run_id, safe="")
    return {".": "%2E", "..": "%2E%2E"}.get(encoded, encoded)


# ----- URL building --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("01JGZK8Q2M4V6X8Z0B2D4F6H8K", "01JGZK8Q2M4V6X8Z0B2D4F6H8K"),
        (".", "%2E"),
        ("..", "%2E%2E"),
        ("...", "..."),  # not a dot segment: left alone
        ("a/b", "a%2Fb"),
        ("../../wallet/balance", "..%2F..%2Fwallet%2Fbalance"),
        ("x?y=1", "x%3Fy%3D1"),
        ("x#frag", "x%23frag"),
        ("with space", "with%20space"),
        ("%2F", "%252F"),  # an id that looks encoded is encoded again, never decoded
        ("é/日本", "%C3%A9%2F%E6%97%A5%E6%9C%AC"),
        ("a+b&c;d", "a%2Bb%26c%3Bd"),
    ],
)
def test_encode_segment_encodes_everything_but_unreserved(value: str, encoded: str) -> None:
    assert encode_segment(value) == encoded
    assert build_path("/v1/runs/{}/stop", (value, "run_id")) == f"/v1/runs/{encoded}/stop"


@pytest.mark.parametrize("bad", ["", "   ", "\t\n", None, 123, b"abc", ["a"]])
def test_encode_segment_rejects_empty_or_non_text(bad: Any) -> None:
    with pytest.raises(ConfigError, match="run_id must be a non-empty string"):
        encode_segment(bad, "run_id")


def test_encode_segment_rejects_lone_surrogate_in_our_error_family() -> None:
    with pytest.raises(ConfigError, match="not valid Unicode"):
        encode_segment("abc\ud800", "run_id")


@pytest.mark.parametrize("bad", ["", "  ", None])
def test_empty_id_raises_before_any_request(connections: Emulator, bad: Any) -> None:
    hook = MonidHook()
    with pytest.raises(ConfigError):
        hook.get_run(bad)
    with pytest.raises(ConfigError):
        hook.stop_run(bad)
    assert connections.requests() == []


ODD_IDS = [
    "a/b",
    ".",
    "..",
    "a/../b",
    "../../wallet/balance",
    "x?limit=1",
    "x#frag",
    "with space",
    "ünïcødé/日本語",
    "%2F",
    "a%20b",
    "trailing/",
]


@pytest.mark.parametrize("run_id", ODD_IDS)
def test_odd_run_ids_reach_the_api_as_one_segment(connections: Emulator, run_id: str) -> None:
    emu = connections
    emu.monid.add_run(run_id=run_id, status="RUNNING")
    hook = MonidHook()

    run = hook.get_run(run_id)
    stop = hook.stop_run(run_id)

    assert run.run_id == run_id
    assert stop is not None and stop["status"] == "STOPPING"
    get, post = emu.requests()
    segment = expected_segment(run_id)
    assert (get.method, get.path, get.query) == ("GET", f"/v1/runs/{segment}", {})
    assert (post.method, post.path, post.query) == ("POST", f"/v1/runs/{segment}/stop", {})
    for record in (get, post):
        parts = record.path.split("/")
        assert parts[:3] == ["", "v1", "runs"]
        assert unquote(parts[3]) == run_id
    assert len(get.path.split("/")) == 4
    assert emu.monid.get_run(run_id)["status"] == "STOPPING"


def test_httpx_keeps_encoded_dot_segments_as_sent() -> None:
    # The encoding only protects the path if the client does not normalise it afterwards.
    for run_id in (".", "..", "a/../b"):
        path = build_path("/v1/runs/{}", (run_id, "run_id"))
        assert httpx.Request("GET", "http://127.0.0.1:1" + path).url.raw_path.decode() == path


# ----- base URL ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "schema", "port", "expected"),
    [
        (None, None, None, "https://default.example"),
        ("", "http", 8080, "https://default.example"),
        ("http://127.0.0.1:8080", None, None, "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", None, None, "http://127.0.0.1:8080"),
        ("https://api.monid.ai", None, None, "https://api.monid.ai"),
        ("https://proxy.example/monid/", None, None, "https://proxy.example/monid"),
        # bare host: what URI env vars and `airflow connections add --conn-host --conn-port` produce
        ("api.example.com", None, None, "https://api.example.com"),
        ("api.example.com", "", 8443, "https://api.example.com:8443"),
        ("127.0.0.1", "http", 8080, "http://127.0.0.1:8080"),
        ("127.0.0.1", "HTTP", 8080, "http://127.0.0.1:8080"),
        ("api.example.com", "v1", None, "https://api.example.com"),  # a schema that is no scheme
        ("api.example.com/base", "https", 8443, "https://api.example.com:8443/base"),
        ("[::1]", "http", 8080, "http://[::1]:8080"),
        ("127.0.0.1:9000", "http", 8080, "http://127.0.0.1:9000"),  # the host's own port wins
        # a full URL in the host field still takes the port field when it has no port of its own
        ("http://127.0.0.1", None, 8080, "http://127.0.0.1:8080"),
        ("http://127.0.0.1:9000", None, 8080, "http://127.0.0.1:9000"),
    ],
)
def test_base_url_from_connection_fields(host: str | None, schema: str | None, port: int | None, expected: str) -> None:
    assert base_url_from(host, schema, port, "https://default.example", "c") == expected


@pytest.mark.parametrize(
    "host",
    [
        "http://",
        "ftp://files.example",
        "http://host:notaport",
        "host:99999",
        "::1",
        "exa mple.com",
        "https://exa mple.com",
        "a..b",
        "https://[::1",
    ],
)
def test_unparseable_host_is_a_config_error(host: str) -> None:
    with pytest.raises(ConfigError, match="is not a valid base URL") as info:
        base_url_from(host, None, None, "https://default.example", "my_conn")
    assert "'my_conn'" in str(info.value)
    assert "https://api.example.com" in str(info.value)  # says what a valid value looks like


def test_unparseable_host_fails_before_any_request(connections: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = hook_from_json(monkeypatch, host="exa mple.com", password=MONID_KEY)
    with pytest.raises(ConfigError):
        hook.get_wallet_balance()
    ok, message = hook.test_connection()
    assert not ok and "not a valid base URL" in message
    assert connections.requests() == []


def test_uri_connection_with_bare_host_schema_and_port(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = hook_from_uri(monkeypatch, f"monid://:{MONID_KEY}@127.0.0.1:{emulator.port}/http?max_attempts=2")
    assert hook.settings.base_url == emulator.url
    assert hook.settings.retry.max_attempts == 2
    assert hook.get_wallet_balance()["balance"]["value"] == 25.0
    assert emulator.count("GET", "/v1/wallet/balance") == 1


def test_uri_connection_without_schema_defaults_to_https(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = hook_from_uri(monkeypatch, f"monid://:{MONID_KEY}@api.example.com:8443")
    assert hook.settings.base_url == "https://api.example.com:8443"


@pytest.mark.parametrize("host_style", ["bare", "url"])
def test_json_connection_with_separate_port_field(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, host_style: str
) -> None:
    host = "127.0.0.1" if host_style == "bare" else "http://127.0.0.1"
    hook = hook_from_json(monkeypatch, host=host, schema="http", port=emulator.port, password=MONID_KEY)
    assert hook.settings.base_url == emulator.url
    assert hook.get_wallet_balance()["balance"]["currency"] == "USD"
    assert emulator.count() == 1


def test_default_base_url_when_host_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = hook_from_json(monkeypatch, password=MONID_KEY)
    assert hook.settings.base_url == "https://api.monid.ai"
    assert hook.app_url() == "https://app.monid.ai"


@pytest.mark.parametrize("password", [None, "", "   "])
def test_missing_key_is_a_clear_config_error_and_sends_nothing(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch, password: str | None
) -> None:
    hook = hook_from_json(monkeypatch, host=connections.url, password=password)
    with pytest.raises(ConfigError) as info:
        hook.get_run("01JGZK8Q2M4V6X8Z0B2D4F6H8K")
    message = str(info.value)
    assert message.startswith(f"Connection {hook.conn_id!r} has no API key")
    assert "password field" in message and message.endswith(".")
    ok, text = hook.test_connection()
    assert ok is False and "has no API key" in text
    assert connections.requests() == []


def test_build_refuses_settings_without_a_key() -> None:
    settings = _request_policy.ApiSettings(profile=MonidHook.profile, base_url="http://x", api_key="")
    with pytest.raises(ConfigError, match="no API key"):
        _request_policy.build(settings, ApiRequest("GET", "/v1/wallet/balance"))


# ----- extras --------------------------------------------------------------------------------------


def test_extras_are_read_under_plain_and_prefixed_names(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {
        "extra__monid__timeout": 7,
        "extra__monid__connect_timeout": "3",
        "extra__monid__max_attempts": "2",
        "max_retry_seconds": 11,
        "extra__monid__retry_after_cap": 0,
        "backoff_base": 0.25,
        "extra__monid__backoff_max": 4,
        "extra__monid__app_url": "https://app.example/",
        "extra__monid__verify": "false",
        "extra__monid__max_connections": "7",
    }
    hook = hook_from_json(monkeypatch, host="http://127.0.0.1:1", password=MONID_KEY, extra=extra)
    settings = hook.settings
    assert settings.timeout.read == 7.0 and settings.timeout.connect == 3.0
    assert settings.retry == RetryPolicy(
        max_attempts=2, max_elapsed=11.0, retry_after_cap=0.0, backoff_base=0.25, backoff_max=4.0
    )
    assert settings.verify is False and settings.max_connections == 7
    assert hook.app_url() == "https://app.example"


def test_a_fractional_max_connections_still_lets_one_request_through(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = hook_from_json(monkeypatch, host="http://127.0.0.1:1", password=MONID_KEY, extra={"max_connections": 0.5})
    assert hook.settings.max_connections == 1  # a gate of 0 would wait forever


def test_plain_extra_name_wins_over_prefixed_and_empty_values_fall_through() -> None:
    extras = {"timeout": 5, "extra__monid__timeout": 9, "max_attempts": "", "extra__monid__max_attempts": 3}
    assert read_extra(extras, "monid", "timeout") == 5
    assert read_extra(extras, "monid", "max_attempts") == 3
    assert read_extra(extras, "monid", "backoff_max") is None


def test_defaults_without_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = hook_from_json(monkeypatch, host="http://127.0.0.1:1", password=MONID_KEY)
    assert hook.settings.retry == RetryPolicy()
    assert hook.settings.timeout.read == 30.0 and hook.settings.timeout.connect == 10.0
    assert hook.settings.verify is True and hook.settings.max_connections == 20


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_attempts", 0),
        ("max_connections", 0),
        ("timeout", -1),
        ("timeout", "soon"),
        ("backoff_max", "nan"),
        ("max_retry_seconds", "inf"),
    ],
)
def test_bad_numeric_extra_is_a_config_error(monkeypatch: pytest.MonkeyPatch, name: str, value: Any) -> None:
    hook = hook_from_json(monkeypatch, host="http://127.0.0.1:1", password=MONID_KEY, extra={name: value})
    with pytest.raises(ConfigError, match=f"extra {name!r} must be a positive number"):
        _ = hook.settings


# ----- headers -------------------------------------------------------------------------------------


def test_requests_carry_bearer_key_user_agent_and_json_headers(connections: Emulator) -> None:
    emu = connections
    hook = MonidHook()
    hook.get_wallet_balance()  # the emulator checks `Authorization: Bearer <MONID_KEY>` (401 otherwise)
    hook.discover("company headcount")
    get, post = emu.requests()
    assert get.status == 200 and post.status == 200
    assert get.headers["user-agent"] == f"airflow-provider-monid/{__version__}" == USER_AGENT
    assert get.headers["accept"] == "application/json"
    assert "content-type" not in get.headers
    assert post.headers["content-type"] == "application/json"
    assert post.body == {"query": "company headcount", "limit": 5}
    built = _request_policy.build(hook.settings, ApiRequest("GET", "/v1/wallet/balance"))
    assert built["auth"].headers() == {"Authorization": f"Bearer {MONID_KEY}"}
    assert MONID_KEY not in repr(built)  # what a traceback's locals show of the sending frame
    assert built["url"] == f"{emu.url}/v1/wallet/balance"


def test_wrong_key_is_refused_by_the_api(connections: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # Proves the previous test's 200 depended on the Bearer header.
    hook = hook_for(monkeypatch, connections.url, key="mk_wrong")
    ok, message = hook.test_connection()
    assert ok is False and "HTTP 401" in message
    assert connections.requests()[0].status == 401


# ----- Retry-After and backoff ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cap", "expected"),
    [
        ("3", 60, 3.0),
        (" 2.5 ", 60, 2.5),
        ("120", 60, 60.0),
        ("-4", 60, 0.0),
        ("0", 60, 0.0),
        ("inf", 5, 5.0),
        ("nan", 5, None),
        ("soon", 60, None),
        ("", 60, None),
        (None, 60, None),
    ],
)
def test_parse_retry_after_seconds(value: str | None, cap: float, expected: float | None) -> None:
    assert parse_retry_after(value, cap) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_800_000_000.0
    in_ten = email.utils.formatdate(now + 10, usegmt=True)
    assert parse_retry_after(in_ten, 60, now=now) == 10.0
    assert parse_retry_after(in_ten, 4, now=now) == 4.0  # capped
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), 60, now=now) == 0.0


def test_backoff_is_full_jitter_within_bounds() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_max=4.0)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        for _ in range(50):
            assert ceiling / 2 <= policy.backoff(attempt) <= ceiling


# ----- secrets in reprs and the sync client pool ---------------------------------------------------


def test_settings_and_hook_reprs_never_show_the_key(connections: Emulator) -> None:
    hook = MonidHook()
    settings = hook.settings
    assert settings.key == MONID_KEY and MONID_KEY not in repr(vars(settings))
    for text in (repr(settings), str(settings), repr(hook), str(hook), repr(settings.retry), repr(vars(hook))):
        assert MONID_KEY not in text
    assert "monid_default" in repr(hook)


def test_exa_hook_keeps_no_key_in_its_attributes(connections: Emulator) -> None:
    """What debuggers and error reporters print: every attribute of a used hook, one level down too."""
    from airflow_monid.hooks.exa import ExaHook
    from tests._support import EXA_KEY

    hook = ExaHook()
    hook.list_monitors("search", limit=1)
    texts = [repr(vars(hook))] + [repr(vars(v)) for v in vars(hook).values() if hasattr(v, "__dict__")]
    assert hook.settings.key == EXA_KEY
    assert all(EXA_KEY not in text for text in texts)


def test_sync_client_is_pooled_per_base_url(connections: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = connections
    first, second = MonidHook(), hook_for(monkeypatch, emu.url)
    first.get_wallet_balance()
    size = _transport.pool_size()[0]
    second.get_wallet_balance()
    assert _transport.sync_client(first.settings) is _transport.sync_client(second.settings)
    assert _transport.pool_size()[0] == size
    other = hook_for(monkeypatch, f"{emu.url}/{uuid.uuid4().hex}")  # another base URL: another client
    assert _transport.sync_client(other.settings) is not _transport.sync_client(first.settings)
    assert _transport.pool_size()[0] == size + 1
