"""The ``monid`` and ``exa`` connection forms and the connection test, on a real Airflow 3.3.

CI gate (no browser): the JSON of ``/ui/connections/hook_meta`` that the React UI builds the form
from, and ``POST /api/v2/connections/test`` against the emulator (success, and the API's 401 text
for a wrong key).

Browser (headless Chromium): the Add Connection dialog for "Monid" and "Exa" (screenshots in
test-artifacts/screenshots/, linked from the README), saving a ``monid`` connection through the
form, and the list's "Test Connection" button.

Airflow 3.3.2 UI bug met here: the list's Test button posts ``port: 0`` for a stored connection
without a port, and the API answers 400 "The host or port to test differs from the stored
connection" (fixed upstream by apache/airflow#73298). The port field is hidden on these forms, so a
connection saved through the form has no port; the test records the bug, then gives the stored
connection the port its base URL already carries (REST PATCH) and tests it through the same button.
"""

from __future__ import annotations

import json

import pytest

from tests._support import EXA_KEY, MONID_KEY
from tests.integration import browser as ui
from tests.integration.cluster import AirflowCluster
from tests.integration.provider_support import ClusterEmulator

WRONG_MONID_KEY = "mk_test_wrong_key_for_the_connection_test"
WRONG_EXA_KEY = "exa_test_wrong_key_for_the_connection_test"
HIDDEN = ("port", "schema", "login")


def _standard(meta: dict) -> dict:
    return meta["standard_fields"]


# ------------------------------------------------------------------------------------ CI gate
@pytest.mark.integration
def test_hook_meta_describes_the_monid_and_exa_forms(airflow_cluster: AirflowCluster) -> None:
    c = airflow_cluster
    monid, exa = c.hook_meta_for("monid"), c.hook_meta_for("exa")
    assert monid is not None and exa is not None, "provider not registered (pip install -e .)"
    assert (monid["hook_name"], monid["hook_class_name"]) == ("Monid", "airflow_monid.hooks.monid.MonidHook")
    assert (exa["hook_name"], exa["hook_class_name"]) == ("Exa", "airflow_monid.hooks.exa.ExaHook")

    expected = ((monid, "https://api.monid.ai", "monid_live_..."), (exa, "https://api.exa.ai", None))
    for meta, url, key_placeholder in expected:
        std = _standard(meta)
        assert std["host"] == {"hidden": False, "title": "Base URL", "placeholder": url}
        # the API key is the standard password field: the form renders it as a password input
        assert std["password"] == {"hidden": False, "title": "API key", "placeholder": key_placeholder}
        for name in ("port", "login", "url_schema"):
            assert std[name]["hidden"] is True, (meta["connection_type"], name, std[name])
        extra = meta["extra_fields"]
        assert extra["timeout"]["schema"] == {"type": ["number", "null"], "minimum": 1, "title": "Read timeout (s)"}
        assert extra["max_attempts"]["schema"] == {
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": 20,
            "title": "Max attempts per call",
        }
        # no extra field holds the key: it lives only in the (masked, encrypted) password; the one other
        # secret, Exa's webhook secret (issue 25), is a masked password field too
        masked = {name for name, f in extra.items() if f["schema"].get("format") == "password"}
        assert masked == ({"webhook_secret"} if meta is exa else set())

    assert set(monid["extra_fields"]) == {
        "timeout",
        "max_attempts",
        "max_connections",
        "batch_status_polling",
        "status_page_budget",
        "app_url",
    }
    polling = monid["extra_fields"]["batch_status_polling"]
    assert polling["value"] is True and polling["schema"]["type"] == ["boolean", "null"]
    assert monid["extra_fields"]["status_page_budget"]["schema"]["minimum"] == 1
    app_url = monid["extra_fields"]["app_url"]
    assert app_url["schema"] == {"type": ["string", "null"], "format": "url", "title": "Monid app URL"}
    assert "https://app.monid.ai" in app_url["description"]
    assert set(exa["extra_fields"]) == {
        "timeout",
        "max_attempts",
        "max_connections",
        "search_monitors_path",
        "dashboard_url",
        "webhook_secret",
    }
    path = exa["extra_fields"]["search_monitors_path"]
    assert path["value"] == "/monitors"
    assert path["schema"]["enum"] == ["/monitors", "/search-monitors"] and path["schema"]["default"] == "/monitors"


