"""The negotiation handshake as two sans-IO state machines: bytes in, bytes and a result out.

Rules of this file:

* A machine never raises for what the peer sends. It moves to ``"failed"``
  with :attr:`Handshake.error` set (``NegotiationFailed`` or ``DecodeError``)
  and, where the peer deserves a reason, queues a REFUSE first. The driver
  sends :meth:`Handshake.data_to_send` whatever the outcome, then closes.
* The exchange (``docs/negotiation.md``): the client sends HELLO in its highest
  wire version. The server answers AGREE or REFUSE in that version, or, if it
  does not speak that version, RETRY listing the versions it does speak (at
  most once); the client then sends HELLO in the highest common version, or
  REFUSE when there is none or when its offer needs more than that version
  can carry.
* Bytes after the final message are handed over untouched in
  :attr:`Handshake.leftover` (they belong to the agreed stack, or to TLS).
* Held input is bounded by one message header plus ``MAX_BODY`` bytes.
"""

from __future__ import annotations

from typing import Final, Literal

from ..errors import DecodeError, NegotiationFailed, ProtocolError, UsageError
from ._agree import Agreement, Offer, agree, check_agreement
from ._wire import (
    MAGIC,
    Message,
    MessageType,
    decode_hello,
    decode_refuse,
    decode_retry,
    encode_hello,
    encode_refuse,
    encode_retry,
    read_message,
)

__all__ = ["ClientHandshake", "Handshake", "ServerHandshake"]

State = Literal["running", "agreed", "failed"]
_MALFORMED: Final = "malformed"


class Handshake:
    """What both machines share: buffers, state and the outcome."""

    side: Literal["client", "server"]
    #: Whether a malformed message from the peer is answered with a REFUSE: only
    #: the server's peer (a client waiting for the answer to its HELLO) reads one.
    refuses_malformed: bool

    def __init__(self, offer: Offer) -> None:
        self.offer = offer
        self._inbox = bytearray()
        self._outbox: list[bytes] = []
        self._state: State = "running"
        self._agreement: Agreement | None = None
        self._error: NegotiationFailed | ProtocolError | None = None
        self._leftover = b""

    @property
    def state(self) -> State:
        """``"running"`` until the handshake ``"agreed"`` or ``"failed"``."""
        return self._state

    @property
    def agreement(self) -> Agreement | None:
        """The agreement, once :attr:`state` is ``"agreed"``."""
        return self._agreement

    @property
    def error(self) -> NegotiationFailed | ProtocolError | None:
        """Why the handshake failed, once :attr:`state` is ``"failed"``."""
        return self._error

    @property
    def leftover(self) -> bytes:
        """Bytes received after the final negotiation message."""
        return self._leftover

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete message."""
        return len(self._inbox)

    def data_to_send(self) -> bytes:
        """Bytes to send to the peer now (hand over and forget)."""
        out = b"".join(self._outbox)
        self._outbox.clear()
        return out

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; advances :attr:`state`. ``UsageError`` once finished."""
        if self._state != "running":
            raise UsageError(f"the {self.side} handshake is already {self._state}")
        self._inbox += data
        while self.state == "running":
            try:
                parsed = read_message(self._inbox)
            except ProtocolError as exc:
                self._fail(exc, refuse=self.refuses_malformed and self._inbox[:4] == MAGIC)
                return
            if parsed is None:
                return
            message, used = parsed
            del self._inbox[:used]
            try:
                self._handle(message)
            except ProtocolError as exc:
                self._fail(exc, refuse=self.refuses_malformed, version=message.version)
        if self._agreement is not None:
            self._leftover = bytes(self._inbox)
            self._inbox.clear()

    def end_of_input(self) -> None:
        """The peer ended the stream: a failure if the handshake was not finished."""
        if self._state == "running":
            peer = "server" if self.side == "client" else "client"
            self._fail(
                NegotiationFailed(
                    f"the {peer} closed the connection before negotiation finished",
                    side="remote",
                    what="closed",
                )
            )

    def _handle(self, message: Message) -> None:
        raise NotImplementedError

    def _send(self, data: bytes) -> None:
        self._outbox.append(data)

    def _fail(
        self,
        error: NegotiationFailed | ProtocolError,
        *,
        refuse: bool = False,
        version: int = 1,
        what: str = _MALFORMED,
    ) -> None:
        if refuse:
            self._send(encode_refuse(version, what, str(error)))
        self._state = "failed"
        self._error = error
        self._inbox.clear()

    def _refuse(self, version: int, error: NegotiationFailed) -> None:
        self._fail(error, refuse=True, version=version, what=error.what)

    def _unexpected(self, message: Message) -> ProtocolError:
        peer = "server" if self.side == "client" else "client"
        return DecodeError(f"unexpected {message.type.name} from the {peer}", layer="negotiate")


