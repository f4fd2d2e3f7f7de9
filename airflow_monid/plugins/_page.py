"""The "Monid spend" page: server-rendered HTML (escaped f-strings) with an inline SVG chart.

No JavaScript bundle: two small inline scripts only follow Airflow's colour mode (light/dark) and,
on the sign-in step, copy the Airflow UI's token into a cookie of this page's path.
"""

from __future__ import annotations

from datetime import date, timedelta
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from airflow_monid.plugins._auth import PAGE_COOKIE

_CSS = """
:root{--bg:#ffffff;--fg:#1a202c;--muted:#5a6473;--line:#d9dee5;--card:#f6f8fa;--accent:#2b6cb0;
--bar:#3182ce;--warn-bg:#fff7e0;--warn-fg:#744210;--bad:#c53030;color-scheme:light}
:root[data-theme=dark]{--bg:#1a1d23;--fg:#e2e8f0;--muted:#a0aec0;--line:#3a404a;--card:#242830;
--accent:#90cdf4;--bar:#63b3ed;--warn-bg:#3d3320;--warn-fg:#fbd38d;--bad:#feb2b2;color-scheme:dark}
@media (prefers-color-scheme:dark){:root:not([data-theme=light]){--bg:#1a1d23;--fg:#e2e8f0;--muted:#a0aec0;
--line:#3a404a;--card:#242830;--accent:#90cdf4;--bar:#63b3ed;--warn-bg:#3d3320;--warn-fg:#fbd38d;--bad:#feb2b2;
color-scheme:dark}}
*{box-sizing:border-box}body{margin:0;padding:16px 20px;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1280px}
h1{font-size:20px;margin:0 0 12px}h2{font-size:16px;margin:22px 0 8px}a{color:var(--accent)}
form{display:flex;flex-wrap:wrap;gap:10px;align-items:end;margin-bottom:12px}
label{display:flex;flex-direction:column;font-size:12px;color:var(--muted)}
input,select,button{font:inherit;padding:4px 8px;border:1px solid var(--line);border-radius:6px;
background:var(--card);color:var(--fg)}button{cursor:pointer}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.card .v{font-size:20px;font-weight:600}.card .l{font-size:12px;color:var(--muted)}
.notice{background:var(--warn-bg);color:var(--warn-fg);border-radius:6px;padding:8px 12px;margin:6px 0}
table{border-collapse:collapse;width:100%;margin-bottom:6px}th,td{text-align:left;padding:5px 8px;
border-bottom:1px solid var(--line);vertical-align:top}th{font-size:12px;color:var(--muted);font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}.grid2{display:grid;
grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:0 24px}.muted{color:var(--muted)}
.bad{color:var(--bad)}svg text{fill:var(--muted);font-size:10px}svg .bar{fill:var(--bar)}
svg .axis{stroke:var(--line)}.empty{padding:24px;text-align:center;color:var(--muted);
border:1px dashed var(--line);border-radius:8px}
"""

_THEME_JS = """
(function(){var d=document.documentElement;function pick(){var t=null;try{var p=window.parent.document.documentElement;
if(p!==d){if(p.classList.contains('dark'))t='dark';else if(p.classList.contains('light'))t='light';}}catch(e){}
if(!t){try{var s=localStorage.getItem('theme');if(s==='dark'||s==='light')t=s;}catch(e){}}
if(t)d.setAttribute('data-theme',t);else d.removeAttribute('data-theme');}pick();
try{if(window.parent!==window)new MutationObserver(pick).observe(window.parent.document.documentElement,
{attributes:true,attributeFilter:['class','style']});}catch(e){}})();
"""


def _money(value: Any, currency: str) -> str:
    if value is None:
        return "-"
    amount = float(value)
    text = f"{amount:,.2f}" if abs(amount) >= 0.01 or amount == 0 else f"{amount:,.6f}".rstrip("0")
    return f"{text} {escape(currency)}"


def _head(title: str) -> str:
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width,initial-scale=1'><title>{escape(title)}</title>"
        f"<style>{_CSS}</style><script>{_THEME_JS}</script></head><body>"
    )