@pytest.mark.integration
def test_connection_test_endpoint_against_the_emulator(
    airflow_cluster: AirflowCluster, cluster_emulator: ClusterEmulator
) -> None:
    c, emu = airflow_cluster, cluster_emulator
    monid = {"connection_id": "it_api_monid", "conn_type": "monid", "host": emu.url}
    exa = {"connection_id": "it_api_exa", "conn_type": "exa", "host": emu.url}

    assert c.test_connection({**monid, "password": MONID_KEY}) == {
        "status": True,
        "message": "Connected to Monid. Wallet balance: 25.0 USD",
    }
    bad = c.test_connection({**monid, "password": WRONG_MONID_KEY})
    assert bad["status"] is False
    assert bad["message"].startswith("Monid API GET /v1/wallet/balance failed with HTTP 401: Invalid API key")
    assert WRONG_MONID_KEY not in bad["message"]

    ok = c.test_connection({**exa, "password": EXA_KEY})
    assert ok["status"] is True and ok["message"].startswith(f"Connected to Exa: {emu.url}/monitors answered"), ok
    bad = c.test_connection({**exa, "password": WRONG_EXA_KEY})
    assert bad["status"] is False
    assert bad["message"].startswith("Exa API GET /monitors failed with HTTP 401: Invalid API key"), bad
    assert WRONG_EXA_KEY not in bad["message"]

    # the free endpoints, nothing paid
    assert emu.count("GET", "/v1/wallet/balance") == 2 and emu.count("GET", "/monitors") == 2
    assert emu.count("POST") == 0
    for conn_id in ("it_api_monid", "it_api_exa"):
        assert c.get_connection(conn_id) is None  # testing does not store


# ------------------------------------------------------------------------------------ browser
def _assert_form(page, dlg, *, url_placeholder: str, key_placeholder: str | None, extras: dict[str, str]) -> None:
    fields = ui.form_fields(page)
    assert fields["host"]["label"] == "Base URL" and fields["host"]["placeholder"] == url_placeholder, fields
    assert fields["password"]["label"] == "API key" and fields["password"]["type"] == "password", fields
    if key_placeholder is not None:
        assert fields["password"]["placeholder"] == key_placeholder
    for name in HIDDEN:
        assert not dlg.locator(f"[name='{name}']").is_visible(), f"{name} should be hidden"
    ui.expand_section(page, ui.SECTION_EXTRA)
    for name, label in extras.items():
        assert dlg.locator(f"[name='element_{name}']").count() == 1, name
        dlg.get_by_text(label, exact=True).wait_for(state="visible")


