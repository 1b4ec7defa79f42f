"""`import greenprec` stays light: no TensorFlow, matplotlib, pandas or NVML at import."""

from __future__ import annotations

import subprocess
import sys


def test_import_greenprec_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys, greenprec\n"
        "heavy = {'tensorflow', 'keras', 'matplotlib', 'pandas', 'pynvml', 'scipy', 'sklearn'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_lazy_subpackages_resolve_on_attribute_access() -> None:
    import greenprec

    assert greenprec.measure is greenprec.measurement.measure
    assert "mock" in greenprec.available_meters()
