"""The run store: one directory per run, every file written atomically.

Layout: ``runs/<experiment>/<UTC time>-<hash8>/`` holding ``config.yaml``,
``env.json``, ``status.json`` (``running`` -> ``complete`` | ``failed`` | ``interrupted``),
``metrics.json``, ``run.log``, figures (``*.png``), arrays (``*.npz``), tables
(``*.csv``) and ``report.html``. A file is first written to a temporary name in the
same directory, flushed and fsynced, then renamed over its final name, so a crash
never leaves a half-written file. A run whose ``status.json`` still says ``running``
after its process is gone was killed: it is incomplete, and no later run writes into it
(a sweep runner marks the runs of the workers it stopped ``interrupted``).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from experiments.config import ConfigError


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file + fsync + rename (POSIX-atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(handle, 0o666 & ~_UMASK)  # mkstemp makes 0600; runs are shared files
        with os.fdopen(handle, "wb") as temp_file:
            temp_file.write(data)
            temp_file.flush()
            os.fsync(temp_file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def to_json(obj: Any) -> str:
    """JSON with numpy/torch scalars and arrays converted. NaN and inf are kept, as the
    ``NaN`` / ``Infinity`` tokens that Python's json, pandas and numpy read back as floats
    (a strict parser such as JavaScript's JSON.parse refuses them; ``null`` would lose the
    float: a history list would load as an object array)."""
    return json.dumps(obj, indent=2, default=_json_default, sort_keys=False)


def utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def new_run_path(out_root: str | Path, experiment: str, short_hash: str) -> Path:
    """A fresh ``<root>/<experiment>/<UTC>-<hash8>`` directory; never an existing one.

    A root that cannot hold it (read-only, a file, no permission) is a ``ConfigError``
    naming ``--out``: nothing has run yet and no run directory exists to look in."""
    parent = Path(out_root) / experiment
    base = f"{utc_stamp()}-{short_hash}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1000):
            candidate = parent / (base if attempt == 0 else f"{base}-{attempt}")
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                continue
    except OSError as error:
        raise ConfigError(f"--out {str(out_root)!r}: cannot create a run directory there "
                          f"({error.strerror or error}); choose a writable folder") from None
    raise RuntimeError(f"could not create a new run directory under {parent}")


class RunDir:
    """What an experiment's ``run(config, out)`` writes through.

    Attributes: ``path`` (the directory), ``seed`` (root seed), ``device``
    (``"cpu"``/``"cuda"``), ``quiet`` (no progress bars).
    """

    def __init__(self, path: str | Path, seed: int = 0, device: str = "cpu", quiet: bool = True):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.seed = int(seed)
        self.device = device
        self.quiet = quiet
        self.figures: list[dict[str, str]] = []
        self.tables: list[dict[str, str]] = []
        self._load_manifest()

    # --- manifest of figures and tables (captions, order) ------------------------------
    def _load_manifest(self) -> None:
        manifest = self.path / "manifest.json"
        if manifest.exists():
            data = json.loads(manifest.read_text(encoding="utf-8"))
            self.figures, self.tables = data.get("figures", []), data.get("tables", [])

    def _save_manifest(self) -> None:
        atomic_write_text(self.path / "manifest.json", to_json({"figures": self.figures,
                                                                "tables": self.tables}))

    @staticmethod
    def _check_name(name: str) -> str:
        if not name or "/" in name or name.startswith(".") or "\\" in name:
            raise ValueError(f"name={name!r}: use a plain file stem (letters, digits, '_', '-')")
        return name

    # --- writers ------------------------------------------------------------------------
    def log(self, message: str) -> None:
        """Append a time-stamped line to ``run.log`` (rewritten atomically, as every file of a
        run is: DESIGN.md; the rewrite costs ~0.7 ms a line at 2,000 lines, growing with the
        log, negligible at the hundreds of lines an experiment writes)."""
        log_path = self.path / "run.log"
        previous = log_path.read_text(encoding="utf-8") if log_path.exists() else ""
        stamp = datetime.now(timezone.utc).strftime("%H:%M:%S")
        atomic_write_text(log_path, previous + f"[{stamp}] {message}\n")

    def save_figure(self, fig, name: str, caption: str = "") -> Path:
        """Render a matplotlib ``Figure`` to ``<name>.png`` with the Agg canvas."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        self._check_name(name)
        FigureCanvasAgg(fig)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        path = atomic_write_bytes(self.path / f"{name}.png", buffer.getvalue())
        self.figures = [f for f in self.figures if f["name"] != name]
        self.figures.append({"name": name, "file": path.name, "caption": caption})
        self._save_manifest()
        return path

    def save_arrays(self, name: str, **arrays) -> Path:
        import numpy as np

        self._check_name(name)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
        return atomic_write_bytes(self.path / f"{name}.npz", buffer.getvalue())

    def save_json(self, name: str, obj: Any) -> Path:
        self._check_name(name)
        return atomic_write_text(self.path / f"{name}.json", to_json(obj))

    def save_table(self, name: str, rows: list[dict[str, Any]], caption: str = "") -> Path:
        """Write ``rows`` (dicts sharing keys) to ``<name>.csv``; the report shows it."""
        self._check_name(name)
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        path = atomic_write_text(self.path / f"{name}.csv", buffer.getvalue())
        self.tables = [t for t in self.tables if t["name"] != name]
        self.tables.append({"name": name, "file": path.name, "caption": caption})
        self._save_manifest()
        return path

    def progress(self, iterable: Iterable, total: int | None = None, desc: str = ""):
        """A tqdm bar over ``iterable``; disabled when quiet or stderr is not a TTY."""
        from tqdm.auto import tqdm

        disable = self.quiet or not sys.stderr.isatty()
        return tqdm(iterable, total=total, desc=desc, disable=disable, leave=False)


def clean_metrics(metrics: dict[str, Any]) -> dict[str, float | int | bool | str]:
    """Check that metrics are a flat mapping of names to scalars; convert numpy scalars."""
    if not isinstance(metrics, dict):
        raise TypeError(f"run() must return a dict of metrics, got {type(metrics).__name__}")
    cleaned = {}
    for key, value in metrics.items():
        if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
            value = value.item()
        if not isinstance(value, (int, float, bool, str)):
            raise TypeError(f"metric {key!r}: expected a number, got {type(value).__name__}")
        cleaned[str(key)] = value
    return cleaned


def format_metric(value: Any) -> str:
    if isinstance(value, (bool, str)):
        return str(value)
    if isinstance(value, int):
        return f"{value:d}"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-3 or magnitude >= 1e5):
        return f"{value:.4e}"
    return f"{value:.4g}"
