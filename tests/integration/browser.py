"""Drive the Airflow 3.3 React UI with Playwright (sync API) and the Debian ``chromium``.

No browser download: ``executable_path=/usr/bin/chromium`` (override with ``CHROMIUM_PATH``).
Authentication relies on ``[core] simple_auth_manager_all_admins = True`` (set by the cluster):
``/auth/token/login?next=...`` sets the JWT cookie and redirects.

Selectors were found by trying against 3.3.2 (see README.md, "Browser"):
- Add form: button "Add Connection" -> ``[role=dialog]``; ``input[name=connection_id]``; the type picker
  is a react-select whose placeholder "Select Connection Type" needs ``click(force=True)`` (an
  overlay intercepts normal clicks), then type the *hook name* and press Enter.
- Sections are a single-open accordion: "Standard Fields" (open by default), "Extra Fields",
  "Extra Fields JSON" (buttons; ``aria-expanded``). Opening one closes the others.
- Standard inputs: ``input[name=host|login|password|port|schema]``, ``textarea[name=description]``.
  Extra fields (conn-fields): ``[name=element_<field>]``.
- Extra Fields JSON is a Monaco editor: select-all + Backspace, ``keyboard.insert_text`` of *compact*
  JSON (typing or newlines trigger auto-close/auto-indent), then blur before Save (otherwise the
  first Save click is swallowed).
- There is no Test button in the add/edit form in 3.3.2. "Test Connection" is a per-row icon
  button in the list (``/connections?name_pattern=<id>``); the result is a toast
  ``[data-scope=toast][data-part=root]`` with ``data-type`` success|error, title
  "Test Connection Successful"/"Test Connection Failed" and the hook's message as description.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # playwright is optional for the rest of the suite
    from playwright.sync_api import Browser, Locator, Page

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = REPO_ROOT / "test-artifacts" / "screenshots"
CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
VIEWPORT: Any = {"width": 1400, "height": 1100}
UI_TIMEOUT_MS = 30_000

SECTION_STANDARD = "Standard Fields"
SECTION_EXTRA = "Extra Fields"
SECTION_EXTRA_JSON = "Extra Fields JSON"
STANDARD_FIELDS = ("description", "host", "login", "password", "port", "schema")


def browser_unavailable_reason() -> str | None:
    """None when Playwright and Chromium are usable, else a human-readable reason."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "python package 'playwright' is not installed"
    if not (Path(CHROMIUM_PATH).exists() or shutil.which(CHROMIUM_PATH)):
        return f"chromium not found at {CHROMIUM_PATH} (apt-get install -y chromium, or set CHROMIUM_PATH)"
    return None


@contextlib.contextmanager
def chromium(headless: bool = True) -> Iterator[Browser]:
    """Start Playwright and the system Chromium; yields a Browser."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM_PATH, headless=headless, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Browser) -> Page:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    return page


def login(page: Page, base_url: str, next_path: str = "/connections") -> None:
    """ALL_ADMINS login: sets the JWT cookie and lands on ``next_path``."""
    page.goto(f"{base_url}/auth/token/login?next={base_url}{next_path}", wait_until="networkidle")
    if "/auth/" in page.url and not page.url.endswith(next_path):
        raise AssertionError(f"login redirect did not land on {next_path}: {page.url}")


def goto(page: Page, base_url: str, path: str) -> None:
    """Navigate, logging in first if the page has no cookie yet."""
    if not any(c.get("name", "").startswith("_token") for c in page.context.cookies()):
        login(page, base_url, path)
    else:
        page.goto(f"{base_url}{path}", wait_until="networkidle")


# ----------------------------------------------------------------- screenshots
def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "shot"


def screenshot(target: Page | Locator, name: str, full_page: bool = True) -> Path:
    """Write ``test-artifacts/screenshots/<name>.png`` (page or element) and return the path."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{_slug(name)}.png"
    if hasattr(target, "context"):  # Page
        target.screenshot(path=str(path), full_page=full_page)  # type: ignore[call-arg]
    else:
        target.screenshot(path=str(path))
    return path


# ------------------------------------------------------------------ the form
def dialog(page: Page) -> Locator:
    return page.locator("[role=dialog]")


