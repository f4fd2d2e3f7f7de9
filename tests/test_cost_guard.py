"""The pre-pay checks: price policy, input schemas, the inspect cache, and MonidRunOperator wiring."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from airflow_monid._monid import preflight as _preflight
from airflow_monid._monid.cost_guard import Price, actual_cost, check_price, results_cap
from airflow_monid._monid.input_schema import check, plan, published_schemas
from airflow_monid._monid.preflight import before_paying, inspect_cached, require_options, with_cost
from airflow_monid.exceptions import ConfigError, CostLimitError, InputSchemaError, PermanentError
from airflow_monid.hooks.monid import MonidHook
from airflow_monid.operators.monid import MonidRunOperator
from airflow_monid.testing import Emulator
from airflow_monid.testing._monid_catalog import TWEETS_SCHEMA
from tests.test_ledger import FakeStore, FakeTI

log = logging.getLogger("test")
REAL_SHARED_GET = _preflight._shared_get  # the fixture below replaces it in every test
TWEETS = ("apify", "/apidojo/tweet-scraper")
COMPANY = ("pdl", "/company/enrich")


@pytest.fixture(autouse=True)
def no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    _preflight.clear_inspect_cache()
    # No task context here: the shared Variable is off unless a test installs its own.
    monkeypatch.setattr(_preflight, "_shared_get", lambda *a: None)
    monkeypatch.setattr(_preflight, "_shared_set", lambda *a: None)


# ----- price policy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "PER_CALL", "amount": 0.003, "currency": "USD"},
        {"type": "per_call", "amount": {"value": 0.003, "currency": "usd"}},
    ],
)
def test_both_price_shapes_parse_the_same(raw: dict) -> None:
    price = Price.parse(raw)
    assert (price.type, price.amount, price.currency) == ("PER_CALL", 0.003, "USD")


def test_per_call_price_against_max_cost() -> None:
    price = Price.parse({"type": "PER_CALL", "amount": 0.01, "currency": "USD"})
    assert check_price(price, max_cost=0.01, currency="USD", cap=None, where="w") == 0.01
    with pytest.raises(CostLimitError, match=r"price PER_CALL 0\.01 USD is above max_cost=0\.005 USD"):
        check_price(price, max_cost=0.005, currency="USD", cap=None, where="w")
    with pytest.raises(CostLimitError, match="not in EUR"):
        check_price(price, max_cost=1, currency="EUR", cap=None, where="w")


def test_a_price_without_a_currency_is_taken_as_usd() -> None:
    """Monid bills in dollars: a bare price passes a USD guard and never one set in another currency."""
    price = Price.parse({"type": "PER_CALL", "amount": 0.003})
    assert price.currency == "USD" and "no currency given: USD" in price.describe()
    assert check_price(price, max_cost=0.01, currency="USD", cap=None, where="w") == 0.003
    with pytest.raises(CostLimitError, match="not in EUR"):
        check_price(price, max_cost=1, currency="EUR", cap=None, where="w")


def test_per_result_price_needs_a_cap() -> None:
    price = Price.parse({"type": "PER_RESULT", "amount": {"value": 0.0004, "currency": "USD"}})
    with pytest.raises(CostLimitError, match=r"max_results=N, or max_results_field="):
        check_price(price, max_cost=1, currency="USD", cap=None, where="w")
    assert check_price(price, max_cost=0.01, currency="USD", cap=10, where="w") == pytest.approx(0.004)
    with pytest.raises(CostLimitError, match=r"x 100 results .* = 0\.04 USD is above max_cost=0\.01"):
        check_price(price, max_cost=0.01, currency="USD", cap=100, where="w")


@pytest.mark.parametrize("raw", [{"type": "METERED", "amount": 0.1}, {"type": "PER_CALL"}, None, {"amount": "x"}])
def test_prices_that_cannot_be_bounded_fail(raw: Any) -> None:
    with pytest.raises(CostLimitError):
        check_price(Price.parse(raw), max_cost=100, currency="USD", cap=5, where="w")


def test_results_cap_from_flat_and_composite_inputs() -> None:
    assert results_cap({"maxItems": 7}, None, "maxItems") == 7
    assert results_cap({"body": {"maxItems": 3}, "queryParams": {}}, None, "maxItems") == 3
    assert results_cap({"maxItems": 7}, 2, "maxItems") == 2  # max_results wins
    assert results_cap({}, None, None) is None
    with pytest.raises(CostLimitError, match="'maxItems' is not in the input"):
        results_cap({"searchTerms": ["x"]}, None, "maxItems")
    with pytest.raises(ConfigError, match="not a whole number"):
        results_cap({"maxItems": "10"}, None, "maxItems")


def test_actual_cost_normalises_micro_dollars_and_dollars() -> None:
    micro = {"billing": {"reportedCost": {"value": 3000, "unit": "MICRO_DOLLAR", "currency": "USD"}}}
    assert actual_cost(micro) == {"value": 0.003, "currency": "USD", "source": "billing.reportedCost"}
    cents = {"billing": {"reportedCost": {"value": 25, "unit": "CENT", "currency": "USD"}}, "cost": {"value": 9}}
    assert actual_cost(cents)["value"] == 0.25
    assert actual_cost({"cost": {"value": 0.0012, "currency": "USD"}})["source"] == "cost"
    assert actual_cost({"cost": None}) is None


def test_cost_above_max_cost_after_the_fact_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="test"):
        summary = with_cost({"runId": "r1", "cost": {"value": 0.02, "currency": "USD"}}, 0.01, "USD", log)
    assert summary["actual_cost"]["value"] == 0.02
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "above max_cost=0.01" in warnings[0].getMessage()


def test_options_are_checked_when_the_task_is_built() -> None:
    assert require_options(1, "usd", None, "maxItems", "warn") == (1.0, "USD", None, "maxItems", "warn")
    bad_rows = [
        (-1, "USD", None, None, False),
        (True, "USD", None, None, False),
        (1, "", None, None, False),
        (None, "USD", -2, None, False),
        (None, "USD", None, " ", False),
        (None, "USD", None, None, "yes"),
    ]
    for bad in bad_rows:
        with pytest.raises(ConfigError):
            require_options(*bad)


# ----- input schemas ------------------------------------------------------------------------------


def test_schemas_from_the_composite_and_the_flat_shapes() -> None:
    assert published_schemas({"input": {"body": {"type": "object"}, "bodyType": "json"}}) == {
        "body": {"type": "object"}
    }
    assert published_schemas({"inputSchema": {"type": "object"}}) == {"": {"type": "object"}}
    assert published_schemas({"input": {}}) == {}


def test_a_composite_input_against_an_older_flat_schema_is_checked_by_its_fields() -> None:
    """An older backend publishes ``inputSchema`` flat; the composite parts together are the parameters."""
    inspected = {"inputSchema": TWEETS_SCHEMA}
    assert check({"body": {"searchTerms": ["airflow"], "maxItems": 4}}, inspected) == ([], [])
    problems, _ = check({"body": {"maxItems": "ten"}, "queryParams": {}}, inspected)
    assert problems == ["searchTerms: required, missing", "maxItems: 'ten' is not of type 'integer'"]
    problems, notes = check({"body": ["not", "an", "object"]}, inspected)
    assert problems == [] and "cannot be matched" in notes[0]
    # a flat schema that itself has a "body" parameter: the input is that flat object
    literal = {"type": "object", "properties": {"body": {"type": "string"}}, "required": ["body"]}
    assert check({"body": 3}, {"inputSchema": literal})[0] == ["body: 3 is not of type 'string'"]


def test_each_failing_field_is_named() -> None:
    inspected = {"input": {"body": TWEETS_SCHEMA}}
    problems, _ = check({"searchTerms": "x", "maxItems": 0, "sort": "Oldest"}, inspected)
    assert problems == [
        "maxItems: 0 is less than the minimum of 1",
        "searchTerms: 'x' is not of type 'array'",
        "sort: 'Oldest' is not one of ['Latest', 'Top']",
    ]
    problems, _ = check({"body": {"maxItems": 2}}, inspected)  # composite input: checked per part
    assert problems == ["body.searchTerms: required, missing"]
    assert check({"searchTerms": ["ok"], "maxItems": 2}, inspected) == ([], [])


def test_a_flat_input_against_several_parts_is_checked_against_their_merged_properties() -> None:
    inspected = {
        "input": {
            "pathParams": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
            "queryParams": {"type": "object", "properties": {"limit": {"type": "integer"}}},
        }
    }
    ((label, schema, _),) = plan({"id": "x"}, published_schemas(inspected))
    assert label == "" and set(schema["properties"]) == {"id", "limit"} and schema["required"] == ["id"]
    assert check({"limit": "many"}, inspected)[0] == ["id: required, missing", "limit: 'many' is not of type 'integer'"]


def test_the_schemas_draft_is_used_and_a_broken_schema_is_not_held_against_the_input() -> None:
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
              "properties": {"n": {"type": "number", "minimum": 5, "exclusiveMinimum": True}}}  # fmt: skip
    assert check({"n": 5}, {"inputSchema": draft4})[0] == ["n: 5 is less than or equal to the minimum of 5"]
    problems, notes = check({"n": 1}, {"inputSchema": {"type": "no-such-type"}})
    assert problems == [] and "not valid JSON Schema" in notes[0]
    assert check({"n": 1}, {})[1] == ["the endpoint publishes no input schema; nothing was checked"]


# ----- inspect cache and the operator -----------------------------------------------------------


def test_inspect_is_cached_per_process_for_the_ttl(connections: Emulator) -> None:
    hook = MonidHook()
    now = [1000.0]
    first = inspect_cached(hook, *TWEETS, clock=lambda: now[0])
    now[0] += _preflight.INSPECT_TTL - 1
    assert inspect_cached(MonidHook(), *TWEETS, clock=lambda: now[0]) == first
    assert connections.count("POST", "/v1/inspect") == 1
    now[0] += 2  # older than the TTL: asked again
    inspect_cached(hook, *TWEETS, clock=lambda: now[0])
    assert connections.count("POST", "/v1/inspect") == 2


def test_the_shared_variable_serves_other_processes(connections: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    shared: dict[str, Any] = {}
    monkeypatch.setattr(_preflight, "_shared_get", lambda key, url, now: _preflight_get(shared, key, url, now))
    monkeypatch.setattr(_preflight, "_shared_set", lambda key, url, now, data: shared.update({key: (url, now, data)}))
    inspect_cached(MonidHook(), *TWEETS)
    _preflight.clear_inspect_cache()  # "another process"
    assert inspect_cached(MonidHook(), *TWEETS)["price"]["type"] == "PER_RESULT"
    assert connections.count("POST", "/v1/inspect") == 1
    (key,) = shared
    assert key.startswith(_preflight.VARIABLE_PREFIX) and shared[key][0] == connections.url


def _preflight_get(shared: dict, key: str, url: str, now: float) -> Any:
    hit = shared.get(key)
    return hit[2] if hit and hit[0] == url and now - hit[1] < _preflight.INSPECT_TTL else None


def test_variable_values_that_are_stale_or_for_another_url_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.common.compat import sdk

    class FakeVariable:
        value: Any = None

        @classmethod
        def get(cls, key: str, default: Any = None, deserialize_json: bool = False) -> Any:
            return cls.value

    monkeypatch.setattr(sdk, "Variable", FakeVariable, raising=False)
    real = REAL_SHARED_GET
    FakeVariable.value = {"base_url": "http://a", "fetched_at": 100.0, "data": {"price": {}}}
    assert real("k", "http://a", 150.0) == {"price": {}}
    assert real("k", "http://b", 150.0) is None
    assert real("k", "http://a", 100.0 + _preflight.INSPECT_TTL + 1) is None
    FakeVariable.value = "garbage"
    assert real("k", "http://a", 150.0) is None


def _operator(**kwargs: Any) -> MonidRunOperator:
    return MonidRunOperator(task_id="t", provider=COMPANY[0], endpoint=COMPANY[1], retries=1, **kwargs)


def test_operator_refuses_a_price_above_max_cost_and_posts_nothing(connections: Emulator) -> None:
    op = _operator(input={"website": "a.example"}, max_cost=0.005)
    with pytest.raises(CostLimitError) as info:
        op.execute({"ti": FakeTI(1), "task_state_store": FakeStore()})
    assert isinstance(info.value, PermanentError)
    assert "PER_CALL 0.01 USD" in str(info.value) and "max_cost=0.005" in str(info.value)
    assert connections.count("POST", "/v1/run") == 0 and connections.count("POST", "/v1/inspect") == 1


def test_operator_checks_price_and_input_with_one_inspect_then_pays(connections: Emulator) -> None:
    op = MonidRunOperator(task_id="t", provider="pdl", endpoint="/person/enrich", input={"email": "a@b.example"},
                          max_cost=0.01, validate_input=True)  # fmt: skip
    ti = FakeTI(1)
    op.execute({"ti": ti, "task_state_store": FakeStore()})
    assert connections.count("POST", "/v1/inspect") == 1 and connections.count("POST", "/v1/run") == 1
    assert ti.pushed["run"]["actual_cost"] == {"value": 0.003, "currency": "USD", "source": "billing.reportedCost"}


def test_operator_names_the_failing_fields_and_posts_nothing(connections: Emulator) -> None:
    op = MonidRunOperator(task_id="t", provider=TWEETS[0], endpoint=TWEETS[1], input={"maxItems": "ten"},
                          validate_input=True)  # fmt: skip
    with pytest.raises(InputSchemaError) as info:
        op.execute({"ti": FakeTI(1), "task_state_store": FakeStore()})
    assert "searchTerms: required, missing; maxItems: 'ten' is not of type 'integer'" in str(info.value)
    assert connections.count("POST", "/v1/run") == 0


def test_a_reused_run_is_not_checked_again(connections: Emulator) -> None:
    """The checks guard a payment: a retry that reuses its run makes no inspect call (and no POST)."""
    store = FakeStore()
    op = _operator(input={"website": "a.example"}, max_cost=0.02, validate_input=True)
    op.execute({"ti": FakeTI(1), "task_state_store": store})
    _preflight.clear_inspect_cache()
    store.values["monid_run"]["delivered"] = False  # the worker died before Airflow saw the success
    connections.monid.set_endpoint(*COMPANY, price={"type": "PER_CALL", "amount": 5, "currency": "USD"})
    _operator(input={"website": "a.example"}, max_cost=0.02).execute({"ti": FakeTI(2), "task_state_store": store})
    assert connections.count("POST", "/v1/inspect") == 1 and connections.count("POST", "/v1/run") == 1


def test_validate_warn_pays_and_logs(connections: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    op = MonidRunOperator(task_id="t", provider=TWEETS[0], endpoint=TWEETS[1], input={"searchTerms": 3},
                          validate_input="warn", wait_for_completion=False)  # fmt: skip
    op.execute({"ti": FakeTI(1), "task_state_store": FakeStore()})
    assert connections.count("POST", "/v1/run") == 1
    assert "searchTerms: 3 is not of type 'array'. (validate_input='warn': paying anyway)" in capsys.readouterr().out


def test_before_paying_does_nothing_without_checks(connections: Emulator) -> None:
    kwargs = dict(max_cost=None, currency="USD", max_results=None, max_results_field=None, share_inspect=False)
    assert before_paying(MonidHook(), *TWEETS, {}, validate_input=False, log=log, **kwargs) is None
    assert connections.count() == 0


def test_a_flat_input_against_several_non_plain_parts_is_not_judged() -> None:
    inspected = {
        "input": {
            "pathParams": {"type": "object", "properties": {"id": {"type": "string"}}, "additionalProperties": False},
            "queryParams": {"anyOf": [{"required": ["q"]}, {"required": ["url"]}]},
        }
    }
    problems, notes = check({"id": "x", "q": "y"}, inspected)
    assert problems == [] and "send the composite" in notes[0]
    assert check({"pathParams": {"id": 3}, "queryParams": {}}, inspected)[0] == [
        "queryParams: needs one of: q, url",
        "pathParams.id: 3 is not of type 'string'",
    ]
