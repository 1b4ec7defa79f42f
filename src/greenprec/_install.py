"""The one sentence greenprec says when something needs a package that is not installed.

Workloads (``workload 'digits-cnn' needs ...``) and integrations
(``greenprec.integrations.lightning needs ...``) say it the same way: every module that is
missing, joined as English joins a list, with the verb agreeing, then the extra(s) to install.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

__all__ = ["installed", "missing_line"]

# Import names whose distribution is called something else: `pip install sklearn` installs a
# deprecated stub, so the name to look for on PyPI is said beside the import name.
_DISTRIBUTIONS = {"sklearn": "scikit-learn", "pytorch_lightning": "pytorch-lightning"}


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here, without importing it (a module already in
    ``sys.modules`` is; one set to None there has been blocked on purpose, as tests do)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _spoken(modules: Sequence[str]) -> str:
    names = [
        f"{module} ({_DISTRIBUTIONS[module]})" if module in _DISTRIBUTIONS else module
        for module in dict.fromkeys(modules)
    ]
    if len(names) <= 2:
        return " and ".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"


def missing_line(who: str, modules: Sequence[str], extras: Sequence[str]) -> str:
    """``WHO needs A, B and C, which are not installed: pip install 'greenprec[EXTRA]'``."""
    if not modules:
        raise ValueError("missing_line needs at least one missing module")
    verb = "is" if len(dict.fromkeys(modules)) == 1 else "are"
    install = " ".join(f"'greenprec[{extra}]'" for extra in sorted(set(extras)))
    return f"{who} needs {_spoken(modules)}, which {verb} not installed: pip install {install}"