def sign_in_page(base_path: str, message: str) -> str:
    """Answered with 401 when no credential came with the request. Airflow 3.0's UI keeps its token
    in ``localStorage``: this page copies it into a cookie for this page's path and reloads once."""
    login = f"{base_path}/auth/login?next=" + quote(f"{base_path}/monid/spend", safe="")
    cookie_path = f"{base_path}/monid/"
    script = (
        "(function(){var t=null;try{t=localStorage.getItem('token');}catch(e){}"
        "var k='monid_spend_retry';if(t&&!sessionStorage.getItem(k)){sessionStorage.setItem(k,'1');"
        f"document.cookie='{PAGE_COOKIE}='+t+'; path={cookie_path}; SameSite=Strict';location.reload();}}"
        "else{sessionStorage.removeItem(k);}})();"
    )
    return (
        _head("Monid spend: sign in")
        + f"<h1>Monid spend</h1><p class=notice>{escape(message)}</p>"
        + f"<p><a href='{escape(login)}' target=_top>Sign in to Airflow</a>, then open this page again.</p>"
        + f"<script>{script}</script></body></html>"
    )


def refused_page(message: str) -> str:
    return _head("Monid spend: no access") + f"<h1>Monid spend</h1><p class=notice>{escape(message)}</p></body></html>"


