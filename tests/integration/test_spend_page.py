"""The Monid spend page and JSON API on a real Airflow 3.3 cluster (api-server, scheduler,
dag-processor, triggerer), DAGs with known prices run against the emulator, the JSON checked against
the emulator's own ledger of charges, and the page opened in Chromium (screenshots in
test-artifacts/screenshots/spend-*.png).

This module starts its own cluster: it needs a second user (``analyst``, who may not read
``spend_it_secret``: tests/integration/test_spend_page_auth.py) and real sign-in, which the session
cluster (every request admin) does not have.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests._support import EXA_KEY, FAST_EXTRAS, MONID_KEY
from tests.integration.browser import browser_unavailable_reason, screenshot
from tests.integration.cluster import ADMIN_PASSWORD, AirflowCluster, ClusterError, airflow_cli
from tests.integration.provider_support import ClusterEmulator

pytestmark = pytest.mark.integration

ANALYST_PASSWORD = "analyst-integration-pw"
PRICES = {"/alpha": 0.25, "/beta": 1.10, "/gamma": 0.40, "/delta": 5.00}

DAGS = """
from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_monid.operators.monid import MonidRunOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")

with DAG("spend_it_main", schedule=None, start_date=START, catchup=False, params={"bad": "", "good": ""}):
    MonidRunOperator(task_id="alpha", provider="spend", endpoint="/alpha", input={"q": "a"})
    MonidRunOperator(task_id="beta", provider="spend", endpoint="/beta", input={"q": "b"}, deferrable=True,
                     poll_interval=1)
    # Try 1 cannot write its output: the retry reuses the run it paid for (one record, one charge).
    MonidRunOperator(task_id="retried", provider="spend", endpoint="/gamma", input={"q": "g"}, retries=1,
                     retry_delay=timedelta(0),
                     output_path="{{ params.bad if ti.try_number == 1 else params.good }}")
    MonidRunOperator.partial(task_id="mapped", provider="spend", endpoint="/alpha").expand(
        input=[{"q": "m1"}, {"q": "m2"}])

with DAG("spend_it_secret", schedule=None, start_date=START, catchup=False):
    MonidRunOperator(task_id="secret", provider="spend", endpoint="/delta", input={"q": "s"})

with DAG("spend_it_lost", schedule=None, start_date=START, catchup=False):
    # The POST's answer is lost and the task may not look for the run: it fails, the run is unattributed.
    MonidRunOperator(task_id="lost", provider="spend", endpoint="/alpha", input={"q": "lost"},
                     adopt_existing_run=False)
