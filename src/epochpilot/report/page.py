"""Building blocks of the self-contained HTML pages: CSS, the load-error recorder, cards, tables, images.

No external URL is ever emitted: images are base64 data URIs, styles and the one script are inline.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["esc", "fmt", "img", "kv_table", "page", "table"]

CSS = """
:root{--bg:#f4f5f7;--card:#fff;--ink:#111827;--muted:#6b7280;--line:#e5e7eb;--accent:#2563eb;
--good:#059669;--warn:#d97706;--bad:#dc2626;--grey:#6b7280}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 -apple-system,BlinkMacSystemFont,
"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif;-webkit-font-smoothing:antialiased}
main{max-width:1240px;margin:0 auto;padding:28px 24px 48px}
header.top{display:flex;flex-wrap:wrap;align-items:flex-end;justify-content:space-between;gap:12px;
margin-bottom:22px}
header.top h1{margin:0;font-size:28px;letter-spacing:-.02em}
header.top .sub{color:var(--muted);font-size:13px;margin-top:2px;word-break:break-all}
.brand{font-size:12px;font-weight:600;letter-spacing:.08em;text-transform:uppercase;color:var(--accent)}
.pill{display:inline-block;padding:5px 12px;border-radius:999px;font-weight:600;font-size:13px;
color:#fff;background:var(--grey)}
.pill.good_fit{background:var(--good)}.pill.overfitting{background:var(--warn)}
.pill.underfitting{background:#2563eb}.pill.diverged{background:var(--bad)}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(250px,1fr));gap:16px;margin-bottom:16px}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:16px;margin-bottom:16px}
.wide{grid-column:1/-1}
.card{background:var(--card);border:1px solid var(--line);border-radius:14px;padding:18px 20px;
box-shadow:0 1px 2px rgba(16,24,40,.04)}
.card h2{margin:0 0 10px;font-size:12px;font-weight:600;letter-spacing:.07em;text-transform:uppercase;
color:var(--muted)}
.card h3{margin:14px 0 6px;font-size:14px}
.kpi{font-size:30px;font-weight:700;letter-spacing:-.02em;line-height:1.15}
.kpi small{font-size:15px;color:var(--muted);font-weight:500}
.note{color:var(--muted);font-size:13px}
.bar{height:8px;background:var(--line);border-radius:99px;overflow:hidden;margin:10px 0 8px}
.bar>span{display:block;height:100%;background:linear-gradient(90deg,#60a5fa,#2563eb)}
.chip{display:inline-block;padding:1px 8px;border-radius:6px;background:#eef2ff;color:#3730a3;
font:12px/1.6 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
figure{margin:0}figure img{width:100%;height:auto;display:block;border-radius:8px}
figcaption{color:var(--muted);font-size:12.5px;margin-top:6px}
table{border-collapse:collapse;width:100%;font-size:13.5px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
td.num{font-variant-numeric:tabular-nums;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
tr:last-child td{border-bottom:0}
table.kv td:first-child{color:var(--muted);width:45%}
.cfg{display:grid;grid-template-columns:repeat(auto-fit,minmax(270px,1fr));gap:4px 24px}
tr.best td{background:#ecfdf5}
ul.advice{margin:0;padding:0;list-style:none}
ul.advice li{padding:10px 12px 10px 38px;margin-bottom:8px;background:#f8fafc;border-radius:10px;
position:relative}
ul.advice li:before{content:"→";position:absolute;left:14px;top:9px;color:var(--accent);font-weight:700}
.diag{font-size:14px;margin:0 0 12px}
.swatch{display:inline-block;width:10px;height:10px;border-radius:3px;margin-right:6px}
pre{background:#0f172a;color:#e2e8f0;padding:14px 16px;border-radius:10px;overflow:auto;font-size:12.5px;
line-height:1.45}
details summary{cursor:pointer;color:var(--accent);font-size:13px;margin-top:8px}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:28px}
@media (max-width:560px){.plots{grid-template-columns:1fr}main{padding:16px 12px}}
"""

# Records load errors (script errors, resources that fail, console.error) on <html data-errors="N">, and
# images that did not decode, so a headless browser (or a person) can check that the page loaded cleanly.
ERROR_RECORDER = """
(function(){var errs=[],root=document.documentElement;root.setAttribute('data-errors','0');
function rec(m){errs.push(String(m));root.setAttribute('data-errors',String(errs.length));
var el=document.getElementById('ep-errors');if(el){el.textContent=errs.join('\\n');}}
window.addEventListener('error',function(e){var t=e.target;rec(e.message||('failed to load '+
((t&&(t.src||t.href))||'a resource')));},true);
window.addEventListener('unhandledrejection',function(e){rec('unhandled rejection: '+e.reason);});
var ce=console.error;console.error=function(){rec(Array.prototype.join.call(arguments,' '));
return ce.apply(console,arguments);};
window.addEventListener('load',function(){var imgs=document.images;for(var i=0;i<imgs.length;i++){
if(!imgs[i].complete||imgs[i].naturalWidth===0){rec('image did not decode: '+imgs[i].alt);}}
var el=document.getElementById('ep-errors');if(el){el.textContent=errs.join('\\n');}
root.setAttribute('data-loaded','1');});})();
"""


def esc(x: Any) -> str:
    """HTML-escape ``str(x)``."""
    return html.escape(str(x), quote=True)


def fmt(x: Any, digits: int = 4) -> str:
    """A number as people read it: ints with separators, floats to ``digits`` significant figures."""
    if isinstance(x, bool) or x is None:
        return "—" if x is None else str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
            return f"{x:.{digits - 1}e}"
        return f"{x:.{digits}g}"
    return str(x)


def duration(seconds: Any) -> str:
    """``83.2`` -> ``"1 min 23 s"``; under a second in ms (``0.0194`` -> ``"19 ms"``)."""
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.2g} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s} s" if m < 60 else f"{m // 60} h {m % 60} min"


def img(png: bytes, alt: str) -> str:
    """An <img> holding ``png`` as a base64 data URI."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def table(
    head: Iterable[str] | None,
    rows: Iterable[Iterable[Any]],
    best_row: int | None = None,
    cls: str = "",
) -> str:
    """A table; numbers are formatted in tabular digits; row ``best_row`` is highlighted."""
    out = [f'<table class="{cls}">']
    if head is not None:
        out += ["<thead><tr>", *(f"<th>{esc(h)}</th>" for h in head), "</tr></thead>"]
    out.append("<tbody>")
    for i, row in enumerate(rows):
        out.append('<tr class="best">' if i == best_row else "<tr>")
        for cell in row:
            if isinstance(cell, (int, float)) and not isinstance(cell, bool):
                out.append(f'<td class="num">{esc(fmt(cell))}</td>')
            elif isinstance(cell, Raw):
                out.append(f"<td>{cell}</td>")
            else:
                out.append(f"<td>{esc('—' if cell is None else cell)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


class Raw(str):
    """A string of trusted HTML that ``table`` must not escape."""


def kv_table(items: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> str:
    """A two-column key/value table."""
    pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
    return table(None, pairs, cls="kv")


def flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dict -> [("table.key", value)], lists shown inline."""
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out += flatten(v, key + ".")
        elif isinstance(v, list):
            out.append((key, ", ".join(map(str, v)) if len(str(v)) < 200 else f"[{len(v)} items]"))
        else:
            out.append((key, v))
    return out


def page(title: str, body: str) -> str:
    """A complete, self-contained HTML document."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style><script>{ERROR_RECORDER}</script></head>"
        f'<body><main>{body}</main><pre id="ep-errors" hidden></pre></body></html>\n'
    )
