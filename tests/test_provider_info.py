"""Provider registration and the connection form, as Airflow itself reads them."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_monid import __version__
from airflow_monid.get_provider_info import get_provider_info
from airflow_monid.version_compat import AIRFLOW_V_3_2_PLUS

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def test_entry_point_package_name_matches_distribution() -> None:
    from importlib.metadata import distribution, entry_points

    (ep,) = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("airflow_monid")]
    info = ep.load()()
    assert info["package-name"] == distribution("airflow-provider-monid").metadata["Name"]
    assert info["versions"] == [__version__]


def test_providers_manager_registers_hooks_and_triggers() -> None:
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    assert "airflow-provider-monid" in pm.providers
    hooks = pm.hooks
    assert hooks["monid"] is not None and hooks["monid"].hook_class_name.endswith("MonidHook")
    assert hooks["exa"] is not None and hooks["exa"].hook_class_name.endswith("ExaHook")
    assert hooks["monid"].connection_testable


def _cli_json(*args: str) -> list[dict]:
    out = subprocess.run([AIRFLOW, *args, "-o", "json"], capture_output=True, text=True, check=True).stdout
    # Airflow 3.0 prints log lines before the JSON document.
    (document,) = [line for line in out.splitlines() if line.startswith("[{")]
    return json.loads(document)


def test_cli_lists_provider_and_hook() -> None:
    names = {p["package_name"] for p in _cli_json("providers", "list")}
    assert "airflow-provider-monid" in names
    types = {h["connection_type"]: h for h in _cli_json("providers", "hooks")}
    assert types["monid"]["class"] == "airflow_monid.hooks.monid.MonidHook"
    assert types["exa"]["class"] == "airflow_monid.hooks.exa.ExaHook"


@functools.cache
def _hook_metas() -> dict[str, dict]:
    """Built once per session, as the API server does: Airflow 3.2's hook_meta_data puts mocks for a
    missing wtforms/FAB into sys.modules and, run again after a cache_clear(), fails on them
    ("wtforms.__spec__ is not set")."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    HookMetaService.hook_meta_data.cache_clear() if hasattr(HookMetaService.hook_meta_data, "cache_clear") else None
    return {m.connection_type: m.model_dump() for m in HookMetaService.hook_meta_data()}


def _hook_meta(conn_type: str) -> dict:
    return _hook_metas()[conn_type]


@pytest.mark.parametrize(
    ("conn_type", "placeholder", "extra"),
    [("monid", "https://api.monid.ai", "app_url"), ("exa", "https://api.exa.ai", "search_monitors_path")],
)
def test_hook_meta_connection_form(conn_type: str, placeholder: str, extra: str) -> None:
    """What /ui/connections/hook_meta returns (the service behind the endpoint)."""
    meta = _hook_meta(conn_type)
    assert meta["hook_name"] == conn_type.capitalize()
    assert meta["hook_class_name"].endswith(f"{conn_type.capitalize()}Hook")
    fields = meta["standard_fields"]
    if fields is None and not AIRFLOW_V_3_2_PLUS:
        # Airflow 3.0/3.1 build every form (official providers' too) only with the FAB provider
        # installed; the hook still answers what that UI would ask.
        from airflow.providers_manager import ProvidersManager

        hook_class = ProvidersManager().hooks[conn_type].hook_class_name
        module, _, name = hook_class.rpartition(".")
        behaviour = getattr(__import__(module, fromlist=[name]), name).get_ui_field_behaviour()
        assert behaviour["placeholders"]["host"] == placeholder
        assert behaviour["relabeling"] == {"host": "Base URL", "password": "API key"}
        return
    assert fields["host"] == {"hidden": False, "title": "Base URL", "placeholder": placeholder}
    assert fields["password"]["hidden"] is False and fields["password"]["title"] == "API key"
    assert fields["port"]["hidden"] is True and fields["url_schema"]["hidden"] is True
    assert fields["login"]["hidden"] is True
    if AIRFLOW_V_3_2_PLUS:
        # 3.2+ reads conn-fields declaratively; 3.0 without the FAB provider has no extra widgets.
        extras = meta["extra_fields"]
        assert extra in extras and "timeout" in extras
        assert extras["timeout"]["schema"]["type"] == ["number", "null"]


def test_declared_form_matches_legacy_methods() -> None:
    from airflow_monid.hooks.monid import MonidHook

    behaviour = MonidHook.get_ui_field_behaviour()
    declared = get_provider_info()["connection-types"][0]["ui-field-behaviour"]
    assert behaviour["hidden_fields"] == declared["hidden-fields"]
    assert behaviour["relabeling"]["password"] == "API key"