"""


@pytest.fixture(scope="module")
def spend_emulator() -> Iterator[ClusterEmulator]:
    emu = ClusterEmulator(monid_api_key=MONID_KEY, exa_api_key=EXA_KEY).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(scope="module")
def spend_cluster(
    tmp_path_factory: pytest.TempPathFactory, spend_emulator: ClusterEmulator
) -> Iterator[AirflowCluster]:
    if airflow_cli() is None:
        pytest.skip("the `airflow` CLI is not installed in this interpreter's environment")
    home = tmp_path_factory.mktemp("spend-home")
    dags = tmp_path_factory.mktemp("spend-dags")
    (dags / "spend_it_dags.py").write_text(textwrap.dedent(DAGS))
    conn = {
        "conn_type": "monid",
        "host": spend_emulator.url,
        "password": MONID_KEY,
        "extra": {**FAST_EXTRAS, "timeout": 10},
    }
    env = {
        "AIRFLOW_CONN_MONID_DEFAULT": json.dumps(conn),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,analyst:viewer",
        "AIRFLOW__CORE__AUTH_MANAGER": "tests.integration.test_spend_page_auth.ScopedAuthManager",
        # No AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS: with Airflow's default (lazy) discovery the page is
        # loaded through the package's ``airflow.plugins`` entry point, as on a user's machine.
    }
    cluster = AirflowCluster(home, dags, env)
    (home / "simple_auth_manager_passwords.json").write_text(
        json.dumps({"admin": ADMIN_PASSWORD, "analyst": ANALYST_PASSWORD})
    )
    try:
        cluster.start(timeout=float(os.environ.get("AIRFLOW_IT_START_TIMEOUT", "180")))
    except ClusterError as exc:
        cluster.stop()
        pytest.fail(f"Airflow cluster did not start: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


def _token(cluster: AirflowCluster, user: str, password: str) -> str:
    r = httpx.post(f"{cluster.base_url}/auth/token", json={"username": user, "password": password}, timeout=30)
    r.raise_for_status()
    return r.json()["access_token"]


def _spend(cluster: AirflowCluster, token: str | None, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{cluster.base_url}/monid/api/v1/spend", params=params, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def ran(spend_cluster: AirflowCluster, spend_emulator: ClusterEmulator, tmp_path_factory) -> dict[str, Any]:
    """Every DAG run once; returns what each task paid for and the emulator's ledger."""
    c, emu = spend_cluster, spend_emulator
    for endpoint, price in PRICES.items():
        emu.monid.set_endpoint(
            "spend",
            endpoint,
            mode="async" if endpoint == "/beta" else "sync",
            delay=8 if endpoint == "/beta" else None,
            price={"type": "PER_CALL", "amount": price, "currency": "USD"},
        )
    out = tmp_path_factory.mktemp("spend-out")
    (out / "blocker").write_text("a file, so no directory can be made under it")
    conf = {"bad": f"file://{out}/blocker/sub/{{monid_run_id}}.json", "good": f"file://{out}/{{monid_run_id}}.json"}
    main = c.trigger_dag("spend_it_main", conf=conf)
    secret = c.trigger_dag("spend_it_secret")
    assert c.wait_dag_run("spend_it_main", main, timeout=300) == "success", c.task_states("spend_it_main", main)
    assert c.wait_dag_run("spend_it_secret", secret, timeout=300) == "success"
    emu.add_fault("POST", r"/v1/run", action="reset", after_handling=True)
    lost = c.trigger_dag("spend_it_lost")
    assert c.wait_dag_run("spend_it_lost", lost, timeout=300) == "failed"
    other = emu.monid.add_run(provider="spend", endpoint="/alpha", input={"caller": "someone else"})
    paid: dict[str, tuple[str, str]] = {}  # Monid run id -> (dag_id, task_id)
    for dag_id, run_id, tasks in (
        ("spend_it_main", main, [("alpha", -1), ("beta", -1), ("retried", -1), ("mapped", 0), ("mapped", 1)]),
        ("spend_it_secret", secret, [("secret", -1)]),
    ):
        for task_id, index in tasks:
            paid[c.xcom(dag_id, run_id, task_id, key="run_id", map_index=index)] = (dag_id, task_id)
    retried = c.task_instance("spend_it_main", main, "retried")
    return {
        "paid": paid,
        "charges": {ch["runId"]: ch for ch in emu.monid.charges()},
        "other": other["runId"],
        "retried_tries": retried["try_number"],
        "posts": emu.count("POST", "/v1/run"),
    }


def _expected(ran: dict[str, Any], key: str, dags: set[str]) -> dict[str, float]:
    sums: dict[str, float] = {}
    for run_id, (dag_id, task_id) in ran["paid"].items():
        if dag_id not in dags:
            continue
        ch = ran["charges"][run_id]
        k = {"dag": dag_id, "task": f"{dag_id}.{task_id}", "endpoint": f"{ch['provider']} {ch['endpoint']}"}.get(
            key, datetime.fromisoformat(ch["createdAt"].replace("Z", "+00:00")).astimezone(UTC).date().isoformat()
        )
        sums[k] = round(sums.get(k, 0.0) + ch["value"], 6)
    return sums


def test_the_json_equals_the_ledger_per_dag_task_endpoint_and_day(spend_cluster, ran) -> None:
    token = _token(spend_cluster, "admin", ADMIN_PASSWORD)
    # a retry that reused its run: two tries, one POST for it; one lost POST; seven runs in all
    assert ran["retried_tries"] == 2 and ran["posts"] == 7 and len(ran["paid"]) == 6
    everything = {"spend_it_main", "spend_it_secret"}
    for group_by in ("dag", "task", "endpoint", "day"):
        body = _spend(spend_cluster, token, group_by=group_by).json()
        got = {g["key"]: g["cost"] for g in body["groups"]}
        assert got == _expected(ran, group_by, everything), group_by
        assert body["currency"] == "USD" and body["runs"] == 6
        assert body["total"] == round(sum(ran["charges"][r]["value"] for r in ran["paid"]), 6) == 7.25
        costs = [g["cost"] for g in body["groups"]]
        assert costs == sorted(costs, reverse=True)
    unclaimed = set(ran["charges"]) - set(ran["paid"])
    assert ran["other"] in unclaimed and len(unclaimed) == 2  # the other caller's run and the lost POST's
    assert body["unattributed"] == {"runs": 2, "cost": round(sum(ran["charges"][r]["value"] for r in unclaimed), 6)}
    assert body["reconciliation"]["mismatches"] == []
    conn = body["reconciliation"]["connections"][0]
    assert conn["status"] == "ok" and conn["wallet"]["currency"] == "USD"
    assert conn["budgets"][0]["used"] == pytest.approx(sum(ch["value"] for ch in ran["charges"].values()))
    assert MONID_KEY not in json.dumps(body)


