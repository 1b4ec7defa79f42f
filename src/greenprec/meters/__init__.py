"""Meters: the plugins that read energy.

Each built-in meter is a package here: the meter in ``<name>/__init__.py`` (``rapl``, ``nvml``,
``energibridge``, ``estimate``, ``mock``) and its options model beside it in
``<name>/options.py``, kept apart because the plugin manager imports every meter and must not
import pydantic. ``base.py`` is the contract a meter implements, ``options.py`` what every
options model shares, ``registry.py`` finding meters by name and choosing them for ``auto``.
"""

__all__: list[str] = []  # the meters are in the subpackages, imported by name
