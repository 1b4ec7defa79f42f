"""What a newcomer meets on a first walk (issue 24): install lines that work, meters labelled
as what they are, one-line messages for what is missing, and pages nothing is cut from."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from greenprec.cli import app
from greenprec.meters.mock import MockMeter
from greenprec.workloads import WorkloadError, run_workload

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "fixtures" / "report-golden"


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


# -- install lines ---------------------------------------------------------------------------

# `pip install greenprec` with nothing after the name but a space, a quote or the line's end:
# the bare package from PyPI, where it is not published yet.
_BARE_PYPI_INSTALL = re.compile(r"pip install\s+[\"']?greenprec(?=[\"']?(\s|$))", re.M)


def test_no_page_tells_users_to_install_greenprec_from_pypi() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    offending = [
        f"{page.relative_to(ROOT)}:{text[: match.start()].count(chr(10)) + 1}"
        for page in pages
        for text in [page.read_text(encoding="utf-8")]
        for match in _BARE_PYPI_INSTALL.finditer(text)
    ]
    assert offending == []


def test_the_getting_started_page_installs_from_a_clone() -> None:
    text = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    install = text[text.index("## Install") : text.index("## Compare two precisions")]
    assert "git clone https://github.com/greenprec/greenprec" in install
    assert 'python3 -m pip install -e ".[tensorflow]"' in install


# -- greenprec meters ------------------------------------------------------------------------


def test_meters_lists_simulated_meters_as_simulated() -> None:
    result = CliRunner().invoke(app, ["meters", "--json"])
    assert result.exit_code == 0, result.output
    kinds = {row["name"]: row["kind"] for row in json.loads(result.stdout)["meters"]}
    assert kinds["mock"] == "simulated"
    assert kinds["scripted"] == "simulated"
    assert kinds["rapl"] == "measured"
    assert MockMeter.simulated is True


# -- what is missing -------------------------------------------------------------------------


def test_a_workload_names_every_missing_module_in_one_sentence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for module in ("tensorflow", "keras", "sklearn"):
        monkeypatch.setitem(sys.modules, module, None)  # as if none were installed
    with pytest.raises(WorkloadError) as caught:
        run_workload("digits-cnn", policy="fp32", seed=0, measure_factory=MockMeter)
    assert str(caught.value).endswith(
        "workload 'digits-cnn' needs tensorflow, keras and sklearn (scikit-learn), which are "
        "not installed: pip install 'greenprec[tensorflow]'"
    )


def test_one_missing_module_is_singular(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "torch", None)
    from greenprec.workloads import get_workload, missing_requirements

    line = missing_requirements(get_workload("digits-cnn-torch"), "digits-cnn-torch")
    assert line == (
        "workload 'digits-cnn-torch' needs torch and sklearn (scikit-learn), which are not "
        "installed: pip install 'greenprec[torch]'"
    )
    monkeypatch.setitem(sys.modules, "sklearn", importlib.import_module("json"))
    line = missing_requirements(get_workload("digits-cnn-torch"), "digits-cnn-torch")
    assert line == (
        "workload 'digits-cnn-torch' needs torch, which is not installed: "
        "pip install 'greenprec[torch]'"
    )


def test_a_missing_lightning_is_one_line_without_chained_tracebacks() -> None:
    result = run_python(
        """
        import sys
        sys.modules["lightning"] = None  # as if neither package were installed
        sys.modules["pytorch_lightning"] = None
        import greenprec.integrations.lightning
        """
    )
    assert result.returncode == 1
    assert result.stderr.count("Traceback") == 1, result.stderr
    assert "During handling" not in result.stderr and "direct cause" not in result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == (
        "ImportError: greenprec.integrations.lightning needs lightning, which is not "
        "installed: pip install 'greenprec[lightning]'"
    )


# -- TensorFlow, then Lightning: LLVM aborts the process -------------------------------------


@pytest.mark.parametrize(
    ("module", "framework"),
    [("lightning", "Lightning"), ("transformers", "the Transformers Trainer")],
)
def test_greenprec_refuses_to_import_the_torch_side_after_tensorflow(
    monkeypatch: pytest.MonkeyPatch, module: str, framework: str
) -> None:
    from greenprec.integrations import _imports

    # A stand-in TensorFlow in the process, triton installed but not loaded: the abort's setup,
    # without importing either for real (the guard runs before any framework import).
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    monkeypatch.delitem(sys.modules, "triton", raising=False)
    monkeypatch.delitem(sys.modules, f"greenprec.integrations.{module}", raising=False)
    monkeypatch.setattr(_imports, "installed", lambda name: True)
    with pytest.raises(ImportError) as caught:
        importlib.import_module(f"greenprec.integrations.{module}")
    message = str(caught.value)
    assert message.startswith(f"greenprec.integrations.{module}: TensorFlow is already imported")
    assert "LLVM ERROR: inconsistency in registered CommandLine options" in message
    assert f"import {framework} before tensorflow" in message
    assert "\n" not in message


def test_the_guard_is_quiet_when_the_order_is_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    from greenprec.integrations._imports import llvm_clash_error

    monkeypatch.setattr("greenprec.integrations._imports.installed", lambda name: True)
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    assert llvm_clash_error("lightning", "Lightning") is None  # no TensorFlow yet
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    monkeypatch.setitem(sys.modules, "triton", types.ModuleType("triton"))
    assert llvm_clash_error("lightning", "Lightning") is None  # triton's LLVM came first
    monkeypatch.delitem(sys.modules, "triton")
    monkeypatch.setattr("greenprec.integrations._imports.installed", lambda name: False)
    assert llvm_clash_error("lightning", "Lightning") is None  # no triton to clash with


@pytest.mark.slow
def test_tensorflow_then_the_lightning_callback_is_an_import_error_not_an_abort() -> None:
    for name in ("tensorflow", "lightning", "triton"):
        pytest.importorskip(name)
    result = run_python(
        """
        import tensorflow
        try:
            import greenprec.integrations.lightning
        except ImportError as error:
            print(error)
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]  # LLVM's abort would be 134 / -6
    assert "LLVM ERROR" in result.stdout and "before tensorflow" in result.stdout


