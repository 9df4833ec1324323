"""The sweep's results: an append-only journal and the tidy table ``sweep.parquet``.

Every finished point is appended as one JSON line to ``journal.jsonl`` (written with
``O_APPEND`` and fsynced, so a killed runner leaves at most a torn last line, which is
ignored, and the next row starts on a line of its own; a failed write, say on a full disk,
is cut back off). The journal is the source of truth; the latest line of a point
(keyed by config hash) wins, so a retried point replaces its failed row.

``sweep.parquet`` is rebuilt from the points and the journal and written atomically
(temp file + rename): at most once per ``flush_seconds`` while the sweep runs, and always
at the end, on Ctrl-C and on errors. One row per point, pending points included:

``point, repeat, seed, config_hash, config.<key>..., status, metric.<name>..., seconds,
error, host, pid, worker_deaths, batch_size, run_dir, started_utc, finished_utc``

``status`` is ``pending``, ``complete`` or ``failed``. Tuple-valued config fields are stored
as JSON text; a metric whose values mix text, true/false and numbers (say ``False`` at one
point and ``0.5`` at another), or an integer beyond 64 bits, is stored as text.
The parquet key-value metadata ``neurobridge.sweep`` lists the swept keys and metric names. A run directory that finished but never reached the journal (the runner was
killed in between) is adopted on the next start by :meth:`SweepTable.adopt_finished_runs`.
"""
from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any

from experiments.config import flatten_config
from experiments.store import atomic_write_bytes

JOURNAL, TABLE = "journal.jsonl", "sweep.parquet"
_TAIL = ("seconds", "error", "host", "pid", "worker_deaths", "batch_size", "run_dir",
         "started_utc", "finished_utc")


def read_journal(path: Path) -> list[dict]:
    """Every well-formed line of ``path`` (a torn last line from a kill is skipped)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "config_hash" in row:
            rows.append(row)
    return rows


def _kind(value: Any) -> str:
    """A metric value's column kind: ``bool``, ``number`` or ``text`` (an int beyond int64 too)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "number" if -2**63 <= value < 2**63 else "text"
    return "number" if isinstance(value, float) else "text"


def _cell(value: Any) -> Any:
    return json.dumps(list(value)) if isinstance(value, (tuple, list)) else value


