"""The compatibility matrix: every set of hello wire versions a client may speak against
every set a server may speak, in several scenarios. Each pair either agrees (the same
agreement on both sides, in the highest common wire version) or fails on both sides
with the same clear reason.

The expected outcome comes from the rules written in docs/negotiation.md, restated
here independently of the implementation. A new wire version adds itself to
``WIRE_SETS`` and keeps every row green.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

import pytest

from netweave import negotiate
from netweave.errors import NegotiationFailed, UsageError
from netweave.negotiate import SUPPORTED_WIRE_VERSIONS, Offer
from netweave.testing import memory_stream_pair

WIRE_SETS: list[tuple[int, ...]] = [
    versions
    for size in range(1, len(SUPPORTED_WIRE_VERSIONS) + 1)
    for versions in itertools.combinations(SUPPORTED_WIRE_VERSIONS, size)
]


@dataclass(frozen=True)
class Scenario:
    name: str
    client: dict[str, Any]
    server: dict[str, Any]
    #: The feature (or "tls") that only wire version 2 can carry, if the scenario requires one.
    needs_v2: str = ""


SCENARIOS = [
    Scenario("plain", {}, {}),
    Scenario(
        "optional-features",
        {"features": {"receipts"}, "heartbeat": 5, "compression": ["zstd:level=7", "none"]},
        {"features": {"receipts", "typing"}, "heartbeat": 10, "compression": ["zstd", "none"]},
    ),
    Scenario(
        "client-requires-feature",
        {"required_features": {"receipts"}},
        {"features": {"receipts"}},
        "feature",
    ),
    Scenario(
        "server-requires-feature",
        {"features": {"receipts"}},
        {"required_features": {"receipts"}},
        "feature",
    ),
]


@dataclass(frozen=True)
class Outcome:
    agreement: negotiate.Agreement | None
    reason: str
    what: str


def offer(wire: tuple[int, ...], fields: dict[str, Any]) -> Offer | None:
    """The offer, or ``None`` when it is refused up front: a side that speaks only
    wire version 1 cannot require what only version 2 carries."""
    if max(wire) >= 2 or not fields.get("required_features"):
        return Offer("matrix", wire_versions=wire, **fields)
    with pytest.raises(UsageError, match="need hello wire version 2"):
        Offer("matrix", wire_versions=wire, **fields)
    return None


async def run(
    client_wire: tuple[int, ...], server_wire: tuple[int, ...], scenario: Scenario
) -> tuple[Outcome, Outcome] | None:
    client_offer = offer(client_wire, scenario.client)
    server_offer = offer(server_wire, scenario.server)
    if client_offer is None or server_offer is None:
        return None
    a, b = memory_stream_pair()
    results = await asyncio.gather(
        negotiate.client(a, client_offer, handshake_timeout=5),
        negotiate.server(b, server_offer, handshake_timeout=5),
        return_exceptions=True,
    )
    outcomes = []
    for result in results:
        if isinstance(result, NegotiationFailed):
            outcomes.append(Outcome(None, result.reason, result.what))
        elif isinstance(result, BaseException):
            raise result
        else:
            outcomes.append(Outcome(result.agreement, "", ""))
            await result.close()
    return outcomes[0], outcomes[1]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
@pytest.mark.parametrize("server_wire", WIRE_SETS, ids=lambda v: "server-v" + "+".join(map(str, v)))
@pytest.mark.parametrize("client_wire", WIRE_SETS, ids=lambda v: "client-v" + "+".join(map(str, v)))
async def test_matrix(
    client_wire: tuple[int, ...], server_wire: tuple[int, ...], scenario: Scenario
) -> None:
    outcome = await run(client_wire, server_wire, scenario)
    requirer = scenario.client if "required_features" in scenario.client else scenario.server
    requirer_wire = client_wire if requirer is scenario.client else server_wire
    if outcome is None:
        assert scenario.needs_v2
        assert max(requirer_wire) < 2
        return
    client, server = outcome
    common = set(client_wire) & set(server_wire)
    if not common:
        assert client.agreement is None
        assert server.agreement is None
        assert client.what == server.what == "wire"
        assert client.reason == server.reason
        assert client.reason.startswith("no common hello wire version: the client speaks")
        return
    wire = max(common)
    if scenario.needs_v2 and wire < 2:
        assert client.agreement is None
        assert server.agreement is None
        assert client.what == server.what == scenario.needs_v2
        assert client.reason == server.reason
        assert "hello wire version 1" in client.reason
        return
    assert client.agreement is not None
    assert client.agreement == server.agreement
    assert client.agreement.wire_version == wire
    if scenario.name == "optional-features":
        agreement = client.agreement
        if wire >= 2:
            assert agreement.features == {"receipts"}
            assert agreement.heartbeat == 5.0
            assert agreement.compression_level == 7
        else:
            assert agreement.features == frozenset()
            assert agreement.heartbeat == 0.0
            assert agreement.compression_level is None


async def test_matrix_report() -> None:
    """The whole matrix in one table (shown with ``pytest -s``); every cell is decided."""
    lines = []
    for scenario in SCENARIOS:
        for client_wire, server_wire in itertools.product(WIRE_SETS, WIRE_SETS):
            outcome = await run(client_wire, server_wire, scenario)
            if outcome is None:
                cell = "refused up front: a v1-only side cannot require a v2 capability"
            elif outcome[0].agreement is not None:
                cell = f"agree (hello v{outcome[0].agreement.wire_version})"
            else:
                cell = f"fail [{outcome[0].what}]: {outcome[0].reason}"
            lines.append(
                f"{scenario.name:24} client {client_wire!s:7} server {server_wire!s:7} {cell}"
            )
    print("\n".join(lines))
    assert len(lines) == len(SCENARIOS) * len(WIRE_SETS) ** 2
