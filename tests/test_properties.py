"""Property tests (hypothesis): URL building and payload parsing.

* any text id becomes exactly one path segment that decodes back to the id, never a dot segment and
  never an unescaped ``/``, ``?`` or ``#`` (checked on our output, on httpx's URL, and through the emulator);
* any JSON value given to the parsers, the outcome table or the response policy either parses or raises
  our own error family (``ProviderError``), never ``AttributeError``/``KeyError``/``TypeError``/pydantic's
  ``ValidationError``.
"""

from __future__ import annotations

import json
import logging
import string
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_monid._http.policy import (
    ApiRequest,
    ApiResponse,
    ApiSettings,
    Attempt,
    RetryPolicy,
    build_path,
    encode_segment,
)
from airflow_monid._monid.outcome import apply_outcome, is_reusable, reason_of
from airflow_monid.exceptions import APIError, ConfigError, ProviderError, UnclearRequestError
from airflow_monid.hooks.monid import MONID_PROFILE, MonidHook, _monid_error_message, _submitted_run
from airflow_monid.models.monid import MonidRun, MonidRunPage, MonidRunStatus
from airflow_monid.testing.emulator import Emulator
from tests._support import MONID_KEY, monid_conn

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UNRESERVED = set(string.ascii_letters + string.digits + "-._~")

# ----- strategies ----------------------------------------------------------------------------------

# Every character, lone surrogates included (json.loads turns "\ud800" into one).
any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=40)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()  # NaN and infinities too: json.loads accepts them
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)
statuses = st.sampled_from([s.value for s in MonidRunStatus] + ["TIME_OUT", "completed", "", "PAUSED"])
http_statuses = st.integers(min_value=100, max_value=599)
provider_responses = json_values | st.fixed_dictionaries(
    {}, optional={"httpStatus": http_statuses | json_values, "error": json_values, "metadata": json_values}
)
run_ids = st.text(min_size=1, max_size=30) | json_values
run_like = st.fixed_dictionaries(
    {"runId": run_ids},
    optional={
        "status": statuses | json_values,
        "providerResponse": provider_responses,
        "output": json_values,
        "input": json_values,
        "reason": json_values,
        "error": json_values,
        "message": json_values,
        "provider": st.text(max_size=10) | json_values,
        "endpoint": st.text(max_size=10) | json_values,
        "createdAt": st.text(max_size=10) | json_values,
        "completedAt": json_values,
        "stoppable": st.booleans() | json_values,
        "cost": json_values,
        "run_id": json_values,
        "status_text": json_values,
        "provider_response": json_values,
    },
)
# Runs whose typed fields are well formed, so parsing succeeds and the outcome table gets exercised.
plausible_runs = st.fixed_dictionaries(
    {
        "runId": st.text(min_size=1, max_size=20),
        "status": statuses | statuses | json_values,
        "providerResponse": st.none()
        | st.fixed_dictionaries({}, optional={"httpStatus": http_statuses | json_values, "error": json_values}),
    },
    optional={
        "output": json_values,
        "reason": json_values,
        "error": json_values,
        "message": json_values,
        "provider": st.none() | st.text(max_size=10),
        "endpoint": st.none() | st.text(max_size=10),
        "stoppable": st.none() | st.booleans(),
        "billing": json_values,
    },
)
payloads = json_values | run_like | plausible_runs
pages = json_values | st.fixed_dictionaries(
    {},
    optional={
        "items": st.lists(plausible_runs, max_size=3) | st.lists(run_like | json_values, max_size=3) | json_values,
        "cursor": st.text(max_size=5) | json_values,
    },
)


@pytest.fixture(scope="module", autouse=True)
def _quiet_warnings() -> Iterator[None]:
    """Unknown statuses and missing provider statuses warn; thousands of examples need not print them."""
    loggers = [logging.getLogger(name) for name in ("airflow_monid.models", "airflow_monid.outcome")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    yield
    for lg, level in zip(loggers, levels, strict=True):
        lg.setLevel(level)


# ----- URL building --------------------------------------------------------------------------------


def _valid_id(value: str) -> bool:
    if not value.strip():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@SETTINGS
@given(any_text)
def test_any_id_is_one_segment_that_decodes_back(value: str) -> None:
    if not _valid_id(value):
        with pytest.raises(ConfigError):
            encode_segment(value, "run_id")
        return
    segment = encode_segment(value, "run_id")
    assert unquote(segment, errors="strict") == value
    assert not {"/", "?", "#"} & set(segment)
    assert segment not in (".", "..")
    assert set(segment) <= UNRESERVED | set("%ABCDEF")
    path = build_path("/v1/runs/{}/stop", (value, "run_id"))
    assert path.split("/") == ["", "v1", "runs", segment, "stop"]
    url = httpx.URL("http://127.0.0.1:1" + path)
    assert url.raw_path.decode() == path  # httpx neither decodes nor normalises it
    assert url.query == b"" and url.fragment == ""


@SETTINGS
@given(st.sampled_from([".", ".."]), st.sampled_from(["/v1/runs/{}", "/v1/runs/{}/stop"]))
def test_dot_ids_never_become_dot_segments(value: str, template: str) -> None:
    path = build_path(template, (value, "run_id"))
    assert all(part not in (".", "..") for part in path.split("/"))
    assert httpx.URL("http://h" + path).raw_path.decode() == path


@pytest.fixture(scope="module")
def live_hook(emulator_server: Emulator) -> Iterator[tuple[Emulator, MonidHook]]:
    conn_id = f"monid_props_{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", monid_conn(emulator_server.url, max_attempts=1))
        emulator_server.reset()
        yield emulator_server, MonidHook(conn_id)
        emulator_server.reset()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=24).filter(str.strip))
