"""The sweep report: ``report.html`` beside ``sweep.parquet``, one self-contained page.

It shows the counts, the metric-vs-parameter figures and the table (failed points with
their errors first). Figures, per numeric metric (at most ``MAX_METRICS``):

* one swept parameter: a line of the mean over repeats with a +-1 standard deviation
  band (and the individual repeats as dots);
* two swept parameters on a grid: a heatmap of the mean (values written in the cells
  when the grid is small);
* more parameters, or random sampling: one panel per parameter with every point as a dot
  and, for grid values, the mean over everything else as a line.

Figures are also written as PNG files under ``figures/``. Matplotlib is used through
``Figure`` objects (no pyplot, no global state).
"""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

from experiments.store import atomic_write_bytes, atomic_write_text, format_metric
from experiments.sweep.table import load_frame

MAX_METRICS = 12
MAX_TABLE_ROWS = 500
_STYLE = ("body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1150px;padding:0 1em;"
          "color:#1d2430}table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #d8dee8;"
          "padding:.2em .5em}th{background:#eef2f7}td.num{text-align:right;font-variant-numeric:"
          "tabular-nums}figure{display:inline-block;margin:.5em}img{max-width:100%}"
          ".failed{color:#b3261e}.complete{color:#19734a}.pending{color:#9a6700}pre{background:#f6f8fa;"
          "padding:.6em;font-size:.8em;overflow-x:auto}")


def _esc(value) -> str:
    return html.escape(str(value))


def _is_numeric(series) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _log_axis(values) -> bool:
    values = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    return bool(values) and min(values) > 0 and max(values) / min(values) >= 50


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _line_figure(frame, key: str, metric: str):
    from matplotlib.figure import Figure

    column, values = f"config.{key}", f"metric.{metric}"
    stats = frame.groupby(column, sort=True)[values].agg(["mean", "std", "count"]).reset_index()
    fig = Figure(figsize=(5.2, 3.4))
    ax = fig.subplots()
    numeric = _is_numeric(frame[column])
    x = stats[column] if numeric else range(len(stats))
    std = stats["std"].fillna(0.0)
    ax.plot(x, stats["mean"], "-o", color="tab:blue", label="mean over repeats")
    if stats["count"].max() > 1:
        ax.fill_between(x, stats["mean"] - std, stats["mean"] + std, color="tab:blue", alpha=0.2,
                        label="+-1 s.d.")
        positions = frame[column] if numeric else frame[column].map({v: i for i, v in enumerate(stats[column])})
        ax.plot(positions, frame[values], ".", color="0.4", alpha=0.6, label="repeats")
    if not numeric:
        ax.set_xticks(list(x), [str(v) for v in stats[column]], rotation=30)
    elif _log_axis(list(stats[column])):
        ax.set_xscale("log")
    ax.set_xlabel(key)
    ax.set_ylabel(metric)
    ax.legend(frameon=False, fontsize=8)
    return fig


def _heatmap_figure(frame, keys: list[str], metric: str):
    from matplotlib.figure import Figure

    rows, cols = (f"config.{k}" for k in keys)
    table = frame.pivot_table(index=rows, columns=cols, values=f"metric.{metric}", aggfunc="mean")
    fig = Figure(figsize=(5.6, 4.2))
    ax = fig.subplots()
    image = ax.imshow(table.to_numpy(dtype=float), aspect="auto", origin="lower", cmap="viridis")
    ax.set_yticks(range(len(table.index)), [str(v) for v in table.index])
    ax.set_xticks(range(len(table.columns)), [str(v) for v in table.columns], rotation=30)
    if table.size <= 100:
        low, high = image.get_clim()
        for (i, j), value in _cells(table):
            bright = high > low and (value - low) / (high - low) > 0.6  # viridis is light at the top
            ax.text(j, i, format_metric(value), ha="center", va="center", fontsize=7,
                    color="k" if bright else "w")
    ax.set_ylabel(keys[0])
    ax.set_xlabel(keys[1])
    fig.colorbar(image, ax=ax, label=f"{metric} (mean over repeats)")
    return fig


def _cells(table):
    values = table.to_numpy(dtype=float)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if not math.isnan(values[i, j]):
                yield (i, j), float(values[i, j])


def _panels_figure(frame, keys: list[str], metric: str, grid: bool):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.4 * len(keys), 3.2))
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys):
        column = f"config.{key}"
        numeric = _is_numeric(frame[column])
        labels = sorted(frame[column].unique(), key=str) if not numeric else None
        x = frame[column] if numeric else frame[column].map({v: i for i, v in enumerate(labels)})
        ax.plot(x, frame[f"metric.{metric}"], ".", color="tab:blue", alpha=0.6)
        if grid:
            means = frame.groupby(column)[f"metric.{metric}"].mean()
            mx = means.index if numeric else [labels.index(v) for v in means.index]
            ax.plot(mx, means.to_numpy(), "-", color="tab:red", label="mean over the rest")
        if not numeric:
            ax.set_xticks(range(len(labels)), [str(v) for v in labels], rotation=30)
        elif _log_axis(list(frame[column])):
            ax.set_xscale("log")
        ax.set_xlabel(key)
    axes[0].set_ylabel(metric)
    return fig


