"""Prometheus metrics from netweave events (needs the ``metrics`` extra).

:class:`PrometheusObserver` is an observer: pass it (or a :func:`fanout` with
it) as ``observer=`` and it keeps counters, gauges and histograms in its own
``prometheus_client`` registry. :func:`serve_metrics` exposes them in the text
exposition format over HTTP on a port of the running event loop (no thread).

Metrics (all prefixed ``netweave_``):

==================================  =========  ===============================
name                                type       labels
==================================  =========  ===============================
connections_opened_total            counter    transport, role
connections_closed_total            counter    reason
connections_open                    gauge
bytes_sent_total / _received_total  counter
messages_sent_total / _received     counter
message_size_bytes                  histogram
protocol_violations_total           counter    layer
retries_total                       counter    name
retry_give_ups_total                counter    name, reason
breaker_state                       gauge      name (0 closed, 1 half-open, 2 open)
breaker_transitions_total           counter    name, state
pool_wait_seconds                   histogram  name, outcome
rate_limit_wait_seconds             histogram  name
rpc_calls_total                     counter    role, method, outcome
rpc_call_seconds                    histogram  role, method
rpc_in_flight                       gauge      role (summed over connections)
peer_silent_total                   counter    stage
arq_retransmissions_total           counter    reason
arq_rtt_seconds                     histogram
arq_congestion_events_total         counter    cause
==================================  =========  ===============================

Rules of this file: ``prometheus_client`` is imported only when an exporter is
built; without it, ``MissingDependency`` names the extra. Events the observer
does not know are ignored; it never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Self, final

from ..errors import MissingDependency, UsageError, map_os_errors
from ._events import (
    BytesReceived,
    BytesSent,
    ConnectionClosed,
    ConnectionOpened,
    Event,
    MessageReceived,
    MessageSent,
    ProtocolViolation,
)

__all__ = ["MetricsServer", "PrometheusObserver", "serve_metrics"]

_LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
_SIZE_BUCKETS: Final = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)
_BREAKER_VALUES: Final = {"closed": 0, "half-open": 1, "open": 2}
#: The request head a scraper may send, at most.
_MAX_REQUEST: Final = 8192


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise MissingDependency("Prometheus metrics", "prometheus_client", "metrics") from None
    return prometheus_client


@final
class PrometheusObserver:
    """An observer that counts events into Prometheus metrics (see the module docstring).

    ``registry`` defaults to a fresh ``CollectorRegistry`` of its own, so two
    observers never clash and nothing global is touched.
    """

    def __init__(self, *, registry: Any = None, namespace: str = "netweave") -> None:
        prom = _prometheus()
        self.registry = registry if registry is not None else prom.CollectorRegistry()
        self._content_type: str = prom.CONTENT_TYPE_LATEST
        self._generate: Callable[[Any], bytes] = prom.generate_latest
        Counter, Gauge, Histogram = prom.Counter, prom.Gauge, prom.Histogram
        reg = {"registry": self.registry, "namespace": namespace}

        self.opened = Counter(
            "connections_opened", "Connections opened.", ["transport", "role"], **reg
        )
        self.closed = Counter("connections_closed", "Connections closed.", ["reason"], **reg)
        self.open = Gauge("connections_open", "Connections open now.", **reg)
        self.bytes_sent = Counter("bytes_sent", "Bytes handed to the network.", **reg)
        self.bytes_received = Counter("bytes_received", "Bytes received.", **reg)
        self.messages_sent = Counter("messages_sent", "Messages (frames) sent.", **reg)
        self.messages_received = Counter("messages_received", "Messages (frames) received.", **reg)
        self.message_size = Histogram(
            "message_size_bytes", "Encoded size of sent messages.", buckets=_SIZE_BUCKETS, **reg
        )
        self.violations = Counter(
            "protocol_violations", "Input rejected by a layer.", ["layer"], **reg
        )
        self.retries = Counter("retries", "Retries scheduled.", ["name"], **reg)
        self.give_ups = Counter(
            "retry_give_ups", "Retry policies that gave up.", ["name", "reason"], **reg
        )
        self.breaker_state = Gauge(
            "breaker_state", "Breaker state: 0 closed, 1 half-open, 2 open.", ["name"], **reg
        )
        self.breaker_transitions = Counter(
            "breaker_transitions", "Breaker state changes.", ["name", "state"], **reg
        )
        self.pool_wait = Histogram(
            "pool_wait_seconds",
            "Time checkouts waited for a pooled connection.",
            ["name", "outcome"],
            buckets=_LATENCY_BUCKETS,
            **reg,
        )
        self.rate_wait = Histogram(
            "rate_limit_wait_seconds",
            "Time callers waited on a rate limiter.",
            ["name"],
            buckets=_LATENCY_BUCKETS,
            **reg,
        )
        self.calls = Counter(
            "rpc_calls", "RPC calls finished.", ["role", "method", "outcome"], **reg
        )
        self.call_seconds = Histogram(
            "rpc_call_seconds",
            "RPC call latency.",
            ["role", "method"],
            buckets=_LATENCY_BUCKETS,
            **reg,
        )
        self.in_flight = Gauge(
            "rpc_in_flight", "RPC calls in flight (queue depth).", ["role"], **reg
        )
        self.silent = Counter("peer_silent", "Connections cut for silence.", ["stage"], **reg)
        self.retransmissions = Counter(
            "arq_retransmissions", "ARQ segments sent again.", ["reason"], **reg
        )
        self.rtt = Histogram(
            "arq_rtt_seconds", "ARQ round-trip time samples.", buckets=_LATENCY_BUCKETS, **reg
        )
        self.congestion = Counter(
            "arq_congestion_events", "ARQ congestion window changes.", ["cause"], **reg
        )
        self._depths: dict[tuple[str, str], int] = {}
        self._handlers = self._table()

    def _table(self) -> dict[type[Event], Callable[[Any], None]]:
        # Imported here: those packages import this one for Event.
        from ..resilience import (
            BreakerStateChanged,
            PoolWaited,
            RateLimited,
            RetryGaveUp,
            RetryScheduled,
        )
        from ..session import (
            CallFinished,
            CongestionChanged,
            InFlightChanged,
            PeerSilent,
            Retransmitted,
            RttSampled,
        )

        return {
            ConnectionOpened: self._on_opened,
            ConnectionClosed: self._on_closed,
            BytesSent: lambda e: self.bytes_sent.inc(e.count),
            BytesReceived: lambda e: self.bytes_received.inc(e.count),
            MessageSent: self._on_message_sent,
            MessageReceived: lambda e: self.messages_received.inc(e.count),
            ProtocolViolation: lambda e: self.violations.labels(e.layer).inc(),
            RetryScheduled: lambda e: self.retries.labels(e.source).inc(),
            RetryGaveUp: lambda e: self.give_ups.labels(e.source, e.reason).inc(),
            BreakerStateChanged: self._on_breaker,
            PoolWaited: lambda e: self.pool_wait.labels(e.source, e.outcome).observe(e.waited),
            RateLimited: lambda e: self.rate_wait.labels(e.source).observe(e.delay),
            CallFinished: self._on_call,
            InFlightChanged: self._on_in_flight,
            PeerSilent: lambda e: self.silent.labels(e.stage).inc(),
            Retransmitted: lambda e: self.retransmissions.labels(e.reason).inc(),
            RttSampled: lambda e: self.rtt.observe(e.rtt),
            CongestionChanged: lambda e: self.congestion.labels(e.cause).inc(),
        }

    def __call__(self, event: Event, /) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _on_opened(self, event: ConnectionOpened) -> None:
        self.opened.labels(event.transport, event.role).inc()
        self.open.inc()

    def _on_closed(self, event: ConnectionClosed) -> None:
        self.closed.labels(event.reason).inc()
        self.open.dec()

    def _on_message_sent(self, event: MessageSent) -> None:
        self.messages_sent.inc()
        self.message_size.observe(event.size)

    def _on_breaker(self, event: Any) -> None:
        self.breaker_state.labels(event.source).set(_BREAKER_VALUES.get(event.state, -1))
        self.breaker_transitions.labels(event.source, event.state).inc()

    def _on_call(self, event: Any) -> None:
        self.calls.labels(event.role, event.method, event.outcome).inc()
        self.call_seconds.labels(event.role, event.method).observe(event.seconds)

    def _on_in_flight(self, event: Any) -> None:
        key = (event.role, event.source)
        if event.count:
            self._depths[key] = event.count
        else:
            self._depths.pop(key, None)
        total = sum(n for (role, _), n in self._depths.items() if role == event.role)
        self.in_flight.labels(event.role).set(total)

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text exposition format."""
        return self._generate(self.registry)

    @property
    def content_type(self) -> str:
        """The HTTP ``Content-Type`` of :meth:`exposition`."""
        return self._content_type


