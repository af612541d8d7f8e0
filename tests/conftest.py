"""Shared test configuration: every test has a timeout (pyproject), warnings are errors."""

from hypothesis import settings

# Hypothesis runs deterministically (same examples on every run, nothing stored
# between runs) with a bounded number of examples; tests may lower it further.
settings.register_profile(
    "netweave", derandomize=True, database=None, deadline=None, max_examples=100
)
settings.load_profile("netweave")