def _figures(frame, swept: list[str], metrics: list[str], random_mode: bool):
    complete = frame[frame["status"] == "complete"]
    if complete.empty or not swept:
        return
    numeric = [m for m in metrics if f"metric.{m}" in complete and _is_numeric(complete[f"metric.{m}"])]
    for metric in numeric[:MAX_METRICS]:
        if random_mode or len(swept) > 2:
            yield metric, _panels_figure(complete, swept, metric, grid=not random_mode), \
                "every point (dots)" + ("" if random_mode else "; line: mean over the other parameters")
        elif len(swept) == 1:
            yield metric, _line_figure(complete, swept[0], metric), "mean +- 1 s.d. over repeats"
        else:
            yield metric, _heatmap_figure(complete, swept, metric), "mean over repeats"


def _table_html(frame, swept: list[str], metrics: list[str]) -> str:
    columns = (["point", "repeat", "seed"] + [f"config.{k}" for k in swept] + ["status"]
               + [f"metric.{m}" for m in metrics] + ["seconds", "host", "error"])
    columns = [c for c in columns if c in frame]
    ordered = frame.sort_values(by="status", key=lambda s: s.map({"failed": 0, "pending": 1}).fillna(2),
                                kind="stable").head(MAX_TABLE_ROWS)
    head = "".join(f"<th>{_esc(c.removeprefix('config.').removeprefix('metric.'))}</th>" for c in columns)
    body = []
    for _, row in ordered.iterrows():
        cells = []
        for column in columns:
            value = row[column]
            text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else (
                format_metric(value) if isinstance(value, float) else value)
            css = f" class=\"{_esc(value)}\"" if column == "status" else (
                " class=\"num\"" if isinstance(value, (int, float)) else "")
            cells.append(f"<td{css}>{_esc(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    note = f"<p>First {MAX_TABLE_ROWS} of {len(frame)} rows.</p>" if len(frame) > MAX_TABLE_ROWS else ""
    return note + f"<table><tr>{head}</tr>{''.join(body)}</table>"


def write_sweep_report(sweep_dir: str | Path) -> Path:
    """Write ``report.html`` (and ``figures/*.png``) for the sweep in ``sweep_dir``."""
    import yaml

    sweep_dir = Path(sweep_dir)
    frame, meta = load_frame(sweep_dir)
    spec = yaml.safe_load((sweep_dir / "sweep.yaml").read_text()) or {}
    swept, metrics = meta["swept"], meta["metrics"]
    counts = frame["status"].value_counts().to_dict()
    seconds = frame["seconds"].fillna(0).sum()
    parts = [f"<h1>Sweep of {_esc(spec.get('experiment', '?'))}</h1>",
             f"<p>{len(frame)} points: " + ", ".join(
                 f"<span class=\"{s}\">{counts.get(s, 0)} {s}</span>" for s in ("complete", "failed", "pending"))
             + f"; {seconds:.1f} s of point time in total.</p>",
             f"<pre>{_esc(yaml.safe_dump(spec, sort_keys=False))}</pre>"]
    figure_dir = sweep_dir / "figures"
    figure_parts = []
    for metric, fig, caption in _figures(frame, swept, metrics, "random" in spec):
        data = _png(fig)
        atomic_write_bytes(figure_dir / f"{metric}.png", data)
        figure_parts.append(f"<figure><img alt=\"{_esc(metric)}\" src=\"data:image/png;base64,"
                            f"{base64.b64encode(data).decode('ascii')}\"><figcaption><b>{_esc(metric)}</b>"
                            f" vs {_esc(', '.join(swept))}: {_esc(caption)}.</figcaption></figure>")
    if figure_parts:
        parts.append("<h2>Metrics vs parameters</h2>" + "".join(figure_parts))
    failed = frame[frame["status"] == "failed"]
    if not failed.empty:
        parts.append("<h2>Failed points</h2>")
        for _, row in failed.head(50).iterrows():
            parts.append(f"<p class=\"failed\">point {row['point']}: {_esc(row['error'])}"
                         + (f" (run: {_esc(row['run_dir'])})" if row.get("run_dir") else "") + "</p>")
    parts.append("<h2>Points</h2>" + _table_html(frame, swept, metrics))
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sweep of "
            f"{_esc(spec.get('experiment', ''))}</title><style>{_STYLE}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")
    return atomic_write_text(sweep_dir / "report.html", page)