@final
class MetricsServer:
    """An HTTP endpoint serving ``GET /metrics``; made by :func:`serve_metrics`."""

    def __init__(self, observer: PrometheusObserver, server: asyncio.Server) -> None:
        self._observer = observer
        self._server = server
        host, port = server.sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}/metrics"
        self.port: int = port

    async def close(self) -> None:
        """Stop serving. Idempotent."""
        self._server.close()
        await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def serve_metrics(
    observer: PrometheusObserver,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    request_timeout: float = 5.0,
) -> MetricsServer:
    """Serve ``observer``'s metrics at ``http://host:port/metrics`` on the running loop.

    ``port=0`` picks a free port (see :attr:`MetricsServer.port`). Each request
    head must arrive within ``request_timeout`` seconds and fit in 8 KiB, or the
    connection is dropped. Any path other than ``/metrics`` (or ``/``) gets 404.
    """
    if not isinstance(observer, PrometheusObserver):
        raise UsageError("serve_metrics needs a PrometheusObserver")

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(request_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
            method, _, rest = head.partition(b" ")
            path = rest.partition(b" ")[0].partition(b"?")[0]
            if method not in (b"GET", b"HEAD"):
                status, body, kind = b"405 Method Not Allowed", b"use GET\n", "text/plain"
            elif path in (b"/metrics", b"/"):
                status, body, kind = b"200 OK", observer.exposition(), observer.content_type
            else:
                status, body, kind = b"404 Not Found", b"try /metrics\n", "text/plain"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: " + kind.encode()
                + b"\r\nContent-Length: " + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + (b"" if method == b"HEAD" else body)
            )  # fmt: skip
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a slow, truncated or oversized request: just drop the connection
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    with map_os_errors(during="listen", target=f"http://{host}:{port}/metrics"):
        server = await asyncio.start_server(respond, host, port, limit=_MAX_REQUEST)
    return MetricsServer(observer, server)
