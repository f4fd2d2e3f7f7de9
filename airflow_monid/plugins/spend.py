"""The "Monid spend" Airflow plugin: a FastAPI app on the API server (``/monid``) with

* ``GET /monid/api/v1/spend``: the JSON API (README "Spend: what every DAG costs"), and
* ``GET /monid/spend``: the page (server-rendered HTML),

both behind Airflow's authentication, and ``POST /monid/api/v1/exa/webhooks/{conn_id}``, the Exa
webhook receiver (``airflow_monid.plugins.exa_webhooks``), authenticated by Exa's signature instead.
A user sees only the DAGs the auth manager lets them read.
On Airflow 3.1+ the page is also a "Monid spend" entry of the navigation (Browse) and a "Monid
spend" tab on every DAG (``external_views`` shown in an iframe); on 3.0 it is at its URL.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlparse

from airflow.plugins_manager import AirflowPlugin
from airflow.providers.common.compat.sdk import conf
from fastapi import Request  # resolved by name in the page's signature (postponed annotations)

from airflow_monid.version_compat import AIRFLOW_V_3_1_PLUS

log = logging.getLogger("airflow_monid.spend")

URL_PREFIX = "/monid"
PAGE_PATH = f"{URL_PREFIX}/spend"
API_PATH = f"{URL_PREFIX}/api/v1/spend"


def base_path() -> str:
    """The path Airflow is served under (``[api] base_url``), without a trailing slash."""
    base_url = conf.get("api", "base_url", fallback="/") or "/"
    path = urlparse(base_url).path if base_url.startswith(("http://", "https://")) else base_url
    return path.rstrip("/")


def create_app() -> Any:
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import HTMLResponse, JSONResponse

    from airflow_monid._spend.query import SpendFilter, SpendQueryError, parse_group_by
    from airflow_monid._spend.reconcile import MonidBill
    from airflow_monid._spend.report import page_data, public, spend_report
    from airflow_monid.plugins._auth import current_user, may_read_connection, readable_dag_ids
    from airflow_monid.plugins._page import refused_page, render_page, sign_in_page

    app = FastAPI(
        title="Monid spend",
        description="What every DAG spends on Monid, reconciled with Monid's own bill. API version v1.",
        version="1",
    )
    bill = MonidBill()
    app.state.monid_bill = bill
    app_urls: dict[str, str] = {}

    def _session() -> Any:
        from airflow.utils.session import create_session

        return create_session()

    def _bad(exc: SpendQueryError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": str(exc), "parameter": exc.parameter})

    def _scope(user: Any, dag_id: str | None) -> set[str]:
        readable = readable_dag_ids(user)
        if dag_id and dag_id not in readable:
            raise HTTPException(403, f"You may not read DAG {dag_id!r}, so its spend is not shown.")
        return readable

    @app.get("/api/v1/spend", summary="Spend per DAG, task, endpoint or day")
    def spend(
        user: Any = Depends(current_user),
        start: str | None = None,
        end: str | None = None,
        group_by: str | None = "dag",
        dag_id: str | None = None,
        conn_id: str | None = None,
        reconcile: bool = True,
    ) -> Any:
        """``start``/``end``: UTC days (``YYYY-MM-DD``, end included; default the last 30 days);
        ``group_by``: ``dag``, ``task`` (keys ``dag_id.task_id``), ``endpoint`` or ``day``;
        ``reconcile=false`` skips Monid's own figures (unattributed runs, mismatches, wallet)."""
        try:
            flt = SpendFilter.parse(start, end, dag_id, conn_id)
            key = parse_group_by(group_by)
        except SpendQueryError as exc:
            return _bad(exc)
        readable = _scope(user, flt.dag_id)
        with _session() as session:
            report = spend_report(
                session,
                flt,
                key,
                readable=readable,
                may_see_workspace=lambda c: may_read_connection(user, c),
                bill=bill if reconcile else None,
            )
        return public(report)

    def _app_url(conn_id: str) -> str:
        from airflow_monid.hooks.monid import MonidHook

        if conn_id not in app_urls:
            try:
                app_urls[conn_id] = MonidHook(conn_id).app_url()
            except Exception:  # an unknown connection: the documented default
                app_urls[conn_id] = str(MonidHook.default_app_url).rstrip("/")
        return app_urls[conn_id]

    @app.get("/spend", response_class=HTMLResponse, summary="The Monid spend page")
    async def page_view(
        request: Request,
        start: str | None = None,
        end: str | None = None,
        dag_id: str | None = None,
        conn_id: str | None = None,
        embed: bool = False,
    ) -> Any:
        from starlette.concurrency import run_in_threadpool

        try:
            user = await current_user(request)
        except HTTPException as exc:
            if exc.status_code == 401:
                return HTMLResponse(sign_in_page(base_path(), str(exc.detail)), status_code=401)
            return HTMLResponse(refused_page(str(exc.detail)), status_code=exc.status_code)
        try:
            flt = SpendFilter.parse(start, end, dag_id or None, conn_id or None)
        except SpendQueryError as exc:
            return HTMLResponse(refused_page(str(exc)), status_code=400)

        def build() -> str:
            readable = readable_dag_ids(user)
            if flt.dag_id and flt.dag_id not in readable:
                raise HTTPException(403, f"You may not read DAG {flt.dag_id!r}, so its spend is not shown.")
            with _session() as session:
                data = page_data(
                    session,
                    flt,
                    readable=readable,
                    may_see_workspace=lambda c: may_read_connection(user, c),
                    bill=bill,
                )
            urls = {
                str(r.get("conn_id")): _app_url(str(r.get("conn_id"))) for r in data["top"] if r.get("api") == "monid"
            }
            return render_page(data, base_path=base_path(), dag_choices=sorted(readable), app_urls=urls, embed=embed)

        try:
            return HTMLResponse(await run_in_threadpool(build))
        except HTTPException as exc:
            return HTMLResponse(refused_page(str(exc.detail)), status_code=exc.status_code)

    # The Exa webhook receiver shares this app (one mount at /monid): signed by Exa, no Airflow login.
    from airflow_monid.plugins.exa_webhooks import add_routes

    add_routes(app)
    return app


def _views() -> list[dict[str, Any]]:
    base = base_path()
    return [
        {
            "name": "Monid spend",
            "href": f"{base}{PAGE_PATH}?embed=1",
            "destination": "nav",
            "category": "browse",
            "url_route": "monid-spend",
        },
        {
            "name": "Monid spend",
            "href": f"{base}{PAGE_PATH}?embed=1&dag_id={{DAG_ID}}",
            "destination": "dag",
            "url_route": "monid-spend-dag",
        },
    ]


class MonidSpendPlugin(AirflowPlugin):
    """What every DAG spends on Monid: a page and a JSON API on the API server."""

    name = "monid_spend"
    fastapi_apps: list[Any] = []
    external_views: list[Any] = []
    try:
        fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Monid spend"}]
    except ImportError as _exc:  # no FastAPI: not an API server process
        log.debug("Monid spend app not built: %s", _exc)
    if AIRFLOW_V_3_1_PLUS:
        external_views = _views()
