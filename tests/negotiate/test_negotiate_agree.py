"""Agreement rules (pure functions): the server's preference wins within the intersection,
every mismatch has a reason, and the client checks what the server chose."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netweave.errors import NegotiationFailed, UsageError
from netweave.negotiate import Agreement, Offer, agree, check_agreement


def hello(version: int = 2, **fields: Any) -> Any:
    fields.setdefault("protocol", "chat")
    return Offer(**fields).hello(version)


def test_server_preference_wins_within_the_intersection() -> None:
    client = hello(
        versions=[3, 2, 1],
        framings=["varint", "lp4"],
        codecs=["msgpack", "cbor", "json"],
        compression=["lz4", "zstd", "none"],
    )
    server = hello(
        versions=[1, 2, 4],
        framings=["lp4", "varint"],
        codecs=["json", "cbor"],
        compression=["zlib", "zstd", "lz4"],
    )
    agreement = agree(client, server, 2)
    assert agreement.version == 1
    assert agreement.framing == "lp4"
    assert agreement.codec == "json"
    assert agreement.compression == "zstd"  # zlib is not offered by the client


def test_numbers_are_combined() -> None:
    client = hello(max_frame=4096, heartbeat=10)
    server = hello(max_frame=1 << 20, heartbeat=30)
    agreement = agree(client, server, 2)
    assert agreement.max_frame == 4096
    assert agreement.heartbeat == 10.0
    # zero means "no heartbeat wanted": the other side's interval applies
    assert agree(hello(heartbeat=0), hello(heartbeat=7.5), 2).heartbeat == 7.5
    assert agree(hello(heartbeat=0), hello(heartbeat=0), 2).heartbeat == 0.0
    # version 1 carries no heartbeat
    assert agree(hello(1, heartbeat=10), hello(heartbeat=30), 1).heartbeat == 0.0


@pytest.mark.parametrize(
    ("client_level", "server_level", "expected"),
    [(None, None, None), (9, None, 9), (None, 1, 1), (9, 1, 1)],
)
def test_compression_level(
    client_level: int | None, server_level: int | None, expected: int | None
) -> None:
    def entry(level: int | None) -> str:
        return "zstd" if level is None else f"zstd:level={level}"

    client = hello(compression=[entry(client_level)])
    server = hello(compression=[entry(server_level), "none"])
    agreement = agree(client, server, 2)
    assert agreement.compression == "zstd"
    assert agreement.compression_level == expected
    assert agree(hello(1, compression=[entry(client_level)]), server, 1).compression_level is None


def test_features_both_offer_are_agreed() -> None:
    client = hello(features={"receipts", "typing", "emoji"})
    server = hello(features={"receipts", "typing", "presence"})
    agreement = agree(client, server, 2)
    assert agreement.features == {"receipts", "typing"}
    assert agreement.has_feature("typing")
    assert not agreement.has_feature("emoji")
    assert not agreement.has_feature("presence")


@pytest.mark.parametrize(
    ("client_tls", "server_tls", "expected"),
    [
        ("never", "never", False),
        ("never", "optional", False),
        ("optional", "never", False),
        ("optional", "optional", True),
        ("required", "optional", True),
        ("optional", "required", True),
        ("required", "required", True),
    ],
)
def test_tls_agreement(client_tls: Any, server_tls: Any, expected: bool) -> None:
    assert agree(hello(tls=client_tls), hello(tls=server_tls), 2).tls is expected


MISMATCHES = [
    (
        {"protocol": "chat"},
        {"protocol": "kv"},
        "protocol",
        "protocol mismatch: the client speaks 'chat', the server speaks 'kv'",
    ),
    (
        {"versions": [3]},
        {"versions": [1, 2]},
        "version",
        "no common protocol version: the client offers 3; the server accepts 1, 2",
    ),
    (
        {"framings": ["varint"]},
        {"framings": ["lp4"]},
        "framing",
        "no common framing: the client offers varint; the server accepts lp4",
    ),
    (
        {"codecs": ["cbor"]},
        {"codecs": ["json", "msgpack"]},
        "codec",
        "no common codec: the client offers cbor; the server accepts json, msgpack",
    ),
    (
        {"compression": ["lz4"]},
        {"compression": ["zstd", "none"]},
        "compression",
        "no common compression: the client offers lz4; the server accepts zstd, none",
    ),
    (
        {"features": {"a"}},
        {"required_features": {"receipts", "b"}},
        "feature",
        "the server requires feature 'b', 'receipts', which the client does not offer",
    ),
    (
        {"required_features": {"receipts"}},
        {"features": {"typing"}},
        "feature",
        "the client requires feature 'receipts', which the server does not offer",
    ),
    (
        {"tls": "never"},
        {"tls": "required"},
        "tls",
        "the server requires TLS, but the client does not offer it",
    ),
    (
        {"tls": "required"},
        {"tls": "never"},
        "tls",
        "the client requires TLS, but the server does not offer it",
    ),
]


@pytest.mark.parametrize(("client", "server", "what", "reason"), MISMATCHES)
def test_every_mismatch_names_what_did_not_match(
    client: dict[str, Any], server: dict[str, Any], what: str, reason: str
) -> None:
    with pytest.raises(NegotiationFailed) as info:
        agree(hello(**client), hello(**server), 2)
    assert info.value.what == what
    assert info.value.reason == reason
    assert info.value.side == "local"


def test_first_failing_check_is_reported() -> None:
    with pytest.raises(NegotiationFailed) as info:
        agree(hello(codecs=["cbor"], versions=[9]), hello(codecs=["json"]), 2)
    assert info.value.what == "version"


def test_version_1_peers_cannot_satisfy_requirements() -> None:
    with pytest.raises(NegotiationFailed, match=r"hello wire version 1 carries no feature flags"):
        agree(hello(1), hello(required_features={"receipts"}), 1)
    with pytest.raises(NegotiationFailed, match=r"hello wire version 1 cannot negotiate TLS"):
        agree(hello(1, tls="optional"), hello(tls="required"), 1)
    agreement = agree(hello(1), hello(features={"receipts"}, tls="optional"), 1)
    assert agreement.features == frozenset()
    assert agreement.tls is False


@settings(max_examples=200)
@given(
    client_codecs=st.lists(
        st.sampled_from(["json", "cbor", "msgpack", "raw"]), min_size=1, unique=True
    ),
    server_codecs=st.lists(
        st.sampled_from(["json", "cbor", "msgpack", "raw"]), min_size=1, unique=True
    ),
    client_features=st.frozensets(st.sampled_from(["a", "b", "c"])),
    server_features=st.frozensets(st.sampled_from(["a", "b", "c"])),
)
def test_agreement_is_deterministic_and_within_both_offers(
    client_codecs: list[str],
    server_codecs: list[str],
    client_features: frozenset[str],
    server_features: frozenset[str],
) -> None:
    client_offer = Offer("p", codecs=client_codecs, features=client_features)
    client = client_offer.hello(2)
    server = hello(protocol="p", codecs=server_codecs, features=server_features)
    common = [codec for codec in server_codecs if codec in client_codecs]
    if not common:
        with pytest.raises(NegotiationFailed):
            agree(client, server, 2)
        return
    first = agree(client, server, 2)
    assert first == agree(client, server, 2)
    assert first.codec == common[0]
    assert first.features == client_features & server_features
    check_agreement(client_offer, first)  # within the client's offer
    # what the client decodes from the AGREE is the same agreement
    assert Agreement.from_hello(first.to_hello(), 2) == first


def base_agreement(**changes: Any) -> Agreement:
    fields: dict[str, Any] = {
        "wire_version": 2,
        "protocol": "chat",
        "version": 1,
        "framing": "lp4",
        "codec": "json",
        "compression": "none",
        "compression_level": None,
        "max_frame": 1024,
        "heartbeat": 0.0,
        "features": frozenset(),
        "tls": False,
    }
    fields.update(changes)
    return Agreement(**fields)


@pytest.mark.parametrize(
    ("changes", "what"),
    [
        ({"protocol": "kv"}, "protocol"),
        ({"version": 7}, "version"),
        ({"framing": "varint"}, "framing"),
        ({"codec": "cbor"}, "codec"),
        ({"compression": "zstd"}, "compression"),
        ({"max_frame": 1 << 30}, "max_frame"),
        ({"features": frozenset({"spy"})}, "feature"),
        ({"tls": True}, "tls"),
    ],
)
def test_client_rejects_an_agreement_outside_its_offer(changes: dict[str, Any], what: str) -> None:
    offer = Offer("chat", max_frame=1024)
    check_agreement(offer, base_agreement())
    with pytest.raises(NegotiationFailed) as info:
        check_agreement(offer, base_agreement(**changes))
    assert info.value.what == what
    assert info.value.side == "remote"
    assert "the server's agreement" in info.value.reason


def test_client_rejects_an_agreement_missing_its_requirements() -> None:
    with pytest.raises(NegotiationFailed, match="requires"):
        check_agreement(Offer("chat", required_features={"x"}), base_agreement())
    with pytest.raises(NegotiationFailed, match="requires"):
        check_agreement(Offer("chat", tls="required"), base_agreement())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"protocol": ""}, "protocol must be"),
        ({"protocol": "x" * 256}, "protocol must be"),
        ({"versions": []}, "versions must be"),
        ({"versions": [70000]}, "versions must be"),
        ({"versions": [1, 1]}, "repeat"),
        ({"codecs": []}, "at least one codec"),
        ({"codecs": "json"}, "list of names"),
        ({"codecs": ["json", "json"]}, "repeat"),
        ({"codecs": ["1json"]}, "not a valid layer name"),
        ({"codecs": ["json,cbor"]}, "one name"),
        ({"framings": ["lp4:max=10"]}, "set max_frame"),
        ({"compression": ["none:level=1"]}, "takes no parameters"),
        ({"compression": ["zstd:level=high"]}, "not an integer"),
        ({"compression": ["zstd:level=200"]}, "outside -128..127"),
        ({"max_frame": 0}, "max_frame"),
        ({"heartbeat": -1}, "heartbeat"),
        ({"features": {"Bad Name"}}, "not a valid name"),
        ({"features": "abc"}, "collection of names"),
        ({"tls": "maybe"}, "tls must be"),
        ({"wire_versions": [3]}, "wire_versions"),
        ({"wire_versions": []}, "wire_versions"),
        ({"wire_versions": [1], "required_features": {"x"}}, "need hello wire version 2"),
        ({"wire_versions": [1], "tls": "required"}, "need hello wire version 2"),
    ],
)
def test_offer_validation(fields: dict[str, Any], message: str) -> None:
    fields.setdefault("protocol", "chat")
    with pytest.raises(UsageError, match=message):
        Offer(**fields)


def test_offer_is_a_value() -> None:
    a = Offer("chat", codecs=["json"], features=["x"], required_features=["y"])
    b = Offer("chat", codecs=("json",), features={"x"}, required_features={"y"})
    assert a == b
    assert hash(a) == hash(b)
    assert a.features == {"x", "y"}  # required features count as offered
    assert "protocol='chat'" in repr(a)
    assert a.wire_versions == (2, 1)


def test_describe_says_what_was_agreed() -> None:
    text = base_agreement(
        compression="zstd", compression_level=3, features=frozenset({"x"}), tls=True
    ).describe()
    assert text.startswith("chat v1 over lp4/zstd(3)/json")
    assert "features x" in text
    assert "TLS" in text
