"""report.html: self-contained content, and a real headless browser renders it with its figures."""
import base64
import re
import shutil
import subprocess

import numpy as np
import pytest

from experiments.report import write_combined_report
from experiments.runner import run_experiment

SMALL = {"trials": 2, "key_dim": 8, "value_dim": 4, "load_ratios": (0.5, 2.0)}


@pytest.fixture(scope="module")
def run_path(tmp_path_factory):
    return run_experiment("hebbian_recall", overrides=SMALL,
                          out_root=tmp_path_factory.mktemp("runs"), seed=1).path


def test_report_is_self_contained_and_complete(run_path):
    html = (run_path / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>")
    for must in ("Metrics", "max_abs_deviation_from_theory", "Config", "key_dim: 8",
                 "Environment", "recall_curve", "Recall error of a Hebbian", "Table: recall"):
        assert must in html, must
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 1
    assert base64.b64decode(images[0]) == (run_path / "recall_curve.png").read_bytes()
    assert not re.search(r'(src|href)="(https?:|/)', html), "no external assets"


def test_combined_report_lists_failures(tmp_path, run_path):
    path = write_combined_report(tmp_path / "report.html", "demo", [
        {"name": "hebbian_recall", "description": "d", "status": "complete", "seconds": 1.0,
         "run_path": run_path},
        {"name": "broken", "description": "b", "status": "failed", "seconds": 0.1,
         "error": "RuntimeError: boom"}])
    html = path.read_text()
    assert "RuntimeError: boom" in html and 'class="status-failed"' in html
    assert html.count("data:image/png;base64,") == 1


def _browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


BROWSER = _browser()
needs_browser = pytest.mark.skipif(
    BROWSER is None, reason="Chromium is not installed (Debian package 'chromium'; .ci/run "
    "installs it) so the report cannot be rendered here")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--disable-dev-shm-usage", "--run-all-compositor-stages-before-draw",
         "--virtual-time-budget=5000"]


@needs_browser
def test_browser_loads_every_figure(run_path, tmp_path):
    probe = tmp_path / "probe.html"
    checker = ("<script>window.addEventListener('load', () => {const imgs = [...document.images];"
               "const ok = imgs.filter(i => i.complete && i.naturalWidth > 100).length;"
               "document.body.setAttribute('data-images', imgs.length + '/' + ok);});</script>")
    probe.write_text((run_path / "report.html").read_text().replace("</body>", checker + "</body>"))
    dom = subprocess.run([BROWSER, *FLAGS, "--dump-dom", probe.as_uri()], capture_output=True,
                         text=True, timeout=120, check=False).stdout
    assert 'data-images="1/1"' in dom


@needs_browser
def test_browser_screenshot_is_not_blank(run_path, tmp_path):
    from matplotlib.image import imread

    shot = tmp_path / "shot.png"
    subprocess.run([BROWSER, *FLAGS, f"--screenshot={shot}", "--window-size=1200,1600",
                    (run_path / "report.html").as_uri()], capture_output=True, timeout=120,
                   check=False)
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (1600, 1200)
    assert pixels.std() > 0.05, "screenshot is blank"
    # The figure's red markers (tab:red, #d62728) are drawn on the page.
    red = (pixels[..., 0] > 0.7) & (pixels[..., 1] < 0.3) & (pixels[..., 2] < 0.3)
    assert red.sum() > 20
    assert np.isfinite(pixels).all()