class SweepTable:
    """The state of one sweep directory's points (see module docstring)."""

    def __init__(self, sweep_dir: str | Path, points: list, swept_keys: list[str],
                 flush_seconds: float | None = None):
        self.sweep_dir = Path(sweep_dir)
        self.points = points
        self.swept_keys = list(swept_keys)
        # rebuilding the table is O(points): flush big sweeps less often (1 s per 1000 points)
        self.flush_seconds = max(1.0, len(points) / 1000) if flush_seconds is None else flush_seconds
        self._config_cells: list[dict] | None = None
        self.latest: dict[str, dict] = {}
        self._known = {p.config_hash for p in points}
        self._last_flush = 0.0
        self._dirty = False
        self.reload()

    def reload(self) -> None:
        """Re-read the journal (the latest line of each known point wins)."""
        latest = {}
        for row in read_journal(self.sweep_dir / JOURNAL):
            if row["config_hash"] in self._known:
                latest[row["config_hash"]] = row
        if latest != self.latest:
            self.latest, self._dirty = latest, True
        self._recount()

    # --- state ----------------------------------------------------------------------
    def status(self, config_hash: str) -> str:
        return self.latest.get(config_hash, {}).get("status", "pending")

    def counts(self) -> dict[str, int]:
        """``{"complete": n, "failed": n, "pending": n}`` (kept up to date, O(1))."""
        return dict(self._counts)

    def _recount(self) -> None:
        self._counts = {"complete": 0, "failed": 0, "pending": 0}
        for point in self.points:
            self._counts[self.status(point.config_hash)] += 1

    # --- writing ----------------------------------------------------------------------
    def record(self, rows: list[dict]) -> None:
        """Append ``rows`` to the journal (one fsynced write) and mark the table dirty."""
        if not rows:
            return
        data = "".join(json.dumps(row, default=str, allow_nan=True) + "\n" for row in rows).encode()
        handle = os.open(self.sweep_dir / JOURNAL, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(handle).st_size
            if size and os.pread(handle, 1, size - 1) != b"\n":
                data = b"\n" + data  # a torn last line (a killed runner) must not swallow this row
            try:
                view = memoryview(data)
                while view:  # a short write (disk full) would otherwise tear the line silently
                    view = view[os.write(handle, view):]
                os.fsync(handle)
            except OSError:
                try:  # leave no torn line behind (best effort: the disk may be gone)
                    os.ftruncate(handle, size)
                except OSError:
                    pass
                raise
        finally:
            os.close(handle)
        for row in rows:
            self._counts[self.status(row["config_hash"])] -= 1
            self.latest[row["config_hash"]] = row
            self._counts[self.status(row["config_hash"])] += 1
        self._dirty = True
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self, force: bool = False) -> Path:
        """Rewrite ``sweep.parquet`` atomically (when anything changed, or ``force``)."""
        path = self.sweep_dir / TABLE
        if not (self._dirty or force or not path.exists()):
            return path
        import pyarrow as pa
        import pyarrow.parquet as pq

        frame, metric_names = self.frame()
        table = pa.Table.from_pandas(frame, preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[b"neurobridge.sweep"] = json.dumps({"swept": self.swept_keys,
                                                 "metrics": metric_names}).encode()
        buffer = io.BytesIO()
        pq.write_table(table.replace_schema_metadata(meta), buffer)
        atomic_write_bytes(path, buffer.getvalue())
        self._last_flush, self._dirty = time.monotonic(), False
        return path

    def frame(self):
        """``(pandas.DataFrame, metric names)``: one row per point, in point order."""
        import pandas as pd

        metric_names: list[str] = []
        for row in self.latest.values():
            metric_names.extend(k for k in row.get("metrics", {}) if k not in metric_names)
        records = []
        for point, config_cells in zip(self.points, self._config_columns()):
            row = self.latest.get(point.config_hash, {})
            record: dict[str, Any] = {"point": point.index, "repeat": point.repeat,
                                      "seed": point.seed, "config_hash": point.config_hash}
            record.update(config_cells)
            record["status"] = row.get("status", "pending")
            metrics = row.get("metrics", {}) if record["status"] == "complete" else {}
            record.update({f"metric.{m}": metrics.get(m) for m in metric_names})
            record.update({k: row.get(k) for k in _TAIL})
            record["worker_deaths"] = int(row.get("worker_deaths") or 0)
            records.append(record)
        frame = pd.DataFrame.from_records(records)
        for name in metric_names:  # text, true/false and numbers mixed: one text column
            column = frame[f"metric.{name}"]
            kinds = {_kind(v) for v in column if not pd.isna(v)}
            if len(kinds) > 1 or "text" in kinds:
                frame[f"metric.{name}"] = column.map(lambda v: None if pd.isna(v) else str(v))
        return frame, metric_names

    def _config_columns(self) -> list[dict]:
        """``config.<key>`` cells per point (swept keys first), computed once."""
        if self._config_cells is None:
            self._config_cells = []
            for point in self.points:
                flat = flatten_config(point.config)
                ordered = self.swept_keys + [k for k in flat if k not in self.swept_keys]
                self._config_cells.append({f"config.{k}": _cell(flat[k]) for k in ordered})
        return self._config_cells

    # --- recovery ----------------------------------------------------------------------
    def adopt_finished_runs(self, experiment: str) -> int:
        """Record complete run directories of pending points that the journal lacks."""
        runs_parent = self.sweep_dir / "runs" / experiment
        wanted = {p.config_hash: p for p in self.points if self.status(p.config_hash) != "complete"}
        if not wanted or not runs_parent.is_dir():
            return 0
        adopted = []
        for status_path in runs_parent.glob("*/status.json"):
            try:
                status = json.loads(status_path.read_text())
            except (OSError, ValueError):
                continue
            digest = status.get("config_hash")
            metrics_path = status_path.parent / "metrics.json"
            if digest not in wanted or status.get("status") != "complete" or not metrics_path.exists():
                continue
            point = wanted.pop(digest)
            adopted.append({"config_hash": digest, "point": point.index, "status": "complete",
                            "metrics": json.loads(metrics_path.read_text()), "error": None,
                            "seconds": status.get("seconds"), "host": None, "pid": None,
                            "run_dir": os.path.relpath(status_path.parent, self.sweep_dir),
                            "started_utc": status.get("started_utc"), "finished_utc": None,
                            "batch_size": status.get("batch_size", 1), "adopted": True})
        self.record(adopted)
        return len(adopted)


def load_frame(sweep_dir: str | Path):
    """Read ``sweep.parquet`` and its metadata: ``(DataFrame, {"swept": [...], "metrics": [...]})``."""
    import pyarrow.parquet as pq

    table = pq.read_table(Path(sweep_dir) / TABLE)
    meta = json.loads((table.schema.metadata or {}).get(b"neurobridge.sweep", b"{}"))
    return table.to_pandas(), {"swept": meta.get("swept", []), "metrics": meta.get("metrics", [])}


def write_spec_file(path: Path, spec_dict: dict) -> None:
    import yaml

    atomic_write_bytes(path, yaml.safe_dump(spec_dict, sort_keys=False).encode())

