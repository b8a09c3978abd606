"""Test support shared by the test suites: sample events and live sensor captures.

Importable from tests (which are not packages) as ``runwatch.testing``; fixtures are
registered through :mod:`runwatch.testing.pytest_plugin`.
"""