def select_connection_type(page: Page, hook_name: str) -> None:
    """Pick a type in the react-select by its *hook name* (e.g. "Generic", "File (path)", "Monid")."""
    dlg = dialog(page)
    picker = dlg.get_by_text("Select Connection Type")
    if picker.count():
        picker.click(force=True)  # an overlay div intercepts a normal click
    else:  # a type is already chosen: click the current value
        dlg.locator("input[role=combobox]").last.click(force=True)
    page.keyboard.type(hook_name)
    option = page.get_by_role("option", name=hook_name, exact=True)
    with contextlib.suppress(Exception):
        option.first.wait_for(state="visible", timeout=5000)
    if page.get_by_text("No options").count():
        raise AssertionError(f"connection type {hook_name!r} not offered by the form (provider not registered?)")
    page.keyboard.press("Enter")
    dlg.get_by_role("button", name=SECTION_STANDARD, exact=True).wait_for(state="visible")


def open_add_connection_form(page: Page, base_url: str, hook_name: str | None = None) -> Locator:
    """Open Admin > Connections > Add Connection, optionally pick the type; returns the dialog."""
    goto(page, base_url, "/connections")
    page.get_by_role("button", name="Add Connection").click()
    dlg = dialog(page)
    dlg.wait_for(state="visible")
    if hook_name:
        select_connection_type(page, hook_name)
    return dlg


def open_edit_connection_form(page: Page, base_url: str, conn_id: str) -> Locator:
    row = connection_row(page, base_url, conn_id)
    row.get_by_role("button", name="Edit Connection").click()
    dlg = dialog(page)
    dlg.wait_for(state="visible")
    return dlg


def expand_section(page: Page, name: str) -> Locator:
    """Open one accordion section (the accordion is single-open: this closes the others)."""
    btn = dialog(page).get_by_role("button", name=name, exact=True)
    btn.wait_for(state="visible")
    if btn.get_attribute("aria-expanded") != "true":
        btn.click()
    deadline = time.monotonic() + 10
    while btn.get_attribute("aria-expanded") != "true" and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    return btn


def section_names(page: Page) -> list[str]:
    dlg = dialog(page)
    return [
        n
        for n in (SECTION_STANDARD, SECTION_EXTRA, SECTION_EXTRA_JSON)
        if dlg.get_by_role("button", name=n, exact=True).count()
    ]


def _fill_input(page: Page, loc: Locator, value: Any) -> None:
    loc.wait_for(state="visible")
    tag = loc.evaluate("e => e.tagName.toLowerCase()")
    typ = (loc.get_attribute("type") or "").lower()
    role = loc.get_attribute("role") or ""
    if tag == "select":
        loc.select_option(str(value))
    elif typ in ("checkbox", "radio") or role in ("checkbox", "switch"):
        loc.set_checked(bool(value))
    elif role == "combobox":  # react-select (enum fields)
        loc.click(force=True)
        page.keyboard.type(str(value))
        page.keyboard.press("Enter")
    else:
        loc.fill("" if value is None else str(value))


def form_fields(page: Page) -> dict[str, dict[str, Any]]:
    """Visible inputs of the open section(s): name -> {label, type, placeholder, value}."""
    dlg = dialog(page)
    out: dict[str, dict[str, Any]] = {}
    for el in dlg.locator("input[name], textarea[name], select[name]").all():
        if not el.is_visible():
            continue
        name = el.get_attribute("name") or ""
        el_id = el.get_attribute("id")
        label = ""
        if el_id:
            lab = dlg.locator(f"label[for='{el_id}']")
            if lab.count():
                label = lab.first.inner_text().strip()
        out[name] = {
            "label": label,
            "type": el.get_attribute("type"),
            "placeholder": el.get_attribute("placeholder"),
            "value": el.input_value() if el.evaluate("e => 'value' in e") else None,
        }
    return out


def set_extra_json(page: Page, extra: Mapping[str, Any] | str) -> None:
    """Replace the Monaco "Extra Fields JSON" content with compact JSON."""
    expand_section(page, SECTION_EXTRA_JSON)
    editor = dialog(page).locator(".monaco-editor").first
    editor.wait_for(state="visible")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Backspace")
    text = extra if isinstance(extra, str) else json.dumps(extra)
    page.keyboard.insert_text(" ".join(text.splitlines()))  # no newlines: Monaco would auto-indent


def fill_connection_form(
    page: Page,
    *,
    conn_id: str | None = None,
    standard: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    extra_json: Mapping[str, Any] | str | None = None,
) -> None:
    """Fill an open add/edit dialog. ``standard`` keys: description, host, login, password, port,
    schema. ``extra`` keys: conn-fields names (rendered as ``[name=element_<key>]``)."""
    dlg = dialog(page)
    if conn_id is not None:
        dlg.locator("input[name=connection_id]").fill(conn_id)
    if standard:
        expand_section(page, SECTION_STANDARD)
        for key, value in standard.items():
            _fill_input(page, dlg.locator(f"[name='{key}']").first, value)
    if extra:
        expand_section(page, SECTION_EXTRA)
        for key, value in extra.items():
            _fill_input(page, dlg.locator(f"[name='element_{key}']").first, value)
    if extra_json is not None:
        set_extra_json(page, extra_json)