def test_a_user_without_access_to_a_dag_does_not_see_its_spend(spend_cluster, ran) -> None:
    token = _token(spend_cluster, "analyst", ANALYST_PASSWORD)
    body = _spend(spend_cluster, token, group_by="dag").json()
    assert [g["key"] for g in body["groups"]] == ["spend_it_main"]
    assert body["total"] == _expected(ran, "dag", {"spend_it_main"})["spend_it_main"] == 2.25
    assert body["unattributed"] is None  # a viewer may not read the Monid connection
    assert any("read access to the Monid connection" in n for n in body["notices"])
    refused = _spend(spend_cluster, token, group_by="dag", dag_id="spend_it_secret")
    assert refused.status_code == 403 and "spend_it_secret" in refused.json()["detail"]


def test_unauthenticated_requests_and_bad_parameters_are_refused(spend_cluster) -> None:
    assert _spend(spend_cluster, None, group_by="dag").status_code == 401
    page = httpx.get(f"{spend_cluster.base_url}/monid/spend", timeout=30)
    assert page.status_code == 401 and "Sign in to Airflow" in page.text
    assert _spend(spend_cluster, "not-a-token", group_by="dag").status_code in (401, 403)
    token = _token(spend_cluster, "admin", ADMIN_PASSWORD)
    bad = _spend(spend_cluster, token, group_by="week")
    assert bad.status_code == 400 and bad.json()["parameter"] == "group_by"
    bad = _spend(spend_cluster, token, group_by="dag", start="2026-02-30")
    assert bad.status_code == 400 and bad.json()["detail"].startswith("start: ")
    empty = _spend(spend_cluster, token, group_by="dag", start="2020-01-01", end="2020-01-31").json()
    assert empty["runs"] == 0 and empty["currency"] == "USD"
    assert "No Monid spend recorded from 2020-01-01 to 2020-01-31." in empty["notices"]


@pytest.mark.browser
def test_the_page_the_dag_tab_and_a_refused_user_in_chromium(spend_cluster, ran) -> None:
    reason = browser_unavailable_reason()
    if reason:
        pytest.skip(reason)
    from tests.integration.browser import chromium, new_page

    base = spend_cluster.base_url
    admin = _token(spend_cluster, "admin", ADMIN_PASSWORD)
    analyst = _token(spend_cluster, "analyst", ANALYST_PASSWORD)
    with chromium() as browser:
        page = new_page(browser)
        page.context.add_cookies([{"name": "_token", "value": admin, "url": base}])
        page.goto(f"{base}/monid/spend", wait_until="networkidle")
        text = page.inner_text("body")
        assert "7.25 USD" in text and "spend_it_secret" in text and "Ten costliest runs" in text
        assert "unattributed (2 runs)" in text
        screenshot(page, "spend-page")
        page.goto(f"{base}/dags/spend_it_main/plugin/monid-spend-dag", wait_until="networkidle")
        frame = page.frame_locator("iframe").first
        frame.get_by_text("Per task").wait_for()
        assert "spend_it_main.retried" in frame.locator("body").inner_text()
        screenshot(page, "spend-dag-tab")
        page.goto(f"{base}/plugin/monid-spend", wait_until="networkidle")
        page.frame_locator("iframe").first.get_by_text("Per DAG").wait_for()
        screenshot(page, "spend-nav-entry")
        dark = browser.new_context(viewport={"width": 1366, "height": 900}, color_scheme="dark").new_page()
        dark.context.add_cookies([{"name": "_token", "value": admin, "url": base}])
        dark.goto(f"{base}/monid/spend", wait_until="networkidle")
        background = dark.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(26, 29, 35)", background
        screenshot(dark, "spend-page-dark")
        refused = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
        refused.context.add_cookies([{"name": "_token", "value": analyst, "url": base}])
        response = refused.goto(f"{base}/monid/spend?dag_id=spend_it_secret", wait_until="networkidle")
        assert response is not None and response.status == 403
        assert "You may not read DAG 'spend_it_secret'" in refused.inner_text("body")
        screenshot(refused, "spend-refused")
        refused.goto(f"{base}/monid/spend", wait_until="networkidle")
        assert "spend_it_secret" not in refused.inner_text("body")
