"""report.html in a real browser (headless Chromium): no console errors, every image decodes,
nothing overflows the page; a screenshot is kept for a human to look at."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from greenprec.report import build_report
from greenprec.testing.synthetic import write_synthetic_folder

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = 1200, 3000
# Injected into a copy only: the report itself has no scripts. It records, after load, what
# the test cannot see from outside: whether each image decoded and whether the page overflows.
PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.from(document.images).map(function (img) {
    return {alt: img.alt, complete: img.complete, width: img.naturalWidth};
  });
  var out = document.createElement("pre");
  out.id = "greenprec-probe";
  out.textContent = JSON.stringify({
    images: images,
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth
  });
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium or chromium-browser on PATH (apt-get install chromium)")


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        binary,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",  # root in containers; the page is our own file
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{HEIGHT}",
        "--virtual-time-budget=5000",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("browser") / "results"
    write_synthetic_folder(
        folder, runs=12, outlier_runs=["fp32-003"], failed_runs=["mixed-004"], seed=7
    )
    return build_report(folder).html_path


@pytest.mark.slow
def test_report_html_renders_in_chromium(report_html: Path, tmp_path: Path) -> None:
    binary = chromium()
    html = report_html.read_text(encoding="utf-8")
    assert "<script" not in html.lower(), "the report must stay script-free"
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")

    dom = run_chromium(binary, tmp_path / "profile-dom", "--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], "console messages:\n" + "\n".join(console)
    match = re.search(r'<pre id="greenprec-probe">(.*?)</pre>', dom.stdout, re.S)
    assert match, "the probe did not run: " + dom.stdout[-500:]
    status = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(status["images"]) == 4
    broken = [img for img in status["images"] if not img["complete"] or img["width"] <= 0]
    assert broken == [], f"images that did not decode: {broken}"
    assert status["scrollWidth"] <= status["innerWidth"], "the page overflows horizontally"

    screenshot = tmp_path / "report.png"
    shot = run_chromium(
        binary, tmp_path / "profile-shot", f"--screenshot={screenshot}", report_html.as_uri()
    )
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(screenshot)
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    assert pixels.std() > 0.05, "the screenshot is (nearly) blank"
    print(f"report screenshot: {screenshot}")
