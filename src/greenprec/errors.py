"""Exceptions that greenprec raises on purpose; each message names the problem and the fix."""

from __future__ import annotations


class GreenprecError(Exception):
    """Base class: an error a user can act on, shown as one line by the CLI."""


class ConfigError(GreenprecError, ValueError):
    """Bad input: an unknown name, a malformed option, an impossible value."""


class MeterUnavailable(GreenprecError):
    """A meter cannot run on this machine; the message says why and how to fix it."""


class MeterError(GreenprecError):
    """A meter failed while measuring (a driver error, a child process that died)."""


class MeasurementNotFinished(GreenprecError, RuntimeError):
    """A result was read before the measured block ended."""


class GreenprecWarning(UserWarning):
    """Something the user should know: a fallback meter, a broken plugin, emulated precision."""
