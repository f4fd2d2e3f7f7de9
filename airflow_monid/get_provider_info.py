"""Provider metadata, including the declarative connection forms read by the Airflow 3.2+ UI."""

from __future__ import annotations

from typing import Any

_TIMEOUT_FIELD = {
    "label": "Read timeout (s)",
    "description": "Seconds to wait for an answer before retrying a read (default 30).",
    "schema": {"type": ["number", "null"], "minimum": 1},
}
_RETRY_FIELD = {
    "label": "Max attempts per call",
    "description": "Attempts for one read request, the first included (default 6).",
    "schema": {"type": ["integer", "null"], "minimum": 1, "maximum": 20},
}
_CONNECTIONS_FIELD = {
    "label": "Max concurrent requests",
    "description": "Requests in flight at once per process and event loop, e.g. one triggerer (default 20).",
    "schema": {"type": ["integer", "null"], "minimum": 1},
}


def get_provider_info() -> dict[str, Any]:
    from airflow_monid import __version__

    return {
        "package-name": "airflow-provider-monid",
        "name": "Monid",
        "description": "Run paid Monid data endpoints and wait for Exa monitor runs from Airflow.",
        "versions": [__version__],
        "integrations": [
            {"integration-name": "Monid", "external-doc-url": "https://docs.monid.ai", "tags": ["service"]},
            {"integration-name": "Exa", "external-doc-url": "https://exa.ai/docs", "tags": ["service"]},
        ],
        "operators": [
            {"integration-name": "Monid", "python-modules": ["airflow_monid.operators.monid"]},
            {"integration-name": "Exa", "python-modules": ["airflow_monid.operators.exa"]},
        ],
        "sensors": [
            {"integration-name": "Monid", "python-modules": ["airflow_monid.sensors.monid"]},
            {"integration-name": "Exa", "python-modules": ["airflow_monid.sensors.exa"]},
        ],
        "hooks": [
            {"integration-name": "Monid", "python-modules": ["airflow_monid.hooks.monid"]},
            {"integration-name": "Exa", "python-modules": ["airflow_monid.hooks.exa"]},
        ],
        "triggers": [
            {"integration-name": "Monid", "python-modules": ["airflow_monid.triggers.monid"]},
            {"integration-name": "Exa", "python-modules": ["airflow_monid.triggers.exa"]},
        ],
        # The runtime (ProvidersManager) reads ``name`` and ``class-name``; the provider-info schema
        # documents ``path``. Both point at the same function.
        "task-decorators": [
            {
                "name": "monid",
                "class-name": "airflow_monid.decorators.monid.monid_task",
                "path": "airflow_monid.decorators.monid.monid_task",
            }
        ],
        # The "Monid spend" page and JSON API on the API server (README "Spend: what every DAG costs").
        "plugins": [{"name": "monid_spend", "plugin-class": "airflow_monid.plugins.spend.MonidSpendPlugin"}],
        "extra-links": [
            "airflow_monid.operators.monid.MonidRunLink",
            "airflow_monid.operators.exa.ExaRunLink",
            "airflow_monid.operators.exa.ExaMonitorLink",
        ],
        "connection-types": [
            {
                "connection-type": "monid",
                "hook-class-name": "airflow_monid.hooks.monid.MonidHook",
                "hook-name": "Monid",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"host": "Base URL", "password": "API key"},
                    "placeholders": {"host": "https://api.monid.ai", "password": "monid_live_..."},
                },
                "conn-fields": {
                    "timeout": _TIMEOUT_FIELD,
                    "max_attempts": _RETRY_FIELD,
                    "max_connections": _CONNECTIONS_FIELD,
                    "batch_status_polling": {
                        "label": "Shared status poller",
                        "description": "Deferred runs of one triggerer read their status from shared "
                        "GET /v1/runs pages (default true); false polls each run on its own.",
                        "schema": {"type": ["boolean", "null"], "default": True},
                    },
                    "status_page_budget": {
                        "label": "Status pages per cycle",
                        "description": "GET /v1/runs pages (100 runs each) the shared poller reads per "
                        "interval at most; older runs are read one by one (default 200).",
                        "schema": {"type": ["integer", "null"], "minimum": 1},
                    },
                    "app_url": {
                        "label": "Monid app URL",
                        "description": "Base of the run links shown on tasks (default https://app.monid.ai).",
                        "schema": {"type": ["string", "null"], "format": "url"},
                    },
                },
            },
            {
                "connection-type": "exa",
                "hook-class-name": "airflow_monid.hooks.exa.ExaHook",
                "hook-name": "Exa",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"host": "Base URL", "password": "API key"},
                    "placeholders": {"host": "https://api.exa.ai"},
                },
                "conn-fields": {
                    "timeout": _TIMEOUT_FIELD,
                    "max_attempts": _RETRY_FIELD,
                    "max_connections": _CONNECTIONS_FIELD,
                    "search_monitors_path": {
                        "label": "Search monitors path",
                        "description": "API path of search monitors: /monitors (current) or /search-monitors.",
                        "schema": {
                            "type": ["string", "null"],
                            "enum": ["/monitors", "/search-monitors"],
                            "default": "/monitors",
                        },
                    },
                    "dashboard_url": {
                        "label": "Exa dashboard URL",
                        "description": "Base of the monitor and run links shown on tasks (default https://dashboard.exa.ai).",
                        "schema": {"type": ["string", "null"], "format": "url"},
                    },
                    # "format": "password" makes Airflow treat the field as sensitive (masked in the form).
                    "webhook_secret": {
                        "label": "Webhook secret",
                        "description": "The monitor's webhookSecret (returned once when the webhook is created): "
                        "the provider's receiver verifies Exa's signed deliveries with it, and watchers then poll "
                        "only as a safety net.",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                },
            },
        ],
    }