def test_any_id_round_trips_through_the_emulator(live_hook: tuple[Emulator, MonidHook], value: str) -> None:
    emu, hook = live_hook
    emu.monid.add_run(run_id=value)
    before = len(emu.requests())
    assert hook.get_run(value).run_id == value
    (record,) = emu.requests()[before:]
    assert record.path == "/v1/runs/" + encode_segment(value) and record.query == {}


# ----- payload parsing -----------------------------------------------------------------------------


@SETTINGS
@given(payloads, st.lists(http_statuses, max_size=3))
def test_run_parsing_and_outcome_only_raise_our_errors(data: Any, allowed: list[int]) -> None:
    try:
        run = MonidRun.from_api(data)
    except ProviderError:
        return
    assert isinstance(data, dict) and run.run_id == data["runId"] and run.raw is data
    status = run.status
    assert isinstance(status, MonidRunStatus)
    assert isinstance(reason_of(run), str) and reason_of(run)
    assert isinstance(is_reusable(run), bool)
    assert "output" not in run.summary()
    try:
        result = apply_outcome(run, allowed)
    except ProviderError:
        return
    assert status is MonidRunStatus.COMPLETED  # only a completed run has an outcome to return
    assert result is run.output or result is None


@SETTINGS
@given(http_statuses, payloads)
def test_a_submit_answer_is_a_run_or_an_unclear_submit(status: int, data: Any) -> None:
    try:
        run = _submitted_run(ApiResponse(status, data, "req_1", {}))
    except UnclearRequestError as exc:
        assert "a run may exist" in str(exc) and "req_1" in str(exc)
        return
    assert isinstance(data, dict) and run.run_id == data["runId"]


@SETTINGS
@given(pages)
def test_page_parsing_only_raises_our_errors(data: Any) -> None:
    try:
        page = MonidRunPage.from_api(data)
    except ProviderError:
        return
    assert all(isinstance(run, MonidRun) for run in page.items)
    assert page.cursor is None or (isinstance(page.cursor, str) and page.cursor)


@SETTINGS
@given(json_values)
def test_error_message_extraction_never_fails(data: Any) -> None:
    message, code = _monid_error_message(data)
    assert message is None or isinstance(message, str)
    assert code is None or isinstance(code, str)


CORE_SETTINGS = ApiSettings(profile=MONID_PROFILE, base_url="http://127.0.0.1:1", api_key=MONID_KEY)


@SETTINGS
@given(
    http_statuses,
    json_values | st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
    st.booleans(),
    st.sampled_from(["", "5", "Wed, 21 Oct 2015 07:28:00 GMT", "soon"]),
)
def test_response_policy_returns_or_raises_our_errors(status: int, body: Any, paid: bool, retry_after: str) -> None:
    content = body if isinstance(body, str) and not paid else json.dumps(body)
    response = httpx.Response(
        status,
        content=content.encode("utf-8", "surrogatepass"),
        headers={"x-request-id": "req_1", "retry-after": retry_after},
        request=httpx.Request("POST", "http://127.0.0.1:1/v1/run"),
    )
    request = ApiRequest("POST", "/v1/run", paid=paid, run_body_ok=paid)
    attempt = Attempt(CORE_SETTINGS, request)
    attempt.policy = RetryPolicy(max_attempts=2)
    attempt.begin()
    try:
        outcome = attempt.on_response(response)
    except ProviderError as exc:
        assert MONID_KEY not in str(exc)
        if isinstance(exc, APIError):
            assert exc.status_code == status
        if paid and (status >= 500 or status == 408 or 200 <= status < 300):
            assert isinstance(exc, UnclearRequestError)  # the run may exist: never retried, never "failed"
        return
    if isinstance(outcome, float):
        assert outcome >= 0 and (status in (408, 429) or status >= 500)
        assert not paid or status == 429
    else:
        assert outcome.status_code == status
