"""Exceptions that greenprec raises on purpose; each message names the problem and the fix.

Every one of them is a :class:`GreenprecError`, so ``except greenprec.GreenprecError`` catches
all that greenprec raises on purpose (the command line shows each as one line). A class that is
imported from another module names that module::

    GreenprecError
    ├── ConfigError (also a ValueError)       bad input: a name, an option, a file, a value
    │   ├── WorkloadError                     a workload broke its contract (greenprec.workloads)
    │   ├── ExperimentExists                  a new experiment into a folder that holds one
    │   │                                     (greenprec.results)
    │   └── NewColumnsError                   an EnergiBridge file whose rows grew wider than its
    │                                         header mid-run (greenprec.formats.energibridge_csv)
    ├── MeterUnavailable                      a meter cannot run on this machine, and why
    ├── MeterError                            a meter failed while measuring, or gave a value
    │                                         that cannot be right (NaN, negative, falling)
    ├── MeterContractError                    a meter class breaks the meter contract
    │                                         (greenprec.testing, the kit for plugin authors)
    ├── MeasurementNotFinished (also a RuntimeError)
    │                                         a result read before the block ended
    ├── ExperimentFailed                      a run failed under fail_fast; the folder resumes
    │                                         (greenprec.experiment.session)
    ├── SlurmError                            a Slurm command failed or could not be run
    │                                         (greenprec.experiment.slurm)
    └── ClusterError                          the cluster executor cannot go on: Slurm refused a
                                              job or stopped answering
                                              (greenprec.experiment.cluster)

    GreenprecWarning (a UserWarning)          something to know: a fallback meter, a broken
                                              plugin, emulated precision

Requests to stop are not errors: they derive from :class:`BaseException` on purpose, as
Ctrl-C's :class:`KeyboardInterrupt` does, so that no ``except Exception`` (a failing run is
caught as data) swallows them; the current run is marked interrupted and the folder resumes.
Two more are greenprec's own control flow and never reach a caller::

    BaseException
    ├── Terminated                            SIGTERM (Slurm, systemd, ``timeout``): handled as
    │                                         Ctrl-C is; the CLI exits 143
    ├── KeyboardInterrupt
    │   └── Interrupted                       Ctrl-C, saying what became of a cluster's jobs
    ├── _JobEnding                            inside a Slurm job: Slurm is ending it
    │                                         (greenprec.experiment.block, private)
    └── Exception
        └── _Skip                             a meter check that cannot run here
                                              (greenprec.testing.contract, private)
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "GreenprecError",
    "GreenprecWarning",
    "Interrupted",
    "MeasurementNotFinished",
    "MeterContractError",
    "MeterError",
    "MeterUnavailable",
    "Terminated",
    "warn_at_caller",
]


class GreenprecError(Exception):
    """Base class: an error a user can act on, shown as one line by the CLI."""


class ConfigError(GreenprecError, ValueError):
    """Bad input: an unknown name, a malformed option, an impossible value.

    ``param`` names the argument of the library function the input came through (``groups``,
    ``out``): the command line puts its flag for that argument before the message.
    """

    def __init__(self, message: str = "", *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class MeterUnavailable(GreenprecError):
    """A meter cannot run on this machine; the message says why and how to fix it."""


class MeterError(GreenprecError):
    """A meter failed while measuring (a driver error, a child process that died)."""


class MeterContractError(GreenprecError):
    """A meter class breaks the meter contract (:func:`greenprec.testing.check_meter`).

    ``problems`` holds one line per broken rule, each naming the rule and the fix; the message
    is the meter's name followed by those lines.
    """

    def __init__(self, meter: str, problems: list[str]) -> None:
        self.meter = meter
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        count = len(self.problems)
        super().__init__(
            f"meter {meter!r} breaks the meter contract ({count} rule"
            f"{'s' if count != 1 else ''}):\n{lines}"
        )

    def __reduce__(self) -> tuple[type[MeterContractError], tuple[str, list[str]]]:
        return type(self), (self.meter, self.problems)


class MeasurementNotFinished(GreenprecError, RuntimeError):
    """A result was read before the measured block ended."""


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM, what Slurm and ``timeout`` send): handled like
    Ctrl-C, so the current run is marked interrupted and the folder stays resumable.

    A :class:`BaseException` on purpose, as :class:`KeyboardInterrupt` is: a stop request must
    pass every ``except Exception`` (a failing run is caught as data) on its way out.
    """

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or "terminated")
        self.detail = detail
        """What became of the work in flight (a cluster's jobs), when there is more to say."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what became of the work in flight (a cluster's jobs: cancelled or not).

    A :class:`KeyboardInterrupt` on purpose, so whatever handles Ctrl-C handles it too.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class GreenprecWarning(UserWarning):
    """Something the user should know: a fallback meter, a broken plugin, emulated precision."""


def warn_at_caller(message: str, category: type[Warning] = GreenprecWarning) -> None:
    """Warn pointing at the first line outside greenprec: the user's own ``measure()`` call.

    With the stack level there, Python's default filter shows the warning once per line of
    the user's code that triggers it, not once per internal call site of greenprec.
    """
    import os
    import sys
    import warnings

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame = sys._getframe(1)
    level = 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    warnings.warn(message, category, stacklevel=level)