@dataclass
class SaveResult:
    status: int
    body: Any
    request_body: Any


def save_connection_form(page: Page, timeout_ms: int = UI_TIMEOUT_MS) -> SaveResult:
    """Click Save and return the POST/PATCH /api/v2/connections response; waits for the dialog to close
    on success."""
    dlg = dialog(page)
    dlg.locator("h2, header, [data-part=title]").first.click()  # blur (Monaco commits on blur)
    save = dlg.get_by_role("button", name="Save")

    def is_save(r: Any) -> bool:
        return "/api/v2/connections" in r.url and r.request.method in ("POST", "PATCH") and "/test" not in r.url

    resp = None
    for _attempt in range(2):  # one retry: a click that only blurred a field does not submit
        try:
            with page.expect_response(is_save, timeout=5000 if _attempt == 0 else timeout_ms) as info:
                save.click()
            resp = info.value
            break
        except Exception:
            if _attempt:
                raise
    assert resp is not None
    try:
        body = resp.json()
    except Exception:
        body = resp.text()
    try:
        req = json.loads(resp.request.post_data or "null")
    except ValueError:
        req = resp.request.post_data
    if resp.status < 400:
        dlg.wait_for(state="detached", timeout=timeout_ms)
    return SaveResult(resp.status, body, req)


def add_connection_via_form(
    page: Page,
    base_url: str,
    hook_name: str,
    conn_id: str,
    *,
    standard: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    extra_json: Mapping[str, Any] | str | None = None,
    screenshot_name: str | None = None,
) -> SaveResult:
    open_add_connection_form(page, base_url, hook_name)
    fill_connection_form(page, conn_id=conn_id, standard=standard, extra=extra, extra_json=extra_json)
    if screenshot_name:
        screenshot(dialog(page), screenshot_name)
    return save_connection_form(page)


# ------------------------------------------------------------ list + testing
def connection_row(page: Page, base_url: str, conn_id: str) -> Locator:
    """The list row of a *stored* connection (env AIRFLOW_CONN_* ones are not listed)."""
    goto(page, base_url, f"/connections?name_pattern={conn_id}")
    row = page.locator("table tbody tr").filter(has=page.get_by_text(conn_id, exact=True))
    row.first.wait_for(state="visible")
    return row.first


@dataclass
class UITestResult:
    ok: bool  # toast type == success
    title: str  # "Test Connection Successful" / "Test Connection Failed"
    message: str  # toast description: the hook's message, or e.g. "Bad Request"
    http_status: int
    response: Any  # JSON of POST /api/v2/connections/test
    request_body: Any = field(default=None)


def test_connection_in_ui(page: Page, base_url: str, conn_id: str, timeout_ms: int = 60_000) -> UITestResult:
    """Press the row's "Test Connection" button and read the toast.

    Airflow 3.3.2 pitfall: the UI posts ``port: Number(conn.port)`` = 0 for a connection without a
    port, and the API answers 400 "The host or port to test differs from the stored connection"
    (fixed upstream by apache/airflow#73298). The toast then says "Test Connection Failed / Bad Request".
    """
    row = connection_row(page, base_url, conn_id)
    with page.expect_response(
        lambda r: r.url.endswith("/api/v2/connections/test") and r.request.method == "POST", timeout=timeout_ms
    ) as info:
        row.get_by_role("button", name="Test Connection").click()
    resp = info.value
    try:
        body = resp.json()
    except Exception:
        body = resp.text()
    try:
        req = json.loads(resp.request.post_data or "null")
    except ValueError:
        req = resp.request.post_data
    toasts = page.locator("[data-scope=toast][data-part=root]").filter(has_text="Test Connection")
    if isinstance(body, dict) and body.get("message"):
        toasts = toasts.filter(has_text=str(body["message"]).splitlines()[0][:80])
    toast = toasts.last
    toast.wait_for(state="visible", timeout=timeout_ms)
    title = toast.locator("[data-part=title]").inner_text().strip()
    desc_loc = toast.locator("[data-part=description]")
    message = desc_loc.inner_text().strip() if desc_loc.count() else ""
    return UITestResult(
        ok=toast.get_attribute("data-type") == "success",
        title=title,
        message=message,
        http_status=resp.status,
        response=body,
        request_body=req,
    )