class ClientHandshake(Handshake):
    """The client side: queues its HELLO at once; see the module docstring."""

    side: Literal["client", "server"] = "client"
    refuses_malformed = False

    def __init__(self, offer: Offer) -> None:
        super().__init__(offer)
        self._version = offer.wire_versions[0]
        self._retried = False
        self._send(encode_hello(offer.hello(self._version), self._version))

    @property
    def wire_version(self) -> int:
        """The wire version of the HELLO sent last."""
        return self._version

    def _handle(self, message: Message) -> None:
        if message.type == MessageType.REFUSE:
            what, reason = decode_refuse(message.body)
            self._fail(NegotiationFailed(reason, side="remote", what=what))
        elif message.type == MessageType.RETRY and not self._retried:
            self._retry(decode_retry(message.body), message.version)
        elif message.type == MessageType.AGREE:
            if message.version != self._version:
                raise self._unexpected(message)
            hello = decode_hello(message.version, message.body, MessageType.AGREE)
            agreement = Agreement.from_hello(hello, message.version)
            try:
                check_agreement(self.offer, agreement)
            except NegotiationFailed as exc:
                self._fail(exc)
                return
            self._agreement = agreement
            self._state = "agreed"
        else:
            raise self._unexpected(message)

    def _retry(self, theirs: tuple[int, ...], header_version: int) -> None:
        self._retried = True
        common = [v for v in self.offer.wire_versions if v in theirs]
        if not common:
            reason = (
                f"no common hello wire version: the client speaks "
                f"{', '.join(map(str, sorted(self.offer.wire_versions)))}; the server speaks "
                f"{', '.join(map(str, sorted(theirs)))}"
            )
            self._refuse(header_version, NegotiationFailed(reason, side="local", what="wire"))
            return
        version = common[0]
        if version < 2:
            shortfall = self.offer.v1_shortfall("client")
            if shortfall is not None:
                what, reason = shortfall
                self._refuse(version, NegotiationFailed(reason, side="local", what=what))
                return
        self._version = version
        self._send(encode_hello(self.offer.hello(version), version))


class ServerHandshake(Handshake):
    """The server side: waits for a HELLO; see the module docstring."""

    side: Literal["client", "server"] = "server"
    refuses_malformed = True

    def __init__(self, offer: Offer) -> None:
        super().__init__(offer)
        self._retried = False
        self._full = offer.hello(max(offer.wire_versions))

    def _handle(self, message: Message) -> None:
        if message.type == MessageType.REFUSE:
            what, reason = decode_refuse(message.body)
            self._fail(NegotiationFailed(reason, side="remote", what=what))
        elif message.type != MessageType.HELLO:
            raise self._unexpected(message)
        elif message.version not in self.offer.wire_versions:
            if self._retried:
                raise self._unexpected(message)
            self._retried = True
            ours = tuple(sorted(self.offer.wire_versions))
            self._send(encode_retry(max(ours), ours))
        else:
            client = decode_hello(message.version, message.body)
            try:
                agreement = agree(client, self._full, message.version)
            except NegotiationFailed as exc:
                self._refuse(message.version, exc)
                return
            self._send(encode_hello(agreement.to_hello(), message.version, MessageType.AGREE))
            self._agreement = agreement
            self._state = "agreed"
