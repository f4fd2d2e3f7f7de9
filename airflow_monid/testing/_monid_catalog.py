"""Monid endpoint catalog: per-endpoint scripts and the sample provider outputs the emulator returns."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow_monid.testing._common import DEFAULT, iso

TERMINAL = frozenset({"COMPLETED", "FAILED", "STOPPED", "BLOCKED", "TIMED_OUT", "TIME_OUT"})
COMPOSITE_KEYS = frozenset({"body", "queryParams", "pathParams"})
CALLER = "USER#user_emulator"

Outcome = tuple[int, Any, Any]  # provider http status, output, provider error body


def ok_status(status: int) -> bool:
    return 200 <= status < 300


def _params(run_input: Any) -> dict[str, Any]:
    """Endpoint parameters from either input shape (flat docs shape or composite spec shape)."""
    if not isinstance(run_input, dict):
        return {}
    body = run_input.get("body")
    if isinstance(body, dict) and set(run_input) <= COMPOSITE_KEYS:
        return body
    return run_input


def _tweets(run_input: Any) -> Outcome:
    terms = _params(run_input).get("searchTerms") or ["AI"]
    if not isinstance(terms, list):
        terms = [str(terms)]
    now = time.time()
    tweets = [
        {
            "id": f"17{i:017d}",
            "text": f"Emulated tweet {i + 1} about {terms[i % len(terms)]}",
            "author": f"@emulated_user{i + 1}",
            "searchTerm": terms[i % len(terms)],
            "url": f"https://x.com/emulated_user{i + 1}/status/17{i:017d}",
            "likeCount": 10 * (i + 1),
            "createdAt": iso(now - 3600 * (i + 1)),
        }
        for i in range(3)
    ]
    return 200, tweets, None


def _person(run_input: Any) -> Outcome:
    email = str(_params(run_input).get("email") or "john.doe@example.com")
    if email.lower().endswith("@nomatch.example"):
        return 404, None, {"status": 404, "message": "No match found for the given query"}
    return (
        200,
        {
            "full_name": "John Doe",
            "work_email": email,
            "job_title": "Data Engineer",
            "job_company_name": "Example Corp",
            "linkedin_url": "linkedin.com/in/johndoe",
            "location_country": "united states",
        },
        None,
    )


def _company(run_input: Any) -> Outcome:
    params = _params(run_input)
    website = str(params.get("website") or params.get("domain") or "example.com")
    return (
        200,
        {
            "name": str(params.get("name") or website.split(".")[0].title()),
            "website": website,
            "industry": "computer software",
            "employee_count": 250,
            "founded": 2012,
            "location": {"country": "united states", "locality": "san francisco"},
        },
        None,
    )


def _generic(run_input: Any) -> Outcome:
    return 200, [{"result": "emulated", "input": copy.deepcopy(run_input)}], None


SAMPLES: dict[tuple[str, str], Callable[[Any], Outcome]] = {
    ("apify", "/apidojo/tweet-scraper"): _tweets,
    ("pdl", "/person/enrich"): _person,
    ("pdl", "/company/enrich"): _company,
}
PROVIDER_NAMES = {"apify": "Apify", "pdl": "People Data Labs"}
PROVIDER_ERRORS = {
    400: "Invalid parameters",
    402: "Provider account has no remaining quota",
    404: "No match found for the given query",
    408: "Provider request timed out",
    429: "Rate limited by provider",
}


@dataclass
class EndpointScript:
    """How the emulator answers for one Monid endpoint; the fields are :meth:`MonidState.set_endpoint`'s arguments.

    :param provider: e.g. ``apify``.
    :param endpoint: e.g. ``/apidojo/tweet-scraper``.
    :param mode: ``sync`` or ``async``.
    :param polls_to_finish: async runs: polls until they end; ``None``: never on their own.
    :param delay: async runs: seconds until they end, instead of polls.
    :param final_status: the status runs end with, or the list walked one poll at a time.
    :param provider_status: ``providerResponse.httpStatus`` of a completed run.
    :param output: the runs' output; ``DEFAULT``: the endpoint's sample.
    :param provider_error: ``providerResponse.error`` when the provider failed.
    :param response_style: ``docs`` or ``spec`` (how a sync provider failure is answered).
    :param reason: the runs' ``reason`` when they do not complete.
    :param input_shape: ``flat``, ``composite`` or ``any``.
    :param stoppable: whether a stop is accepted.
    :param description: shown by discover and inspect.
    :param price: ``{"type", "amount", "currency"}``.
    :param input_schema: the JSON Schema inspect publishes, or ``None``.
    :param schema_style: ``composite`` or ``flat``.
    """

    provider: str
    endpoint: str
    mode: str = "async"
    polls_to_finish: int | None = 1
    delay: float | None = None
    final_status: str | list[str] = "COMPLETED"
    provider_status: int = 200
    output: Any = DEFAULT
    provider_error: Any = None
    response_style: str = "docs"
    reason: str | None = None
    input_shape: str = "any"
    stoppable: bool = True
    description: str = ""
    price: dict[str, Any] = field(default_factory=lambda: {"type": "PER_CALL", "amount": 0.003, "currency": "USD"})
    # What POST /v1/inspect publishes: a JSON Schema of the parameters, served as ``input.body``
    # (``schema_style="composite"``, the 2026-07 spec) or as the older flat ``inputSchema`` ("flat").
    input_schema: dict[str, Any] | None = None
    schema_style: str = "composite"

    def outcome(self, run_input: Any) -> Outcome:
        if self.output is not DEFAULT:
            status = self.provider_status
            return status, self.output, None if ok_status(status) else self._error(status)
        if not ok_status(self.provider_status):
            return self.provider_status, None, self._error(self.provider_status)
        status, output, error = SAMPLES.get((self.provider, self.endpoint), _generic)(run_input)
        return (self.provider_status if ok_status(status) else status), output, error

    def _error(self, status: int) -> Any:
        if self.provider_error is not None:
            return self.provider_error
        return {"status": status, "message": PROVIDER_ERRORS.get(status, "Provider error")}


TWEETS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "searchTerms": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "maxItems": {"type": "integer", "minimum": 1, "description": "Caps the results (and the cost)"},
        "sort": {"type": "string", "enum": ["Latest", "Top"]},
    },
    "required": ["searchTerms"],
}
PERSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"email": {"type": "string", "minLength": 3}, "profile": {"type": "string"}},
    "anyOf": [{"required": ["email"]}, {"required": ["profile"]}],
}
COMPANY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"website": {"type": "string"}, "domain": {"type": "string"}, "name": {"type": "string"}},
}


def default_catalog() -> dict[tuple[str, str], EndpointScript]:
    scripts = [
        EndpointScript(
            "apify",
            "/apidojo/tweet-scraper",
            mode="async",
            polls_to_finish=2,
            description="Scrape tweets matching search terms",
            price={"type": "PER_RESULT", "amount": 0.0004, "currency": "USD"},
            input_schema=TWEETS_SCHEMA,
        ),
        EndpointScript(
            "pdl",
            "/person/enrich",
            mode="sync",
            description="Enrich a person by email or profile",
            input_schema=PERSON_SCHEMA,
        ),
        EndpointScript(
            "pdl",
            "/company/enrich",
            mode="sync",
            description="Firmographics for a company domain",
            price={"type": "PER_CALL", "amount": 0.01, "currency": "USD"},
            input_schema=COMPANY_SCHEMA,
            schema_style="flat",
        ),
    ]
    return {(s.provider, s.endpoint): s for s in scripts}
