"""Public test tools: conformance suites for transports and layers, and test doubles.

Third parties run the same suites against their own implementations.
"""

__all__: list[str] = []
