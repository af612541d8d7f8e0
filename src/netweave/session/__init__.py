"""Sessions over channels: RPC, heartbeats, and reliable delivery over datagrams.

* :class:`RpcClient` / :class:`RpcServer` — calls multiplexed over one channel
  with correlation ids, deadlines that travel to the server, cancellation both
  ways, streaming responses, typed remote errors, admission control, and
  heartbeats with idle and handshake timeouts. See ``docs/rpc.md``.
* :class:`ArqConnection` — the sans-IO ARQ core (sequence numbers, cumulative
  and selective ACKs, RFC 6298 RTO with Karn's rule, flow and congestion
  control, fragmentation); :class:`ReliableChannel` runs it over a datagram
  endpoint. See ``docs/arq.md``.
* :class:`ResumingClient` / :class:`SessionServer` — sessions that outlive their
  connections: reconnect with jittered backoff, replay what was in flight,
  deliver every message exactly once and in order, or fail with
  ``SessionExpired`` after the server's grace period.
* :class:`Keepalive` — the sans-IO heartbeat timer they all use.
"""

from ._arq import ArqConnection
from ._arq_config import ArqConfig
from ._events import (
    CallFinished,
    CongestionChanged,
    InFlightChanged,
    PeerSilent,
    Retransmitted,
    RttSampled,
    SessionResumed,
)
from ._keepalive import Keepalive, KeepaliveAction
from ._reliable import ReliableChannel
from ._resume_client import ResumingClient
from ._resume_server import ServerSession, SessionServer
from ._rpc_client import RpcClient, RpcStream
from ._rpc_server import CallContext, Handler, RpcServer
from ._rtt import RttEstimator

__all__ = [
    "ArqConfig",
    "ArqConnection",
    "CallContext",
    "CallFinished",
    "CongestionChanged",
    "Handler",
    "InFlightChanged",
    "Keepalive",
    "KeepaliveAction",
    "PeerSilent",
    "ReliableChannel",
    "ResumingClient",
    "Retransmitted",
    "RpcClient",
    "RpcServer",
    "RpcStream",
    "RttEstimator",
    "RttSampled",
    "ServerSession",
    "SessionResumed",
    "SessionServer",
]
