"""Everything of :class:`~netweave.sim.SimLoop` that is not scheduling or running.

That is: the simulated network, the refusals, the exception handler, the
debug flag, async-generator bookkeeping and the (unused) executor.

Rules of this file:

* ``create_connection``, ``create_server``, ``create_datagram_endpoint``,
  ``getaddrinfo`` and ``getnameinfo`` keep asyncio's signatures and forward to
  the loop's ``network``; options that only tune a real socket
  (``family``, ``reuse_address``, ``happy_eyeballs_delay``...) are accepted and
  have no effect; options that need a real socket or file (``sock=``, Unix
  paths) or OpenSSL (``ssl=``) raise :class:`~netweave.errors.UsageError`.
* Everything else that would touch the operating system — file-descriptor
  readers and writers, ``sock_*``, pipes, subprocesses, signal handlers,
  ``sendfile`` — raises :class:`~netweave.errors.UsageError` saying why.
* The exception handler API behaves as asyncio's: without a handler, errors
  are logged on the ``asyncio`` logger.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import weakref
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import Executor
from typing import Any, NoReturn, TypeVarTuple, Unpack

from ..errors import UsageError
from ._backend import NetworkBackend

__all__ = ["SimLoopBase"]

_logger = logging.getLogger("asyncio")

_ProtocolFactory = Callable[[], asyncio.BaseProtocol]
_Handler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]
Ts = TypeVarTuple("Ts")


def _refuse(what: str, why: str) -> NoReturn:
    raise UsageError(f"SimLoop does not support {what}: {why}")


_NO_FD = "a simulation has no real file descriptors; talk over the simulated network instead"
_NO_SOCK = (
    "a simulation has no real sockets; use the loop's create_connection / create_server / "
    "create_datagram_endpoint (asyncio.open_connection and start_server use them)"
)
_NO_TLS = (
    "TLS draws OpenSSL's own randomness, which no seed controls, so a simulated run "
    "could not replay exactly; simulate the plain-text stack"
)


class SimLoopBase(asyncio.AbstractEventLoop):
    """The simulated loop's services; :class:`~netweave.sim.SimLoop` adds the clock."""

    slow_callback_duration = 0.1

    def __init__(self) -> None:
        self._network: NetworkBackend | None = None
        self._closed = False
        self._debug = False
        self._exception_handler: _Handler | None = None
        self._asyncgens: weakref.WeakSet[AsyncGenerator[Any, Any]] = weakref.WeakSet()
        self._default_executor: Executor | None = None

    def is_closed(self) -> bool:
        return self._closed

    # -- debug, executor -------------------------------------------------------------

    def get_debug(self) -> bool:
        return self._debug

    def set_debug(self, enabled: bool) -> None:
        self._debug = bool(enabled)

    def set_default_executor(self, executor: Executor) -> None:
        """Accepted for compatibility and never used: executor functions run inline."""
        self._default_executor = executor

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        """Nothing to shut down: executor functions already ran inline."""

    # -- async generators ------------------------------------------------------------

    def _asyncgen_firstiter(self, agen: AsyncGenerator[Any, Any]) -> None:
        self._asyncgens.add(agen)

    def _asyncgen_final(self, agen: AsyncGenerator[Any, Any]) -> None:
        self._asyncgens.discard(agen)
        if not self._closed:
            self.call_soon_threadsafe(self.create_task, agen.aclose())

    async def shutdown_asyncgens(self) -> None:
        """Close every async generator still open on this loop; errors go to the
        exception handler."""
        if not self._asyncgens:
            return
        closing = list(self._asyncgens)
        self._asyncgens.clear()
        results = await asyncio.gather(*[ag.aclose() for ag in closing], return_exceptions=True)
        for result, agen in zip(results, closing, strict=True):
            if isinstance(result, Exception):
                self.call_exception_handler(
                    {
                        "message": "an error occurred during closing of asynchronous "
                        f"generator {agen!r}",
                        "exception": result,
                        "asyncgen": agen,
                    }
                )

    # -- errors ------------------------------------------------------------------------

    def get_exception_handler(self) -> Any:
        return self._exception_handler

    def set_exception_handler(self, handler: Any) -> None:
        if handler is not None and not callable(handler):
            raise TypeError(f"A callable object or None is expected, got {handler!r}")
        self._exception_handler = handler

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        """Log ``context`` on the ``asyncio`` logger, as asyncio's own loops do."""
        message = context.get("message") or "Unhandled exception in event loop"
        exception = context.get("exception")
        exc_info: Any = False
        if isinstance(exception, BaseException):
            exc_info = (type(exception), exception, exception.__traceback__)
        lines = [message]
        for key in sorted(context):
            if key not in {"message", "exception"}:
                lines.append(f"{key}: {context[key]!r}")
        _logger.error("\n".join(lines), exc_info=exc_info)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        """Pass ``context`` to the handler set with :meth:`set_exception_handler`, or
        log it; an error raised by the handler itself is logged, never raised."""
        handler = self._exception_handler
        try:
            if handler is None:
                self.default_exception_handler(context)
                return
            try:
                handler(self, context)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:
                self.default_exception_handler(
                    {
                        "message": "Unhandled error in exception handler",
                        "exception": exc,
                        "context": context,
                    }
                )
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:
            _logger.error("Exception in default exception handler", exc_info=True)

    # -- the network ---------------------------------------------------------------------

    @property
    def network(self) -> NetworkBackend | None:
        """The simulated network the loop's networking methods use (set once)."""
        return self._network

    @network.setter
    def network(self, network: NetworkBackend) -> None:
        if self._network is not None and network is not self._network:
            raise UsageError("this SimLoop already has a network; it can be attached only once")
        self._network = network

    def _require_network(self, what: str) -> NetworkBackend:
        network = self._network
        if network is None:
            raise UsageError(
                f"{what}() needs a simulated network, and this SimLoop has none; "
                "run the code inside a netweave.sim.Simulation (or set loop.network)"
            )
        return network

    # -- forwarded to the network -------------------------------------------------

    async def getaddrinfo(  # type: ignore[override]
        self,
        host: bytes | str | None,
        port: bytes | str | int | None,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]]:
        """Resolve a simulated host name (never real DNS)."""
        network = self._require_network("getaddrinfo")
        name = host.decode("idna") if isinstance(host, bytes) else host
        service = port.decode() if isinstance(port, bytes) else port
        return network.getaddrinfo(name, service, family, type, proto, flags)

    async def getnameinfo(self, sockaddr: tuple[Any, ...], flags: int = 0) -> tuple[str, str]:
        """The simulated host name and port of ``sockaddr``."""
        return self._require_network("getnameinfo").getnameinfo(sockaddr, flags)

    async def create_connection(  # type: ignore[override]
        self,
        protocol_factory: _ProtocolFactory,
        host: str | None = None,
        port: int | None = None,
        *,
        ssl: Any = None,
        family: int = 0,
        proto: int = 0,
        flags: int = 0,
        sock: socket.socket | None = None,
        local_addr: tuple[str, int] | None = None,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        happy_eyeballs_delay: float | None = None,
        interleave: int | None = None,
        all_errors: bool = False,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """Open a simulated stream connection from the current host (asyncio's signature)."""
        if server_hostname is not None and not ssl:
            raise ValueError("server_hostname is only meaningful with ssl")
        if ssl:
            _refuse("create_connection(ssl=...)", _NO_TLS)
        if sock is not None:
            _refuse("create_connection(sock=...)", _NO_SOCK)
        if host is None or port is None:
            raise ValueError("host and port was not specified and no sock specified")
        network = self._require_network("create_connection")
        return await network.create_connection(
            protocol_factory, host, int(port), local_addr=local_addr
        )

    async def create_server(  # type: ignore[override]
        self,
        protocol_factory: _ProtocolFactory,
        host: str | Sequence[str] | None = None,
        port: int | None = None,
        *,
        family: int = socket.AF_UNSPEC,
        flags: int = socket.AI_PASSIVE,
        sock: socket.socket | None = None,
        backlog: int = 100,
        ssl: Any = None,
        reuse_address: bool | None = None,
        reuse_port: bool | None = None,
        keep_alive: bool | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        start_serving: bool = True,
    ) -> asyncio.AbstractServer:
        """Listen on the current simulated host (asyncio's signature)."""
        if ssl:
            _refuse("create_server(ssl=...)", _NO_TLS)
        if sock is not None:
            _refuse("create_server(sock=...)", _NO_SOCK)
        network = self._require_network("create_server")
        return await network.create_server(
            protocol_factory,
            host,
            0 if port is None else int(port),
            backlog=backlog,
            reuse_address=reuse_address,
            reuse_port=reuse_port,
            start_serving=start_serving,
        )

    async def create_datagram_endpoint(  # type: ignore[override]
        self,
        protocol_factory: _ProtocolFactory,
        local_addr: tuple[str, int] | str | None = None,
        remote_addr: tuple[str, int] | str | None = None,
        *,
        family: int = 0,
        proto: int = 0,
        flags: int = 0,
        reuse_address: bool | None = None,
        reuse_port: bool | None = None,
        allow_broadcast: bool | None = None,
        sock: socket.socket | None = None,
    ) -> tuple[asyncio.DatagramTransport, asyncio.BaseProtocol]:
        """Open a simulated datagram endpoint on the current host (asyncio's signature)."""
        if sock is not None:
            _refuse("create_datagram_endpoint(sock=...)", _NO_SOCK)
        if isinstance(local_addr, str) or isinstance(remote_addr, str):
            _refuse("Unix datagram sockets", _NO_FD)
        network = self._require_network("create_datagram_endpoint")
        return await network.create_datagram_endpoint(
            protocol_factory,
            local_addr=local_addr,
            remote_addr=remote_addr,
            reuse_port=reuse_port,
            allow_broadcast=allow_broadcast,
        )

    # -- refused: TLS, Unix sockets, real sockets ----------------------------------

    async def start_tls(
        self,
        transport: asyncio.BaseTransport,
        protocol: asyncio.BaseProtocol,
        sslcontext: Any,
        **kwargs: Any,
    ) -> NoReturn:
        _refuse("start_tls()", _NO_TLS)

    async def create_unix_connection(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("create_unix_connection()", _NO_FD)

    async def create_unix_server(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("create_unix_server()", _NO_FD)

    async def connect_accepted_socket(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("connect_accepted_socket()", _NO_SOCK)

    async def sendfile(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("sendfile()", "read the file yourself and write its bytes to the transport")

    async def sock_sendfile(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("sock_sendfile()", _NO_SOCK)

    async def sock_recv(self, sock: socket.socket, nbytes: int) -> NoReturn:
        _refuse("sock_recv()", _NO_SOCK)

    async def sock_recv_into(self, sock: socket.socket, buf: Any) -> NoReturn:
        _refuse("sock_recv_into()", _NO_SOCK)

    async def sock_recvfrom(self, sock: socket.socket, bufsize: int) -> NoReturn:
        _refuse("sock_recvfrom()", _NO_SOCK)

    async def sock_recvfrom_into(self, sock: socket.socket, buf: Any, nbytes: int = 0) -> NoReturn:
        _refuse("sock_recvfrom_into()", _NO_SOCK)

    async def sock_sendall(self, sock: socket.socket, data: Any) -> NoReturn:
        _refuse("sock_sendall()", _NO_SOCK)

    async def sock_sendto(self, sock: socket.socket, data: Any, address: Any) -> NoReturn:
        _refuse("sock_sendto()", _NO_SOCK)

    async def sock_connect(self, sock: socket.socket, address: Any) -> NoReturn:
        _refuse("sock_connect()", _NO_SOCK)

    async def sock_accept(self, sock: socket.socket) -> NoReturn:
        _refuse("sock_accept()", _NO_SOCK)

    # -- refused: file descriptors, pipes, subprocesses, signals -------------------

    def add_reader(self, fd: Any, callback: Callable[[Unpack[Ts]], Any], *args: *Ts) -> NoReturn:
        _refuse("add_reader()", _NO_FD)

    def remove_reader(self, fd: Any) -> bool:
        """Nothing was registered (``add_reader`` refuses), so nothing is removed."""
        return False

    def add_writer(self, fd: Any, callback: Callable[[Unpack[Ts]], Any], *args: *Ts) -> NoReturn:
        _refuse("add_writer()", _NO_FD)

    def remove_writer(self, fd: Any) -> bool:
        """Nothing was registered (``add_writer`` refuses), so nothing is removed."""
        return False

    async def connect_read_pipe(self, protocol_factory: Any, pipe: Any) -> NoReturn:
        _refuse("connect_read_pipe()", _NO_FD)

    async def connect_write_pipe(self, protocol_factory: Any, pipe: Any) -> NoReturn:
        _refuse("connect_write_pipe()", _NO_FD)

    async def subprocess_shell(self, protocol_factory: Any, cmd: Any, **kwargs: Any) -> NoReturn:
        _refuse("subprocesses", "a simulated host cannot start a real process")

    async def subprocess_exec(
        self, protocol_factory: Any, program: Any, *args: Any, **kwargs: Any
    ) -> NoReturn:
        _refuse("subprocesses", "a simulated host cannot start a real process")

    def add_signal_handler(
        self, sig: int, callback: Callable[[Unpack[Ts]], object], *args: *Ts
    ) -> NoReturn:
        _refuse("signal handlers", "simulated hosts receive no operating-system signals")

    def remove_signal_handler(self, sig: int) -> bool:
        """Nothing was registered (``add_signal_handler`` refuses), so nothing is removed."""
        return False
