"""OpenLineage for the Monid and Exa operators and sensors (optional extra ``openlineage``).

The listener calls ``get_openlineage_facets_on_complete`` in the process that finished the task; the
OpenLineage packages are imported there only, never when a DAG file is parsed. After a deferral the
operator object is a new one, but ``_complete`` ran in it (execute_complete), so the run id and the
output URL are on ``self``; nothing is read back from XCom.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

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


class RunLineage:
    """Base of every task here: the OpenLineage facets of a task that waited for one API run.

    Everything the facets need is kept on the task object while it runs (after a deferral too: the
    resumed object reads the run again), so building them makes **no request**: the OpenLineage
    listener calls these methods in a forked child process, where any Execution-API call waits on a
    parent that is not serving it (until the listener's timeout). Subclasses implement
    :meth:`_lineage_input`.
    """

    output_api: str
    hook: Any
    #: set by :class:`~airflow_monid._runtime.output_store.OutputStore` when the task delivers
    delivered_run_id: str | None
    output_url: str | None
    lineage_name: str | None
    #: the run the task last read (:class:`~airflow_monid._runtime.lifecycle.RunLifecycle`)
    current_run_id: str | None

    def _lineage_input(self) -> tuple[str, str]:
        raise NotImplementedError  # pragma: no cover - every task class implements it

    def _base_url(self) -> str | None:
        """The connection's base URL when this process read it already; never a lookup of its own."""
        settings = vars(self.hook).get("settings")
        return str(settings.base_url) if settings is not None else None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        from airflow.providers.common.compat.openlineage.facet import Dataset, ExternalQueryRunFacet
        from airflow.providers.openlineage.extractors import OperatorLineage

        namespace, name = self._lineage_input()
        run_id = self.delivered_run_id or self.current_run_id
        url = self.output_url
        run_facets = (
            {"externalQuery": ExternalQueryRunFacet(externalQueryId=run_id, source=namespace)} if run_id else {}
        )
        outputs = [Dataset(namespace=ns, name=path) for ns, path in [storage_dataset(url)]] if url else []
        return OperatorLineage(inputs=[Dataset(namespace=namespace, name=name)], outputs=outputs, run_facets=run_facets)


class MonidLineage(RunLineage):
    """``monid://<host>`` and ``<provider><endpoint>``, e.g. ``apify/apidojo/tweet-scraper``."""

    provider: Any
    endpoint: Any

    def _lineage_input(self) -> tuple[str, str]:
        from airflow_monid.hooks.monid import MonidHook

        name = self.lineage_name
        if not name:
            provider, endpoint = self.provider, self.endpoint
            name = f"{provider}{endpoint}" if isinstance(provider, str) and isinstance(endpoint, str) else "runs"
        return api_namespace("monid", self._base_url(), MonidHook.default_base_url), name


class ExaLineage(RunLineage):
    """``exa://<host>`` and the monitor's API path, e.g. ``monitors/<monitor_id>``."""

    monitor_id: str
    monitor_type: str = "search"

    def _lineage_input(self) -> tuple[str, str]:
        from airflow_monid.hooks.exa import ExaHook

        try:
            prefix = self.hook.prefix(self.monitor_type) if vars(self.hook).get("settings") else None
        except Exception as exc:  # a connection unreadable now must not fail a task that succeeded
            log.warning("OpenLineage: could not read the Exa connection (%s).", exc)
            prefix = None
        if prefix is None:
            prefix = "/monitors" if self.monitor_type == "search" else "/websets/v0/monitors"
        name = f"{prefix.strip('/')}/{self.monitor_id}"
        return api_namespace("exa", self._base_url(), ExaHook.default_base_url), name