def _chart(days: list[dict[str, Any]], start: date, end: date, currency: str) -> str:
    by_day = {g["key"]: g for g in days}
    n = (end - start).days + 1
    width, height, left, bottom = 960, 180, 56, 22
    plot_w, plot_h = width - left - 8, height - bottom - 10
    top = max((g["cost"] for g in days), default=0.0) or 1.0
    step = plot_w / n
    bars = []
    labels = []
    every = max(1, n // 10)
    for i in range(n):
        day = start + timedelta(days=i)
        g = by_day.get(day.isoformat())
        x = left + i * step
        if g and g["cost"] > 0:
            h = max(1.0, plot_h * g["cost"] / top)
            tip = f"{day}: {_money(g['cost'], currency)}, {g['runs']} runs"
            bars.append(
                f"<rect class=bar x='{x + step * 0.1:.1f}' y='{10 + plot_h - h:.1f}' "
                f"width='{max(1.0, step * 0.8):.1f}' height='{h:.1f}'><title>{escape(tip)}</title></rect>"
            )
        elif g:
            bars.append(
                f"<rect class=bar x='{x + step * 0.1:.1f}' y='{10 + plot_h - 1:.1f}' "
                f"width='{max(1.0, step * 0.8):.1f}' height='1'><title>{escape(str(day))}: "
                f"{g['runs']} runs, no cost</title></rect>"
            )
        if i % every == 0:
            labels.append(f"<text x='{x + step / 2:.1f}' y='{height - 6}' text-anchor=middle>{day:%m-%d}</text>")
    axis = (
        f"<line class=axis x1='{left}' y1='{10 + plot_h}' x2='{width - 8}' y2='{10 + plot_h}'/>"
        f"<text x='{left - 4}' y='16' text-anchor=end>{escape(_money(top, currency))}</text>"
        f"<text x='{left - 4}' y='{10 + plot_h}' text-anchor=end>0</text>"
    )
    return (
        f"<svg role=img aria-label='Spend per day in {escape(currency)}' viewBox='0 0 {width} {height}' "
        f"width='100%' preserveAspectRatio='xMidYMid meet'>{axis}{''.join(bars)}{''.join(labels)}</svg>"
    )


def _group_table(title: str, groups: list[dict[str, Any]], currency: str, link: Any = None, limit: int = 50) -> str:
    if not groups:
        return ""
    rows = []
    for g in groups[:limit]:
        key = escape(g["key"])
        if link is not None:
            key = f"<a href='{escape(link(g['key']))}'>{key}</a>"
        bad = " class='n bad'" if g["undelivered_cost"] > 0 else " class=n"
        rows.append(
            f"<tr><td>{key}</td><td class=n>{g['runs']:,}</td><td class=n>{_money(g['cost'], currency)}</td>"
            f"<td{bad}>{_money(g['undelivered_cost'], currency)}</td></tr>"
        )
    more = f"<p class=muted>{len(groups) - limit} more not shown.</p>" if len(groups) > limit else ""
    return (
        f"<div><h2>{escape(title)}</h2><table><thead><tr><th></th><th class=n>runs</th><th class=n>cost</th>"
        f"<th class=n>failed or no data</th></tr></thead><tbody>{''.join(rows)}</tbody></table>{more}</div>"
    )


def _ti_link(base_path: str, run: dict[str, Any]) -> str:
    path = (
        f"{base_path}/dags/{quote(run['dag_id'], safe='')}/runs/{quote(run['dag_run_id'], safe='')}"
        f"/tasks/{quote(run['task_id'], safe='')}"
    )
    if run.get("map_index") is not None and run["map_index"] >= 0:
        path += f"/mapped/{run['map_index']}"
    return path


def _top_table(top: list[dict[str, Any]], base_path: str, app_urls: dict[str, str]) -> str:
    if not top:
        return ""
    rows = []
    for r in top:
        currency = r.get("currency") or "USD"
        ti = escape(_ti_link(base_path, r))
        task = escape(f"{r['dag_id']}.{r['task_id']}") + (f"[{r['map_index']}]" if r.get("map_index", -1) >= 0 else "")
        run_id = str(r.get("monid_run_id") or "")
        app = app_urls.get(str(r.get("conn_id") or "")) if r.get("api") == "monid" else None
        run_cell = (
            f"<a href='{escape(app)}/runs/{escape(quote(run_id, safe=''))}' target=_blank rel=noopener>"
            f"{escape(run_id)}</a>"
            if app
            else escape(run_id)
        )
        est = (
            " <span class=muted title='price bound: the run reported no cost'>(estimate)</span>"
            if r.get("estimated")
            else ""
        )
        monid = r.get("monid_cost")
        differs = monid is not None and abs(float(monid) - float(r.get("cost") or 0)) > 1e-6
        monid_cell = _money(monid, currency) if monid is not None else "<span class=muted>not listed</span>"
        rows.append(
            f"<tr><td><a href='{ti}' target=_top>{task}</a><div class=muted>try {escape(str(r.get('try') or '?'))}, "
            f"{escape(str(r.get('created_at') or ''))}</div></td><td>{run_cell}<div class=muted>"
            f"{escape(str(r.get('provider') or ''))} {escape(str(r.get('endpoint') or ''))}</div></td>"
            f"<td>{escape(str(r.get('status') or ''))}</td><td class=n>{_money(r.get('cost'), currency)}{est}</td>"
            f"<td class='n{' bad' if differs else ''}'>{monid_cell}</td></tr>"
        )
    return (
        "<h2>Ten costliest runs</h2><table><thead><tr><th>task instance</th><th>Monid run</th><th>status</th>"
        "<th class=n>recorded cost</th><th class=n>Monid's cost</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _workspace(report: dict[str, Any]) -> str:
    recon = report.get("reconciliation")
    if not recon:
        return ""
    parts = []
    for c in recon["connections"]:
        if "wallet" not in c:
            continue
        items = []
        wallet = c.get("wallet")
        if wallet:
            held = (
                f", {_money(wallet['held'], wallet['currency'])} held for runs in flight" if wallet.get("held") else ""
            )
            items.append(f"<li>Wallet balance: <b>{_money(wallet['balance'], wallet['currency'])}</b>{held}</li>")
        elif c.get("wallet_error"):
            items.append(f"<li class=muted>Wallet balance unavailable: {escape(c['wallet_error'])}</li>")
        for b in c.get("budgets") or []:
            used = (
                f"{_money(b['used'], b['currency'])} of {_money(b['limit'], b['currency'])}"
                if b.get("limit") is not None
                else _money(b.get("used"), b["currency"])
            )
            pct = f" ({b['used_fraction'] * 100:.1f} %)" if b.get("used_fraction") is not None else ""
            period = f", {escape(b['period'].lower())}" if b.get("period") else ""
            items.append(f"<li>Budget {escape(b['name'])}{period}: {used} used{pct}</li>")
        if c.get("budgets_error"):
            items.append(f"<li class=muted>Budgets: {escape(c['budgets_error'])}</li>")
        if items:
            parts.append(
                f"<div class=card><div class=l>connection {escape(c['conn_id'])}</div><ul>{''.join(items)}</ul></div>"
            )
    wide = "<div class=cards style='grid-template-columns:repeat(auto-fill,minmax(320px,1fr))'>"
    return ("<h2>Workspace</h2>" + wide + "".join(parts) + "</div>") if parts else ""


def _mismatches(report: dict[str, Any]) -> str:
    recon = report.get("reconciliation")
    if not recon or not recon["mismatches"]:
        return ""
    rows = "".join(
        f"<tr><td>{escape(m['monid_run_id'])}</td><td>{escape(m['dag_id'])}</td>"
        f"<td class=n>{_money(m['recorded'], m['recorded_currency'])}</td>"
        f"<td class='n bad'>{_money(m['monid'], m['monid_currency'])}</td></tr>"
        for m in recon["mismatches"]
    )
    return (
        "<h2>Recorded cost differs from Monid's</h2><table><thead><tr><th>Monid run</th><th>DAG</th>"
        f"<th class=n>recorded</th><th class=n>Monid</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def render_page(
    data: dict[str, Any],
    *,
    base_path: str,
    dag_choices: list[str],
    app_urls: dict[str, str],
    embed: bool,
) -> str:
    report = data["report"]
    start, end = date.fromisoformat(report["start"]), date.fromisoformat(report["end"])
    dag_id = report.get("dag_id")
    title = f"Monid spend: {dag_id}" if dag_id else "Monid spend"
    options = "".join(
        f"<option value='{escape(d)}'{' selected' if d == dag_id else ''}>{escape(d)}</option>" for d in dag_choices
    )
    hidden = "<input type=hidden name=embed value=1>" if embed else ""
    dag_field = (
        f"<input type=hidden name=dag_id value='{escape(dag_id)}'>"
        if embed and dag_id
        else f"<label>DAG<select name=dag_id><option value=''>all DAGs</option>{options}</select></label>"
    )
    form = (
        f"<form method=get><label>from (UTC)<input type=date name=start value='{start}'></label>"
        f"<label>to (UTC, included)<input type=date name=end value='{end}'></label>{dag_field}{hidden}"
        "<button type=submit>Show</button>"
        f"<a class=muted href='{escape(_api_link(base_path, report))}'>JSON</a></form>"
    )
    notices = "".join(f"<div class=notice role=status>{escape(n)}</div>" for n in report["notices"])
    body = [f"<h1>{escape(title)}</h1>", form, notices]
    blocks = [report, *report["other_currencies"]]
    for block in blocks:
        currency = block["currency"]
        reused = block.get("reused") or {"runs": 0, "saved": 0.0}
        if block["runs"] == 0 and not (block.get("unattributed") or {}).get("runs") and not reused["runs"]:
            body.append(
                f"<div class=empty>No Monid spend recorded from {start} to {end}"
                f"{' for DAG ' + escape(dag_id) if dag_id else ''}. Currency: {escape(currency)}.</div>"
            )
            continue
        cards = [
            ("total", _money(block["total"], currency)),
            ("runs", f"{block['runs']:,}"),
            ("failed or no data", _money(block["undelivered_cost"], currency)),
            ("of which estimated", _money(block["estimated"], currency)),
        ]
        if block.get("monid_cost_of_recorded") is not None and report.get("reconciliation"):
            cards.append(("Monid's cost of these runs", _money(block["monid_cost_of_recorded"], currency)))
        if block.get("unattributed") is not None and not dag_id:
            u = block["unattributed"]
            cards.append((f"unattributed ({u['runs']} runs)", _money(u["cost"], currency)))
        if reused["runs"]:
            cards.append(
                (f"saved by reuse_results ({reused['runs']:,} results reused)", _money(reused["saved"], currency))
            )
        if block.get("uncosted_runs"):
            cards.append(("runs with no cost reported (Exa)", f"{block['uncosted_runs']:,}"))
        heading = f"<h2>Currency {escape(currency)}</h2>" if len(blocks) > 1 else ""
        body.append(
            heading
            + "<div class=cards>"
            + "".join(f"<div class=card><div class=v>{v}</div><div class=l>{escape(k)}</div></div>" for k, v in cards)
            + "</div>"
        )
        days = data["by"]["day"].get(currency, {}).get("groups", [])
        body.append(f"<h2>Per day ({escape(currency)})</h2>" + _chart(days, start, end, currency))
        tables = [
            _group_table(
                "Per DAG",
                data["by"]["dag"].get(currency, {}).get("groups", []),
                currency,
                link=lambda key: _page_link(base_path, report, key, embed),
            )
            if not dag_id
            else "",
            _group_table("Per task", data["by"]["task"].get(currency, {}).get("groups", []), currency),
            _group_table("Per endpoint", data["by"]["endpoint"].get(currency, {}).get("groups", []), currency),
        ]
        body.append("<div class=grid2>" + "".join(tables) + "</div>")
    top = data["top"]
    body.append(_top_table(top, base_path, app_urls))
    body.append(_mismatches(report))
    body.append(_workspace(report))
    body.append(
        "<p class=muted>Days are UTC days of each run's createdAt. Costs are what each run reports "
        "(billing or cost); an estimate is the endpoint's price when the run reported none. "
        f"Monid's own figures are read at most every {report['reconciliation']['cache_seconds']:.0f} s."
        "</p>"
        if report.get("reconciliation")
        else ""
    )
    return _head(title) + "".join(body) + "</body></html>"


def _page_link(base_path: str, report: dict[str, Any], dag_id: str, embed: bool) -> str:
    params = {"start": report["start"], "end": report["end"], "dag_id": dag_id}
    if embed:
        params["embed"] = "1"
    return f"{base_path}/monid/spend?{urlencode(params)}"


def _api_link(base_path: str, report: dict[str, Any]) -> str:
    params = {"start": report["start"], "end": report["end"], "group_by": "dag"}
    if report.get("dag_id"):
        params["dag_id"] = report["dag_id"]
    return f"{base_path}/monid/api/v1/spend?{urlencode(params)}"
