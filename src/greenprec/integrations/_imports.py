"""The one line a missing framework gives: which module needs what, and the extra to install."""

from __future__ import annotations


def missing_framework(module: str, framework: str, extra: str) -> str:
    """The ImportError message of ``greenprec.integrations.<module>`` without its framework."""
    return (
        f"greenprec.integrations.{module} needs {framework}, which is not installed: "
        f"pip install 'greenprec[{extra}]'"
    )
