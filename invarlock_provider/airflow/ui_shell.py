"""The frame every InvarLock page of the Airflow UI shares: Airflow's look, one script, strict CSP.

The pages are server-rendered HTML opened in the UI's frames. They take Airflow's colours, fonts
and timezone from the frame around them through ``static/invarlock.js``, the only script any page
loads: the Content-Security-Policy names its sha256 (with the matching ``integrity`` attribute), so
nothing inline and nothing from a bundle ever runs. Without the script (opened on its own, or
blocked) a page still reads in light or dark, from ``prefers-color-scheme``, and shows times in UTC.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from functools import cache
from pathlib import Path

from invarlock_provider.reporting.text import esc

SCRIPT_FILE = Path(__file__).with_name("static") / "invarlock.js"
SCRIPT_ROUTE = "/static/invarlock.js"
TIMEZONE_COOKIE = "invarlock_tz"

LIGHT = (
    "--il-bg:#fff;--il-surface:#fff;--il-subtle:oklch(0.985 0.004 253);--il-muted-bg:oklch(0.955 0.006 253);"
    "--il-fg:oklch(0.232 0.032 266.4);--il-muted:oklch(0.45 0.055 251);--il-border:oklch(0.915 0.01 253);"
    "--il-pass:oklch(0.47 0.2 149);--il-fail:oklch(0.577 0.237 25.3);--il-warn:oklch(0.58 0.13 70);"
    "--il-accent:oklch(0.546 0.245 262.9);color-scheme:light"
)
DARK = (
    "--il-bg:oklch(0.232 0.032 266.4);--il-surface:oklch(0.11 0.025 251);--il-subtle:oklch(0.11 0.025 251);"
    "--il-muted-bg:oklch(0.18 0.03 251);--il-fg:oklch(0.985 0.004 253);--il-muted:oklch(0.75 0.025 252);"
    "--il-border:oklch(0.28 0.035 251);--il-pass:oklch(0.75 0.18 153);--il-fail:oklch(0.704 0.191 22.2);"
    "--il-warn:oklch(0.75 0.15 60);--il-accent:oklch(0.707 0.165 254.6);color-scheme:dark"
)
SHELL_CSS = (
    f":root{{{LIGHT};--il-font:Inter,-apple-system,BlinkMacSystemFont,'Segoe UI',Helvetica,Arial,sans-serif;"
    "--il-mono:SFMono-Regular,Menlo,Monaco,Consolas,'Liberation Mono',monospace;"
    "--il-band:color-mix(in oklch,var(--il-accent) 22%,transparent);--il-grid:var(--il-border)}"
    f":root[data-theme=dark]{{{DARK}}}"
    f"@media (prefers-color-scheme:dark){{:root:not([data-theme=light]){{{DARK}}}}}"
    """
