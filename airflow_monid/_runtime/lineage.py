"""OpenLineage for the Monid and Exa operators and sensors (optional extra ``openlineage``).

The listener calls ``get_openlineage_facets_on_complete`` in the process that finished the task; the
OpenLineage packages are imported there only, never when a DAG file is parsed. After a deferral the
operator object is a new one, but ``_complete`` ran in it (execute_complete), so the run id and the
output URL are on ``self``; XCom is the fallback for anything that finished the task another way.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from airflow_monid._runtime.output_store import OutputStore

log = logging.getLogger("airflow_monid.lineage")


def api_namespace(scheme: str, base_url: str | None, default: str) -> str:
    """``monid://api.monid.ai`` / ``exa://api.exa.ai``: the API's scheme and the connection's host[:port]."""
    netloc = urlsplit(base_url or default).netloc.rpartition("@")[2]
    return f"{scheme}://{netloc or urlsplit(default).netloc}"


def storage_dataset(url: str) -> tuple[str, str]:
    """OpenLineage's naming of an object: ``s3://bucket`` + key; local files are ``file`` + absolute path.

    The URL's user part is an Airflow connection id for ``ObjectStoragePath``, not part of the object's
    name, so it is left out.
    """
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    if parts.scheme in ("file", "local"):
        return ("file" if not host or host == "localhost" else f"file://{host}"), parts.path
    return f"{parts.scheme}://{host}", parts.path.lstrip("/")


class RunLineage(OutputStore):
    """Mixin: the OpenLineage facets of a task that waited for one API run.

    Subclasses implement :meth:`_lineage_input` (namespace and name of the API's dataset).
    """

    def _lineage_input(self, task_instance: Any) -> tuple[str, str]:
        raise NotImplementedError

    def _lineage_run_id(self, task_instance: Any) -> str | None:
        # The Monid sensor's run_id argument names its run; it pushes no run_id XCom.
        return self.delivered_run_id or _xcom(task_instance, "run_id") or getattr(self, "run_id", None)

    def _lineage_output(self, task_instance: Any) -> str | None:
        if self.output_url:
            return self.output_url
        value = _xcom(task_instance, "return_value") if self.output_path else None
        return value if isinstance(value, str) and "://" in value else None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        from airflow.providers.common.compat.openlineage.facet import Dataset, ExternalQueryRunFacet
        from airflow.providers.openlineage.extractors import OperatorLineage

        namespace, name = self._lineage_input(task_instance)
        run_id = self._lineage_run_id(task_instance)
        url = self._lineage_output(task_instance)
        run_facets = (
            {"externalQuery": ExternalQueryRunFacet(externalQueryId=run_id, source=namespace)} if run_id else {}
        )
        outputs = [Dataset(namespace=ns, name=path) for ns, path in [storage_dataset(url)]] if url else []
        return OperatorLineage(inputs=[Dataset(namespace=namespace, name=name)], outputs=outputs, run_facets=run_facets)


def _xcom(task_instance: Any, key: str) -> Any:
    try:
        # Without map_indexes a task pulls its own map index's value.
        return task_instance.xcom_pull(task_ids=task_instance.task_id, key=key)
    except Exception as exc:  # lineage must never fail a task that succeeded
        log.warning("OpenLineage: could not read XCom %r (%s).", key, exc)
        return None


class MonidLineage(RunLineage):
    """``monid://<host>`` and ``<provider><endpoint>``, e.g. ``apify/apidojo/tweet-scraper``."""

    monid_conn_id: str
    output_api = "Monid"

    def _lineage_input(self, task_instance: Any) -> tuple[str, str]:
        from airflow_monid.hooks.monid import MonidHook

        name = self.lineage_name
        if not name:
            provider, endpoint = getattr(self, "provider", None), getattr(self, "endpoint", None)
            if not (isinstance(provider, str) and isinstance(endpoint, str)):
                run = _xcom(task_instance, "run") or {}
                provider, endpoint = run.get("provider"), run.get("endpoint")
            name = f"{provider}{endpoint}" if provider and endpoint else "runs"
        return api_namespace(
            "monid", _base_url(lambda: MonidHook(self.monid_conn_id)), MonidHook.default_base_url
        ), name


class ExaLineage(RunLineage):
    """``exa://<host>`` and the monitor's API path, e.g. ``monitors/<monitor_id>``."""

    output_api = "Exa"
    exa_conn_id: str
    monitor_id: str
    monitor_type: str = "search"
    search_monitors_path: str | None = None

    def _lineage_input(self, task_instance: Any) -> tuple[str, str]:
        from airflow_monid.hooks.exa import ExaHook

        hook = ExaHook(self.exa_conn_id, search_monitors_path=self.search_monitors_path)
        try:
            prefix = hook.prefix(self.monitor_type)
        except Exception as exc:
            log.warning("OpenLineage: could not read connection %r (%s).", self.exa_conn_id, exc)
            prefix = "/monitors"
        base = _base_url(lambda: hook)
        return api_namespace("exa", base, ExaHook.default_base_url), f"{prefix.strip('/')}/{self.monitor_id}"


def _base_url(make_hook: Any) -> str | None:
    try:
        return str(make_hook().settings.base_url)
    except Exception as exc:  # a connection unreadable now must not fail a task that succeeded
        log.warning("OpenLineage: could not read the API's base URL (%s); using the default host.", exc)
        return None
