"""The deterministic simulator: a virtual-time event loop and a simulated network.

Errors raised here (all :class:`~netweave.errors.NetweaveError`)::

    SimulationError               the simulation could not run to its end
    ├── Deadlock                  every task waits for something that can never happen
    ├── SimulationLimitExceeded   max_time or max_steps reached
    ├── HostFailed                a host's main raised (the error is its __cause__)
    ├── UnhandledError            an error reached the loop's exception handler
    └── NondeterminismError       one seed gave two different traces
"""

from ._context import current_host
from ._datagram import SimDatagramTransport
from ._determinism import DEFAULT_EPOCH, DeterminismPatch
from ._errors import Deadlock, SimulationError, SimulationLimitExceeded
from ._events import (
    Healed,
    HostCrashed,
    HostRestarted,
    NetEvent,
    PacketCorrupted,
    PacketDelivered,
    PacketDropped,
    PacketDuplicated,
    PacketEvent,
    PacketReordered,
    PacketSent,
    Partitioned,
    StreamConnect,
)
from ._faults import (
    CORRUPT,
    DROP,
    DUPLICATE,
    PASS,
    REORDER,
    Match,
    Rule,
    RuleChain,
    RuleHandle,
    Verdict,
)
from ._host import Host
from ._link import ExponentialTail, Fixed, Latency, Link, LinkConfig, LinkStats, Normal, Uniform
from ._loop import SimLoop
from ._network import Network, Tap
from ._packet import ACK, FIN, PSH, RST, SYN, Packet
from ._pcap import PcapWriter
from ._scenario import (
    DeterminismReport,
    Divergence,
    NondeterminismError,
    Scenario,
    ScenarioResult,
    check_determinism,
    load_scenario,
    parse_seeds,
    run_scenario,
)
from ._seeds import SeedTree
from ._server import SimServer
from ._simulation import HostFailed, Simulation, UnhandledError
from ._stream import SimStreamTransport
from ._tcp import TcpSettings
from ._trace import TraceRecorder, canonical_line, trace_hash

__all__ = [
    "ACK",
    "CORRUPT",
    "DEFAULT_EPOCH",
    "DROP",
    "DUPLICATE",
    "Deadlock",
    "DeterminismPatch",
    "DeterminismReport",
    "Divergence",
    "ExponentialTail",
    "FIN",
    "Fixed",
    "Healed",
    "Host",
    "HostCrashed",
    "HostFailed",
    "HostRestarted",
    "Latency",
    "Link",
    "LinkConfig",
    "LinkStats",
    "Match",
    "NetEvent",
    "Network",
    "NondeterminismError",
    "Normal",
    "PASS",
    "PSH",
    "Packet",
    "PacketCorrupted",
    "PacketDelivered",
    "PacketDropped",
    "PacketDuplicated",
    "PacketEvent",
    "PacketReordered",
    "PacketSent",
    "Partitioned",
    "PcapWriter",
    "REORDER",
    "RST",
    "Rule",
    "RuleChain",
    "RuleHandle",
    "SYN",
    "Scenario",
    "ScenarioResult",
    "SeedTree",
    "SimDatagramTransport",
    "SimLoop",
    "SimServer",
    "SimStreamTransport",
    "Simulation",
    "SimulationError",
    "SimulationLimitExceeded",
    "StreamConnect",
    "Tap",
    "TcpSettings",
    "TraceRecorder",
    "UnhandledError",
    "Uniform",
    "Verdict",
    "canonical_line",
    "check_determinism",
    "current_host",
    "load_scenario",
    "parse_seeds",
    "run_scenario",
    "trace_hash",
]


def __getattr__(name: str) -> object:
    # ``netweave sim`` (the click group) is imported only when the CLI asks for it.
    if name == "cli":
        from ._cli import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
