"""The one line a missing framework gives: which module needs what, and the extra to install."""

from __future__ import annotations

import sys

from greenprec._install import installed, missing_line

__all__ = ["framework_import_error", "llvm_clash_error"]


def framework_import_error(
    module: str, modules: tuple[str, ...], extra: str, error: ImportError
) -> ImportError:
    """The ImportError ``greenprec.integrations.<module>`` raises when its framework fails.

    Raise it ``from None`` when the framework is simply absent: the chained tracebacks of each
    import tried (``lightning``, then ``pytorch_lightning``) told a newcomer nothing the one
    line does not. When the framework IS installed but its import failed, the cause is the
    news, so the message says so and names it.
    """
    present = [name for name in modules if installed(name)]
    if not present:
        return ImportError(missing_line(f"greenprec.integrations.{module}", modules[:1], [extra]))
    return ImportError(
        f"greenprec.integrations.{module}: {present[0]} is installed but importing it failed "
        f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
        f"run python3 -c 'import {present[0]}' to see why, and fix that first"
    )


def llvm_clash_error(module: str, framework: str) -> ImportError | None:
    """The error to raise instead of letting the process abort, or None when it is safe.

    TensorFlow and triton (which torch imports for Lightning and the Transformers ``Trainer``)
    each bundle LLVM; loading triton's after TensorFlow's registers LLVM's command-line options
    twice, and LLVM aborts the whole process (``LLVM ERROR: inconsistency in registered
    CommandLine options``, exit 134) — no Python exception, nothing saved. The other order
    loads. So when TensorFlow is already in the process and triton is not, say so now.
    """
    if "tensorflow" not in sys.modules or "triton" in sys.modules or not installed("triton"):
        return None
    return ImportError(
        f"greenprec.integrations.{module}: TensorFlow is already imported in this process, and "
        f"importing {framework} after it aborts the process (LLVM ERROR: inconsistency in "
        "registered CommandLine options: TensorFlow and triton each bundle LLVM); import "
        f"{framework} before tensorflow, or train with Keras and with PyTorch in separate "
        "processes"
    )
