"""The whole repository passes ``ruff check`` (rules and settings: pyproject.toml)."""
import importlib.util
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_repository_is_lint_clean():
    assert importlib.util.find_spec("ruff") is not None, (
        "ruff is missing: it is in the dev extras of pyproject.toml (pip install -e '.[dev]')")
    completed = subprocess.run([sys.executable, "-m", "ruff", "check", str(REPO_ROOT)],
                               capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
                               check=False)
    assert completed.returncode == 0, (
        f"ruff check found problems (fix them, or `ruff check --fix` the safe ones):\n"
        f"{completed.stdout}{completed.stderr}")
