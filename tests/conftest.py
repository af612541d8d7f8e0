"""Shared test configuration: every test has a timeout (pyproject), warnings are errors."""
