"""The HTML reports open offline in headless Chromium with every chart drawn."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.training.train import TRAINING_REPORT_FILE
from tests.report.conftest import ScoredLake

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,3000",
                  "--virtual-time-budget=5000")  # fmt: skip
REPORT_CHARTS = ("Lift by score", "Cumulative gains", "Calibration", "Drifting inputs", "Score mix over time")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: scripts/setup-chromium.sh installs it"
    profile = tmp_path / f"chromium-{len(list(tmp_path.iterdir()))}"
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, timeout=120, check=True
    )


def _check_rendered(tmp_path: Path, page: Path, titles: tuple[str, ...]) -> None:
    """The page's DOM holds every chart with its title drawn in it, and its screenshot is not blank."""
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri()).stdout.decode()
    for title in titles:
        assert f'aria-label="{title}"' in dom, title
        assert f">{title}" in dom, title  # the chart's own title, SVG text
    assert dom.count("<svg") >= len(titles)
    shot = tmp_path / f"{page.stem}.png"
    _chromium(tmp_path, f"--screenshot={shot}", page.as_uri())
    with Image.open(shot) as image:
        grey = image.convert("L")
        # A blank page is one colour; charts bring many greys (bars, lines, anti-aliased text) and dark text.
        assert len(grey.getcolors(maxcolors=256 * 256) or range(256)) > 16
        assert grey.getextrema()[0] < 64


@pytest.mark.e2e
def test_report_html_renders_its_charts_offline(report_env: ScoredLake, tmp_path: Path) -> None:
    """`report --html` writes a page that Chromium renders offline with lift, gains, calibration and drift charts."""
    page = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "--html", str(page), "--since", "2000-01-01"])
    assert result.exit_code == 0, result.output
    _check_rendered(tmp_path, page, REPORT_CHARTS)


@pytest.mark.e2e
def test_training_report_renders_its_charts_offline(tiny_bundle: Path, tmp_path: Path) -> None:
    """The training report renders the confusion matrix, the importance and the learning curve offline."""
    page = tmp_path / "training.html"
    shutil.copy(tiny_bundle / TRAINING_REPORT_FILE, page)
    _check_rendered(tmp_path, page, ("Confusion matrix", "Feature importance", "Learning curve"))
