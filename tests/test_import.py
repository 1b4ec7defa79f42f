"""`import greenprec` stays light: no TensorFlow, PyTorch, matplotlib, pandas or NVML at import."""

from __future__ import annotations

import subprocess
import sys


def test_import_greenprec_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys, greenprec\n"
        "heavy = {'tensorflow', 'keras', 'torch', 'matplotlib', 'pandas', 'pynvml', 'scipy',"
        " 'sklearn'}\n"
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


def test_precision_and_workloads_import_no_framework() -> None:
    # The PyTorch adapter and workloads live in modules the plugin manager and
    # `greenprec.precision` load: they must import torch only when used.
    code = (
        "import sys, greenprec, greenprec.precision, greenprec.precision.torch\n"
        "import greenprec.workloads.digits_torch, greenprec.workloads.cifar10_torch\n"
        "from greenprec.precision import torch_policy, TorchPolicy, support\n"
        "support(framework='torch', device='cpu')\n"
        "heavy = {'tensorflow', 'keras', 'torch', 'sklearn'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
