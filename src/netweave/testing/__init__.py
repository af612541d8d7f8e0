"""Public test tools: conformance suites for transports and layers, and test doubles.

Third parties run the same suites against their own implementations.
"""

from ._datagrams import DatagramConformance
from ._layers import LayerConformance
from ._memory import memory_stream_pair
from ._streams import StreamConformance
from .pytest_plugin import sim_test

__all__: list[str] = [
    "DatagramConformance",
    "LayerConformance",
    "StreamConformance",
    "memory_stream_pair",
    "sim_test",
]