body{margin:0;background:var(--il-bg);color:var(--il-fg);font:14px/1.5 var(--il-font)}
main{padding:12px 16px 32px;max-width:none;margin:0;box-sizing:border-box;overflow-wrap:anywhere}
h1{font-size:18px;font-weight:600;margin:0 0 10px}h2{font-size:16px;font-weight:600;margin:22px 0 8px}
h3{font-size:14px;margin:16px 0 6px}a{color:var(--il-accent)}p{margin:8px 0}
table{border-collapse:collapse;width:100%;background:var(--il-surface);border:1px solid var(--il-border)}
th,td{padding:6px 10px;border-bottom:1px solid var(--il-border);text-align:left;vertical-align:top;font-size:13px}
th{background:var(--il-muted-bg);font-weight:600}
code,pre{font:12px/1.5 var(--il-mono)}td code{word-break:break-all}
.wide{overflow-x:auto;max-width:100%}
.PASS,td.PASS,.ok{color:var(--il-pass);font-weight:600}.FAIL,td.FAIL,.bad{color:var(--il-fail);font-weight:600}.INSUFFICIENT,td.INSUFFICIENT,.unsure{color:var(--il-warn);font-weight:600}
.muted{color:var(--il-muted)}
.il-note{border:1px solid var(--il-border);border-left:4px solid var(--il-muted);background:var(--il-surface);
padding:10px 14px;border-radius:6px;margin:0 0 12px}
.il-error{border-left-color:var(--il-fail)}.il-error .status{color:var(--il-fail);font-weight:700;margin-right:8px}
.il-nav{display:flex;flex-wrap:wrap;gap:6px 14px;margin:0 0 12px;font-size:13px}
.il-command{display:flex;gap:8px;align-items:flex-start;margin:6px 0}
.il-command pre{flex:1;margin:0;padding:8px 10px;background:var(--il-muted-bg);border:1px solid var(--il-border);
border-radius:6px;white-space:pre-wrap;word-break:break-all}
button,.button{font:inherit;font-size:13px;color:var(--il-fg);background:var(--il-muted-bg);
border:1px solid var(--il-border);border-radius:6px;padding:4px 12px;cursor:pointer;text-decoration:none}
.button.primary{background:var(--il-accent);border-color:var(--il-accent);color:var(--il-bg)}
select,input{font:inherit;font-size:13px;color:var(--il-fg);background:var(--il-surface);
border:1px solid var(--il-border);border-radius:6px;padding:3px 6px}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:0 10px;margin:0}dl.kv dt{color:var(--il-muted)}
dl.kv dd{margin:0}
@media (max-width:640px){main{padding:10px 10px 24px}
table.cards,table.cards tbody{display:block;border:0;background:none}
table.cards thead{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
table.cards tr{display:block;background:var(--il-surface);border:1px solid var(--il-border);border-radius:6px;
margin:0 0 8px;padding:6px 0}
table.cards td{display:block;border:0;padding:2px 10px}
table.cards td[data-label]::before{content:attr(data-label) ": ";color:var(--il-muted);font-weight:400}
table:not(.cards){display:block;overflow-x:auto}}
"""
)


@cache
def script_integrity() -> str:
    """``sha256-<base64>`` of the script: its ``integrity`` attribute and its CSP source."""
    digest = hashlib.sha256(SCRIPT_FILE.read_bytes()).digest()
    return "sha256-" + base64.b64encode(digest).decode()


def page_csp() -> str:
    return (
        f"default-src 'none'; script-src '{script_integrity()}'; style-src 'unsafe-inline'; img-src data:; "
        "form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
    )


@dataclass(frozen=True)
class Shell:
    """What every page of one request is drawn with: the app's URL root and the viewer's timezone."""

    root: str
    tz: tzinfo = UTC

    @property
    def airflow(self) -> str:
        """The Airflow UI's own URL root: this app is mounted one segment below it."""
        return self.root.rsplit("/", 1)[0] if self.root else ""

    @property
    def tz_name(self) -> str:
        return getattr(self.tz, "key", None) or str(self.tz)

    def time(self, moment: datetime, with_zone: bool = True) -> str:
        local = moment.astimezone(self.tz)
        return f"{local:%Y-%m-%d %H:%M}" + (f" {local:%Z}" if with_zone else "")

    def page(self, title: str, body: str, css: str = "") -> str:
        """``title`` is the browser tab's, ``css`` the page's own rules over the shared ones."""
        return (
            f'<!doctype html><html lang="en" data-tz="{esc(self.tz_name)}" data-root="{esc(self.root or "/")}">'
            '<head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{esc(title)}</title><style>{SHELL_CSS}{css}</style>"
            f'<script src="{esc(self.root)}{SCRIPT_ROUTE}" integrity="{script_integrity()}" defer></script>'
            f"</head><body><main>{body}</main></body></html>"
        )

    def error(self, status: int, message: str) -> str:
        """An error is a page of the UI too: styled, with the way back, never bare text."""
        body = (
            f'<section class="il-note il-error" data-status="{status}"><span class="status">{status}</span>'
            f'<span class="message">{esc(message)}</span></section>'
            f'<p class="muted"><a href="{esc(self.root)}/evidence">All evidence</a></p>'
        )
        return self.page(f"InvarLock: error {status}", body)


def viewer_timezone(name: str | None) -> tzinfo:
    """The timezone the Airflow UI shows (the script sends it as a cookie); UTC for anything else."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not name or len(name) > 64:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC
