"""The Prometheus exporter: events become metrics, scraped over a loopback HTTP port."""

from __future__ import annotations

import asyncio
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

import netweave
from netweave.errors import MissingDependency
from netweave.observe import PrometheusObserver, fanout, serve_metrics
from netweave.resilience import (
    BreakerStateChanged,
    PoolWaited,
    RetryGaveUp,
    RetryScheduled,
)
from netweave.session import (
    CallFinished,
    InFlightChanged,
    Retransmitted,
    RpcClient,
    RpcServer,
    RttSampled,
)


async def scrape(url: str, path: str = "/metrics") -> tuple[str, dict[str, str], str]:
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return status, headers, body.decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_events_become_metrics_served_over_http() -> None:
    metrics = PrometheusObserver()
    rpc = RpcServer(observer=metrics)

    @rpc.method()
    async def echo(request: bytes) -> bytes:
        return request

    async with (
        rpc.serve("tcp://127.0.0.1:0") as server,
        await RpcClient.connect(server.url, observer=metrics) as client,
    ):
        for i in range(5):
            assert await client.call("echo", b"%d" % i) == b"%d" % i
    for event in (
        RetryScheduled("db", 1, 0.1, "ConnectFailed"),
        RetryScheduled("db", 2, 0.2, "ConnectFailed"),
        RetryGaveUp("db", 3, "attempts", "ConnectFailed"),
        BreakerStateChanged("db", "closed", "open"),
        PoolWaited("pool db", 0.03, "acquired", 0),
        Retransmitted("arq", 7, 2, "loss"),
        RttSampled("arq", 0.02, 0.021, 0.005, 0.2),
    ):
        metrics(event)

    async with await serve_metrics(metrics) as endpoint:
        status, headers, body = await scrape(endpoint.url)
        assert status == "HTTP/1.1 200 OK"
        assert headers["Content-Type"].startswith("text/plain")
        values = samples(body)
        missing, _, _ = await scrape(endpoint.url, "/nope")
        assert missing == "HTTP/1.1 404 Not Found"

    def value(metric: str, /, **labels: str) -> float:
        return values[(metric, tuple(sorted(labels.items())))]

    assert value("netweave_rpc_calls_total", role="client", method="echo", outcome="ok") == 5
    assert value("netweave_rpc_calls_total", role="server", method="echo", outcome="ok") == 5
    assert value("netweave_rpc_call_seconds_count", role="client", method="echo") == 5
    assert value("netweave_rpc_in_flight", role="client") == 0
    assert value("netweave_connections_opened_total", transport="tcp", role="client") >= 1
    assert value("netweave_bytes_sent_total") > 0
    assert value("netweave_messages_sent_total") >= 10
    assert value("netweave_retries_total", name="db") == 2
    assert value("netweave_retry_give_ups_total", name="db", reason="attempts") == 1
    assert value("netweave_breaker_state", name="db") == 2
    assert value("netweave_pool_wait_seconds_count", name="pool db", outcome="acquired") == 1
    assert value("netweave_arq_retransmissions_total", reason="loss") == 1
    assert value("netweave_arq_rtt_seconds_sum") == pytest.approx(0.02)


def test_queue_depth_is_summed_over_connections() -> None:
    metrics = PrometheusObserver()
    metrics(InFlightChanged("conn a", 3, "server"))
    metrics(InFlightChanged("conn b", 2, "server"))
    metrics(InFlightChanged("conn a", 0, "server"))
    metrics(CallFinished("conn a", "m", 0.5, "ok", "server"))
    values = samples(metrics.exposition().decode())
    assert values[("netweave_rpc_in_flight", (("role", "server"),))] == 2


def test_observers_do_not_share_state_and_fanout_works() -> None:
    first, second = PrometheusObserver(), PrometheusObserver()
    both = fanout(first, second)
    assert both is not None
    both(RetryScheduled("x", 1, 0.0, "E"))
    first(RetryScheduled("x", 2, 0.0, "E"))
    assert samples(first.exposition().decode())[("netweave_retries_total", (("name", "x"),))] == 2
    assert samples(second.exposition().decode())[("netweave_retries_total", (("name", "x"),))] == 1


def test_missing_prometheus_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingDependency, match=r"netweave\[metrics\]"):
        PrometheusObserver()


async def test_metrics_port_in_use_is_a_listen_error() -> None:
    metrics = PrometheusObserver()
    async with await serve_metrics(metrics) as endpoint:
        with pytest.raises(netweave.ListenFailed):
            await serve_metrics(metrics, port=endpoint.port)