# -- pages nothing is cut from ---------------------------------------------------------------

_OVERFLOW_PROBE = """<script>
window.addEventListener("load", function () { setTimeout(function () {
  var cut = Array.from(document.querySelectorAll("SELECTOR"))
    .filter(function (e) { return e.scrollWidth > e.clientWidth + 1; })
    .map(function (e) { return e.textContent.slice(0, 80); });
  var out = document.createElement("pre");
  out.id = "greenprec-probe";
  out.textContent = JSON.stringify(cut);
  document.body.appendChild(out);
}, 300); });
</script>"""


def _cut_at(page: Path, selector: str, width_px: int, profile: Path) -> list[str]:
    """What of ``selector`` is wider than its box (cut, or behind a scroll bar) at this width."""
    binary = next(
        (path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None
    )
    if binary is None:
        pytest.skip("no chromium or chromium-browser on PATH (apt-get install chromium)")
    probe = page.with_name(f"probe-{page.name}")
    html = page.read_text(encoding="utf-8")
    probe.write_text(
        html.replace("</body>", _OVERFLOW_PROBE.replace("SELECTOR", selector) + "</body>")
    )
    dom = subprocess.run(
        [binary, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
         "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
         f"--window-size={width_px},3000", "--virtual-time-budget=5000", "--dump-dom",
         probe.as_uri()],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    match = re.search(r'<pre id="greenprec-probe">(.*?)</pre>', dom.stdout, re.S)
    assert match, "the probe did not run: " + dom.stderr[-1000:]
    cut: list[str] = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    return cut


@pytest.mark.browser
@pytest.mark.slow
def test_the_report_tests_table_fits_a_1400_px_window(tmp_path: Path) -> None:
    # The "constant" golden is the report whose tests table was cut: its Mann–Whitney cells
    # ("0 (p = 0.05); cannot go below p = 0.1 with 3 + 3 runs") did not wrap.
    page = tmp_path / "report.html"
    shutil.copy(GOLDEN / "constant" / "report.html", page)
    assert _cut_at(page, ".scroll", 1400, tmp_path / "profile") == []


@pytest.mark.browser
@pytest.mark.slow
def test_the_docs_home_page_shows_its_code_blocks_whole_at_1400_px(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "-q", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    assert _cut_at(site / "index.html", "pre > code", 1400, tmp_path / "profile") == []
