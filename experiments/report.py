"""Self-contained HTML reports: one page per run, and one combined page for the demo.

Images are embedded as base64 PNG data URIs, so a report is a single file that opens
anywhere (no server, no external assets).
"""
from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path
from typing import Any

from experiments.store import atomic_write_text, format_metric

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;
color:#1d2430;padding:0 1em;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.25em;border-bottom:1px solid #d8dee8;
padding-bottom:.2em;margin-top:1.6em} h3{font-size:1.05em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em;display:block;overflow-x:auto;max-width:100%} td,th{border:1px solid #d8dee8;
padding:.25em .6em;text-align:left} th{background:#eef2f7} td.num{text-align:right;
font-variant-numeric:tabular-nums}
figure{margin:1em 0;display:inline-block;max-width:100%} figure img{max-width:100%;
border:1px solid #e3e7ee} figcaption{font-size:.9em;color:#4a5568;max-width:900px}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:.85em}
.status-complete{color:#19734a} .status-failed{color:#b3261e} .status-running{color:#9a6700}
.status-interrupted{color:#9a6700} .status-not-run{color:#66707f}
.muted{color:#66707f;font-size:.9em}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_esc(title)}</title><style>{_STYLE}</style></head>\n<body>\n{body}\n"
            f"</body></html>\n")


def metrics_table(metrics: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td>{_esc(k)}</td><td class=\"num\">{_esc(format_metric(v))}</td></tr>"
                   for k, v in metrics.items())
    return f"<table class=\"metrics\"><tr><th>metric</th><th>value</th></tr>{rows}</table>"


def _cell(text: str) -> str:
    """A table cell; numbers are shown to 4 significant digits, right-aligned."""
    try:
        number = float(text)
    except ValueError:
        return f"<td>{_esc(text)}</td>"
    shown = text if text.lstrip("-").isdigit() else format_metric(number)
    return f"<td class=\"num\">{_esc(shown)}</td>"


def _csv_table(path: Path) -> str:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return "<p class=\"muted\">(empty table)</p>"
    head = "".join(f"<th>{_esc(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows[1:])
    return f"<table><tr>{head}</tr>{body}</table>"


def figure_html(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img alt=\"{_esc(path.stem)}\" src=\"data:image/png;base64,{data}\">"
            f"<figcaption><b>{_esc(path.stem)}</b>. {_esc(caption)}</figcaption></figure>")


def _manifest(run_path: Path) -> dict:
    manifest = run_path / "manifest.json"
    if not manifest.exists():
        return {"figures": [], "tables": []}
    return json.loads(manifest.read_text(encoding="utf-8"))


def run_sections(run_path: Path, heading_level: int = 2) -> str:
    """Metrics, tables and figures of one run, as HTML sections."""
    h = f"h{heading_level}"
    parts = []
    metrics_path = run_path / "metrics.json"
    if metrics_path.exists():
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        parts.append(f"<{h}>Metrics</{h}>" + metrics_table(metrics))
    manifest = _manifest(run_path)
    for table in manifest.get("tables", []):
        parts.append(f"<{h}>Table: {_esc(table['name'])}</{h}><p>{_esc(table['caption'])}</p>"
                     + _csv_table(run_path / table["file"]))
    if manifest.get("figures"):
        parts.append(f"<{h}>Figures</{h}>")
        parts.extend(figure_html(run_path / f["file"], f["caption"]) for f in manifest["figures"])
    return "\n".join(parts)


def write_run_report(run_path: str | Path, title: str, description: str = "",
                     status: dict | None = None) -> Path:
    """Write ``report.html`` for one run: config, metrics, tables, figures, environment, log."""
    run_path = Path(run_path)
    status = status or {}
    state = status.get("status", "complete")
    lines = description.splitlines()
    parts = [f"<h1>{_esc(title)}</h1>",
             f"<p>{_esc(lines[0]) if lines else ''}</p>",
             f"<p class=\"muted\">Run <code>{_esc(run_path.name)}</code> · status "
             f"<span class=\"status-{_esc(state)}\">{_esc(state)}</span>"
             + (f" · {status['seconds']:.1f} s" if "seconds" in status else "") + "</p>"]
    if len(lines) > 1:
        parts.append(f"<p>{_esc(' '.join(lines[1:]).strip())}</p>")
    parts.append(run_sections(run_path))
    config_path = run_path / "config.yaml"
    if config_path.exists():
        parts.append(f"<h2>Config</h2><pre>{_esc(config_path.read_text(encoding='utf-8'))}</pre>")
    env_path = run_path / "env.json"
    if env_path.exists():
        parts.append(f"<h2>Environment</h2><pre>{_esc(env_path.read_text(encoding='utf-8'))}</pre>")
    log_path = run_path / "run.log"
    if log_path.exists():
        tail = "\n".join(log_path.read_text(encoding="utf-8").splitlines()[-200:])
        parts.append(f"<h2>Log</h2><pre>{_esc(tail)}</pre>")
    return atomic_write_text(run_path / "report.html", _page(title, "\n".join(parts)))


def write_combined_report(path: str | Path, title: str, entries: list[dict]) -> Path:
    """One page over several runs. ``entries``: dicts with ``name``, ``description``,
    ``status`` (``complete``/``failed``/``interrupted``/``not run``), ``seconds``, and
    ``run_path`` and/or ``error`` (a failed or interrupted part links its run directory too)."""
    path = Path(path)
    summary_rows = "".join(
        f"<tr><td><a href=\"#{_esc(e['name'])}\">{_esc(e['name'])}</a></td>"
        f"<td class=\"status-{_esc(e['status'].replace(' ', '-'))}\">{_esc(e['status'])}</td>"
        f"<td class=\"num\">{e.get('seconds', 0.0):.1f}</td><td>{_esc(e.get('description', ''))}</td></tr>"
        for e in entries)
    parts = [f"<h1>{_esc(title)}</h1>",
             ("<table><tr><th>experiment</th><th>status</th><th>seconds</th><th>what it shows</th></tr>"
              f"{summary_rows}</table>")]
    for entry in entries:
        parts.append(f"<h2 id=\"{_esc(entry['name'])}\">{_esc(entry['name'])}</h2>"
                     f"<p>{_esc(entry.get('description', ''))}</p>")
        if entry.get("run_path"):
            run_path = Path(entry["run_path"])
            try:
                link = run_path.relative_to(path.parent)
            except ValueError:
                link = run_path
            # a failed or interrupted run has no report.html: link its directory instead
            target = f"{link}/report.html" if (run_path / "report.html").exists() else f"{link}/"
            parts.append(f"<p class=\"muted\">Full run: <a href=\"{_esc(target)}\">"
                         f"{_esc(link)}</a></p>")
            parts.append(run_sections(run_path, heading_level=3))
        if entry.get("error"):
            parts.append(f"<pre class=\"status-failed\">{_esc(entry['error'])}</pre>")
    return atomic_write_text(path, _page(title, "\n".join(parts)))