@pytest.mark.integration
@pytest.mark.browser
def test_connection_form_in_the_browser(
    airflow_cluster: AirflowCluster, cluster_emulator: ClusterEmulator, ui_page
) -> None:
    c, emu, page = airflow_cluster, cluster_emulator, ui_page
    c.delete_connection("it_ui_monid")

    # --- "Monid", then "Exa" in the same dialog
    dlg = ui.open_add_connection_form(page, c.base_url, "Monid")
    assert ui.section_names(page) == [ui.SECTION_STANDARD, ui.SECTION_EXTRA, ui.SECTION_EXTRA_JSON]
    assert ui.screenshot(dlg, "monid_connection_form").stat().st_size > 10_000
    _assert_form(
        page,
        dlg,
        url_placeholder="https://api.monid.ai",
        key_placeholder="monid_live_...",
        extras={
            "timeout": "Read timeout (s)",
            "max_attempts": "Max attempts per call",
            "max_connections": "Max concurrent requests",
            "batch_status_polling": "Shared status poller",
            "status_page_budget": "Status pages per cycle",
            "app_url": "Monid app URL",
        },
    )
    for name in ("timeout", "max_attempts", "app_url"):
        assert dlg.locator(f"[name='element_{name}']").is_visible(), name
    ui.screenshot(dlg, "monid_connection_form_extra_fields")

    ui.select_connection_type(page, "Exa")
    ui.expand_section(page, ui.SECTION_STANDARD)
    assert ui.screenshot(dlg, "exa_connection_form").stat().st_size > 10_000
    _assert_form(
        page,
        dlg,
        url_placeholder="https://api.exa.ai",
        key_placeholder=None,
        extras={
            "timeout": "Read timeout (s)",
            "max_attempts": "Max attempts per call",
            "search_monitors_path": "Search monitors path",
        },
    )
    assert dlg.get_by_text("/monitors", exact=True).is_visible()  # the enum's default is shown
    assert dlg.locator("[name='element_app_url']").count() == 0  # Monid's extra is gone
    ui.screenshot(dlg, "exa_connection_form_extra_fields")
    page.keyboard.press("Escape")
    dlg.wait_for(state="detached")

    # --- save a monid connection through the form, read it back over the API
    saved = ui.add_connection_via_form(
        page,
        c.base_url,
        "Monid",
        "it_ui_monid",
        standard={"host": emu.url, "password": MONID_KEY},
        extra={"timeout": 10, "max_attempts": 3},
    )
    assert saved.status == 201, saved
    stored = c.get_connection("it_ui_monid")
    assert stored is not None
    assert (stored["conn_type"], stored["host"], stored["port"], stored["password"]) == ("monid", emu.url, None, "***")
    extra = json.loads(stored["extra"])
    assert (extra["timeout"], extra["max_attempts"]) == (10, 3), extra
    assert extra.get("batch_status_polling", True) is True  # the switch's default is the shared poller
    # the stored key is the one typed (GET masks it): test the stored connection as it is
    assert c.test_connection({"connection_id": "it_ui_monid", "conn_type": "monid"})["status"] is True

    # --- the list's Test button. Without a port, 3.3.2 hits apache/airflow#73298
    res = ui.test_connection_in_ui(page, c.base_url, "it_ui_monid")
    if res.http_status == 400:
        assert res.request_body["port"] == 0 and "differs from the stored connection" in res.response["detail"]
        assert (res.ok, res.title) == (False, "Test Connection Failed")
    else:  # a fixed Airflow
        assert res.ok and res.message.startswith("Connected to Monid"), res

    # give the stored connection the port its base URL carries (REST: the form hides the port field)
    port = int(emu.url.rsplit(":", 1)[1])
    r = c.api.patch(
        "/connections/it_ui_monid",
        params={"update_mask": "port"},
        json={"connection_id": "it_ui_monid", "conn_type": "monid", "port": port},
    )
    assert r.status_code == 200, r.text
    res = ui.test_connection_in_ui(page, c.base_url, "it_ui_monid")
    assert (res.http_status, res.ok, res.title) == (200, True, "Test Connection Successful"), res
    assert res.message == "Connected to Monid. Wallet balance: 25.0 USD"
    assert res.request_body["password"] == "***"  # the UI never sends the stored key back
    ui.screenshot(page, "monid_test_connection_success")

    # --- a wrong key, typed into the edit form: the toast shows the API's 401
    ui.open_edit_connection_form(page, c.base_url, "it_ui_monid")
    ui.fill_connection_form(page, standard={"password": WRONG_MONID_KEY})
    edited = ui.save_connection_form(page)
    assert edited.status == 200 and edited.body["port"] == port, edited
    res = ui.test_connection_in_ui(page, c.base_url, "it_ui_monid")
    assert (res.http_status, res.ok, res.title) == (200, False, "Test Connection Failed"), res
    assert res.message.startswith("Monid API GET /v1/wallet/balance failed with HTTP 401: Invalid API key"), res
    assert WRONG_MONID_KEY not in res.message
    ui.screenshot(page, "monid_test_connection_401")

    assert emu.count("GET", "/v1/wallet/balance") >= 3 and emu.count("POST", "/v1/run") == 0
    c.delete_connection("it_ui_monid")
