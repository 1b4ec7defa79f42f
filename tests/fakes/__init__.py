"""Test doubles: fake executables and modules standing in for hardware tools."""
