"""TLS over any stream: :class:`TlsConnection` and :func:`start_tls`.

:func:`start_tls` wraps *any* :class:`StreamConnection` (TCP, Unix, memory,
simulated) in the sans-IO :class:`~netweave.layers.Tls` layer, drives the
handshake within ``handshake_timeout`` seconds of the running loop's clock,
and returns a :class:`TlsConnection` that sends and receives plaintext.

``tls://host:port`` (TCP plus this connection) lives in ``_tls_transport.py``.

Rules of this file:

* The adapter only moves bytes: every TLS decision is the layer's.
* Small writes are coalesced: ``send``/``send_nowait`` of up to 16 KiB hold
  the plaintext, and everything held becomes as few records as possible (one
  per 16 KiB) when the loop runs the scheduled flush, before ``receive`` waits,
  once 16 KiB are held, and on ``send_eof``/``close``.
* Records reach ``inner`` in the order the layer made them: at once through
  ``inner.send_nowait`` (nothing queued, no send in progress), or appended to
  the backlog, which one task sends under the send lock; ``send`` encrypts and
  sends under that lock, the backlog first. While a backlog exists
  ``send_nowait`` refuses, so ``send`` waits: that is the backpressure.
* A handshake that fails sends OpenSSL's alert (best effort) and closes the
  inner connection; one that times out aborts it and raises
  ``PeerUnresponsive`` (``ConnectFailed`` from ``TlsTransport.connect``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Mapping
from typing import Any, Final, final

from ..errors import (
    ClosedResourceError,
    NetweaveError,
    PeerUnresponsive,
    TlsError,
    UsageError,
)
from ..layers import Tls
from .base import StreamConnection

__all__ = ["DEFAULT_HANDSHAKE_TIMEOUT", "TlsConnection", "start_tls"]

#: Seconds a TLS handshake may take before the peer is cut off.
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0
#: Plaintext encrypted per step of a large ``send`` (bounds the ciphertext held at once).
_SEND_STEP: Final = 256 * 1024
#: The most plaintext held for coalescing: one full TLS record.
_HOLD_LIMIT: Final = 16 * 1024
#: Seconds ``close`` waits for ciphertext still queued to be taken by the peer.
_CLOSE_TIMEOUT: Final = 10.0


async def _send_all(inner: StreamConnection, chunks: list[bytes]) -> None:
    for chunk in chunks:
        await inner.send(chunk)


async def _handshake(inner: StreamConnection, layer: Tls, timeout: float | None) -> list[bytes]:
    """Run the handshake; return plaintext that arrived with its last records."""
    plaintext: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            await _send_all(inner, layer.data_to_send())
            while not layer.handshake_complete:
                if layer.failure is not None:
                    raise layer.failure
                chunk = await inner.receive()
                if chunk:
                    plaintext.extend(layer.decode(chunk))
                else:
                    layer.end_of_input()  # raises: the peer hung up mid-handshake
                await _send_all(inner, layer.data_to_send())
    except TimeoutError:
        inner.abort()
        raise PeerUnresponsive(
            f"TLS handshake with {inner.remote_address} did not finish within {timeout} s"
        ) from None
    except TlsError:
        # Tell the peer why (OpenSSL queued an alert), then hang up.
        with contextlib.suppress(NetweaveError):
            await _send_all(inner, layer.data_to_send())
        with contextlib.suppress(NetweaveError):
            await inner.close()
        raise
    except BaseException:
        inner.abort()
        raise
    return plaintext


async def start_tls(
    inner: StreamConnection,
    context: ssl.SSLContext,
    *,
    server_side: bool,
    server_hostname: str | None = None,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
) -> TlsConnection:
    """Run TLS over ``inner`` and return the connection once the handshake is done.

    Raises ``UsageError`` for a bad configuration (before any I/O),
    :class:`~netweave.errors.TlsError` when the handshake fails (certificate
    not trusted, peer refused ours, peer not speaking TLS, stream cut short),
    ``PeerUnresponsive`` when it does not finish within ``handshake_timeout``
    seconds, and what ``inner`` raises. On any failure ``inner`` is closed.
    """
    layer = Tls(context, server_side=server_side, server_hostname=server_hostname)
    plaintext = await _handshake(inner, layer, handshake_timeout)
    return TlsConnection(inner, layer, initial=plaintext)


@final
class TlsConnection(StreamConnection):
    """Plaintext over a TLS session on ``inner``; build it with :func:`start_tls`.

    Behaves as :class:`StreamConnection` states. ``send_eof`` sends our
    ``close_notify`` (then ends ``inner``'s sending side); ``receive`` returns
    ``b""`` after the peer's ``close_notify``, and raises ``TlsError`` if the
    stream ends without one (truncated) or a record was tampered with (the
    connection is then aborted). ``close`` sends ``close_notify`` when it can,
    then closes ``inner``. Small writes are coalesced into few records (see
    :meth:`send_nowait`); when ``inner`` has a fast path, ``send`` of up to 16 KiB
    uses it too and returns without waiting unless the peer is not reading.

    ``extra`` adds ``"peercert"`` (the peer's verified certificate as a dict, or
    ``None``), ``"peercert_der"``, ``"cipher"``, ``"tls_version"``,
    ``"alpn_protocol"``, ``"server_hostname"`` (client: the name checked;
    server: the SNI name the client asked for), ``"ssl_object"`` and
    ``"sslcontext"``; other names go to ``inner``.
    """

    def __init__(
        self, inner: StreamConnection, layer: Tls, *, initial: list[bytes] | None = None
    ) -> None:
        if not layer.handshake_complete:
            raise UsageError("TlsConnection needs a layer whose handshake is complete")
        self._inner = inner
        self._tls = layer
        self._rbuf: deque[bytes] = deque(chunk for chunk in initial or () if chunk)
        self._peer_eof = layer.peer_closed
        self._eof_sent = False
        self._closed = False
        self._failure: TlsError | None = None
        self._send_lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        # Coalescing (see the rules of this file): plaintext held, its flush, and the
        # ciphertext a task must send because the inner connection could not take it.
        self._fast = type(inner).send_nowait is not StreamConnection.send_nowait
        self._held: list[bytes] = []
        self._held_len = 0
        self._flush_handle: asyncio.Handle | None = None
        self._backlog: list[bytes] | None = None
        self._pusher: asyncio.Task[None] | None = None

    @property
    def inner(self) -> StreamConnection:
        """The connection carrying the ciphertext."""
        return self._inner

    @property
    def layer(self) -> Tls:
        """The TLS layer (for information: version, cipher, peer certificate)."""
        return self._tls

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed or self._eof_sent:
            raise self._closed_error("send", "send_eof" if not self._closed else "")
        if not data:
            return
        if len(data) <= _HOLD_LIMIT and self.send_nowait(
            data if type(data) is bytes else bytes(data)
        ):
            return
        if self._held:
            data = b"".join([*self._held, data])
            self._drop_held()
        encode = self._tls.encode
        async with self._send_lock:
            try:
                if len(data) <= _SEND_STEP:
                    await self._send_locked(encode(bytes(data)))
                    return
                view = memoryview(data)
                for start in range(0, len(view), _SEND_STEP):
                    await self._send_locked(encode(bytes(view[start : start + _SEND_STEP])))
            except TlsError as exc:
                self._fail(exc)
                raise

    def send_nowait(self, data: bytes, *, more: bool = False) -> bool:
        """Hold ``data`` (at most 16 KiB) to encrypt it together with what else is sent in
        this loop iteration; ``False`` when the caller must ``await send(data)``.

        Held plaintext becomes records when the loop runs the scheduled flush, before
        ``receive`` waits, on ``send_eof``/``close``, and once 16 KiB are held,
        whatever ``more`` says: a record per small message would cost a record
        header and an encryption call each. ``False`` as well when the inner
        connection has no fast path or is closing, and while earlier records wait
        for the peer to read (backpressure).
        """
        if (
            self._closed
            or self._eof_sent
            or not self._fast
            or self._backlog is not None
            or self._send_lock.locked()
            or len(data) > _HOLD_LIMIT
            or self._inner.is_closing
        ):
            return False
        if data:
            self._held.append(data)
            self._held_len += len(data)
            if self._held_len >= _HOLD_LIMIT:
                self._flush_held()
            elif self._flush_handle is None:
                self._flush_handle = self._loop.call_soon(self._flush_held)
        return True

    async def receive(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None and max_bytes < 1:
            raise UsageError(f"max_bytes must be at least 1, got {max_bytes}")
        rbuf = self._rbuf
        while not rbuf:
            if self._closed:
                raise self._closed_error("receive")
            if self._peer_eof:
                return b""
            if self._held:
                self._flush_held()
            chunk = await self._inner.receive()
            try:
                if chunk:
                    rbuf.extend(self._tls.decode(chunk))
                    self._peer_eof = self._tls.peer_closed
                else:
                    self._tls.end_of_input()
                    self._peer_eof = True
            except TlsError as exc:
                self._fail(exc)
                raise
            if self._tls.wants_to_send:
                # Our answer to the peer's post-handshake messages, after anything held.
                self._flush_held()
                self._emit(b"".join(self._tls.data_to_send()))
        if self._closed:
            raise self._closed_error("receive")
        chunk = rbuf.popleft()
        if max_bytes is not None and len(chunk) > max_bytes:
            rbuf.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        return chunk

    async def send_eof(self) -> None:
        if self._eof_sent or self._closed:
            return
        self._flush_held()
        self._eof_sent = True
        async with self._send_lock:
            self._tls.send_close_notify()
            await self._send_locked(b"".join(self._tls.data_to_send()))
        await self._inner.send_eof()

    async def close(self) -> None:
        if not self._closed:
            self._flush_held()
            self._closed = True
            pusher = self._pusher
            if pusher is not None:
                # Records already accepted: give the peer as long to take them as the
                # inner connection's own close would, then give up on it.
                done, _ = await asyncio.wait([pusher], timeout=_CLOSE_TIMEOUT)
                if not done:
                    self._inner.abort()
            if not self._tls.closed and not self._inner.is_closing and not self._send_lock.locked():
                # A send blocked on backpressure holds the lock: then close without
                # close_notify rather than wait for a reader that may never come.
                self._tls.send_close_notify()
                with contextlib.suppress(NetweaveError):
                    await _send_all(self._inner, self._tls.data_to_send())
        await self._inner.close()
        pusher = self._pusher
        if pusher is not None:
            pusher.cancel()  # the inner connection is closed: nothing is left to send
            await asyncio.wait([pusher])

    def abort(self) -> None:
        self._closed = True
        self._drop_held()
        if self._pusher is not None:
            self._pusher.cancel()
        self._inner.abort()

    @property
    def local_address(self) -> str:
        return self._inner.local_address

    @property
    def remote_address(self) -> str:
        return self._inner.remote_address

    @property
    def is_closing(self) -> bool:
        return self._closed or self._inner.is_closing

    def extra(self, name: str, default: Any = None) -> Any:
        tls = self._tls
        getter = _EXTRA.get(name)
        if getter is None:
            return self._inner.extra(name, default)
        value = getter(tls)
        return default if value is None else value

    def _drop_held(self) -> None:
        self._held.clear()
        self._held_len = 0
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None

    def _flush_held(self) -> None:
        """Encrypt the held plaintext and hand the records on (see :meth:`_emit`)."""
        held = self._held
        if not held:
            return
        data = held[0] if len(held) == 1 else b"".join(held)
        self._drop_held()
        try:
            records = self._tls.encode(data)
        except TlsError as exc:
            self._fail(exc)  # the next send or receive reports it
            return
        self._emit(records)

    def _emit(self, records: bytes) -> None:
        """Hand ``records`` to ``inner`` without waiting, after every record made before
        them: at once if nothing is queued and no send is in progress, else through
        the backlog task."""
        if not records:
            return
        if (
            self._backlog is None
            and not self._send_lock.locked()
            and self._inner.send_nowait(records)
        ):
            return
        if self._backlog is None:
            self._backlog = []
            self._pusher = self._loop.create_task(self._push_backlog())
        self._backlog.append(records)

    async def _send_locked(self, records: bytes) -> None:
        """Send ``records`` after the backlog; the caller holds the send lock."""
        backlog = self._backlog
        while backlog:  # records made while we wait are appended: keep going
            queued = b"".join(backlog)
            backlog.clear()
            await self._inner.send(queued)
        if records:
            await self._inner.send(records)

    async def _push_backlog(self) -> None:
        try:
            async with self._send_lock:
                await self._send_locked(b"")
        except NetweaveError:
            pass  # the inner connection broke or was closed: its next use says so
        finally:
            self._backlog = None
            self._pusher = None

    def _fail(self, exc: TlsError) -> None:
        # Nothing read after a bad record can be trusted: cut the connection at once.
        self._failure = exc
        self._closed = True
        self._rbuf.clear()
        self._drop_held()
        self._inner.abort()

    def _closed_error(self, operation: str, after: str = "") -> ClosedResourceError:
        if self._failure is not None:
            why = f"the connection was closed after a TLS error ({self._failure.detail})"
        else:
            why = f"our side called {after or 'close or abort'}"
        error = ClosedResourceError(f"tls {self.remote_address}: cannot {operation}: {why}")
        error.__cause__ = self._failure
        return error

    def __repr__(self) -> str:
        return f"<TlsConnection {self._tls.version} {self.local_address}->{self.remote_address}>"


_EXTRA: Final[Mapping[str, Any]] = {
    "peercert": lambda tls: tls.peercert,
    "peercert_der": lambda tls: tls.peercert_der,
    "cipher": lambda tls: tls.cipher,
    "tls_version": lambda tls: tls.version,
    "alpn_protocol": lambda tls: tls.alpn_protocol,
    "server_hostname": lambda tls: tls.server_hostname,
    "ssl_object": lambda tls: tls.ssl_object,
    "sslcontext": lambda tls: tls.context,
}
