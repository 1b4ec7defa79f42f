"""Meters: the plugins that read energy. Each built-in meter is one module here."""
