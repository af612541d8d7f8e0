"""The ``netweave`` command line: ``serve``, ``send``, ``list``, ``demo`` (and ``sim``).

Rules of this file:

* Commands are thin: the work lives in :mod:`netweave.tools` and
  :mod:`netweave.demo`; a command parses arguments, runs that work on an event
  loop and renders the result.
* Errors become exit statuses in one place, :class:`NetweaveGroup`: click usage
  errors and netweave ``UsageError`` (bad URL, unknown scheme or layer,
  malformed stack spec, bad argument, missing extra) exit 2; every other
  ``NetweaveError`` (refused, port in use, timeout, protocol error) exits 1;
  an interrupted ``send`` or ``demo`` exits 130. Each prints exactly one line,
  ``netweave: error: <message>``, on stderr and never a traceback (``--debug``
  adds one).
* Subcommands listed in :data:`LAZY_COMMANDS` are imported only when used, so
  ``netweave --version`` stays fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
import json
import logging
import signal
import sys
import traceback
from collections.abc import Callable, Coroutine, Sequence
from typing import IO, TYPE_CHECKING, Any, Final, Literal, NoReturn, TypeVar, final

import click

from ._version import __version__
from .errors import NetweaveError, UsageError
from .tools import LOOP_CHOICES

if TYPE_CHECKING:
    from .demo import DemoReport, LegReport
    from .stack import Channel
    from .tools import Negotiation

__all__ = ["LAZY_COMMANDS", "NetweaveGroup", "cli", "main"]

T = TypeVar("T")

#: Exit statuses.
EXIT_OK: Final = 0
EXIT_RUNTIME: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

#: Subcommands provided by other modules, imported on first use:
#: name -> (module, attribute holding a click command or group).
LAZY_COMMANDS: Final[dict[str, tuple[str, str]]] = {
    "sim": ("netweave.sim", "cli"),
}

_DEBUG_KEY: Final = "netweave.debug"


def _one_line(message: str) -> str:
    return " ".join(message.split()) or "unknown error"


def _fail(ctx: click.Context, message: str, code: int) -> NoReturn:
    click.echo(f"netweave: error: {_one_line(message)}", err=True)
    ctx.exit(code)


@final
class NetweaveGroup(click.Group):
    """A click group that turns errors into one line on stderr and an exit status.

    Also resolves :data:`LAZY_COMMANDS` on demand; a lazy command whose module
    is not installed is simply absent.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        lazy: list[str] = []
        for name in LAZY_COMMANDS:
            try:
                if self._lazy(name) is not None:
                    lazy.append(name)
            except Exception:
                pass  # a broken module must not break --help; running it shows the error
        return sorted({*super().list_commands(ctx), *lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None:
            return found
        return self._lazy(cmd_name)

    def _lazy(self, name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if module_name == missing or module_name.startswith(f"{missing}."):
                return None  # the providing module is not there (yet)
            raise
        command = getattr(module, attribute, None)
        return command if isinstance(command, click.Command) else None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own: handled in main()
        except UsageError as exc:
            self._maybe_traceback(ctx)
            _fail(ctx, str(exc), EXIT_USAGE)
        except NetweaveError as exc:
            self._maybe_traceback(ctx)
            _fail(ctx, str(exc), EXIT_RUNTIME)
        except KeyboardInterrupt:
            self._maybe_traceback(ctx)
            _fail(ctx, "interrupted", EXIT_INTERRUPTED)
        except Exception as exc:
            if ctx.meta.get(_DEBUG_KEY):
                raise
            _fail(
                ctx,
                f"internal error: {type(exc).__name__}: {exc} "
                f"(run 'netweave --debug ...' for the traceback and please report it)",
                EXIT_RUNTIME,
            )

    @staticmethod
    def _maybe_traceback(ctx: click.Context) -> None:
        if ctx.meta.get(_DEBUG_KEY):
            traceback.print_exc(file=sys.stderr)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; exit (or return the status, if not standalone)."""
        try:
            result = super().main(
                args, prog_name or "netweave", complete_var, standalone_mode=False, **extra
            )
            code = result if isinstance(result, int) else EXIT_OK
        except click.exceptions.UsageError as exc:
            hint = ""
            if exc.ctx is not None:
                hint = f" (see '{exc.ctx.command_path} --help')"
            click.echo(f"netweave: error: {_one_line(exc.format_message())}{hint}", err=True)
            code = exc.exit_code
        except click.exceptions.ClickException as exc:
            click.echo(f"netweave: error: {_one_line(exc.format_message())}", err=True)
            code = exc.exit_code
        except click.exceptions.Abort:
            click.echo("netweave: error: interrupted", err=True)
            code = EXIT_INTERRUPTED
        if standalone_mode:
            sys.exit(code)
        return code


def _run(coroutine_factory: Callable[[], Coroutine[Any, Any, T]], *, loop: str = "asyncio") -> T:
    from .tools import loop_factory

    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(coroutine_factory())


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    ctx.meta[_DEBUG_KEY] = value
    return value


@click.group(cls=NetweaveGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__, "-V", "--version", prog_name="netweave", message="%(prog)s %(version)s"
)
@click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_debug,
    help="Show the traceback of an error, not just its one-line message.",
)
def cli() -> None:
    """Pluggable networking stacks: serve, send, list, demo.

    Endpoints are URLs such as tcp://127.0.0.1:9000, udp://127.0.0.1:9000 or
    mem://name; stacks are comma lists of layers, bottom first, such as lp4,json.
    Exit status: 0 success, 1 runtime failure, 2 bad usage.
    """


_STACK_HELP = (
    "Stack spec, bottom layer first (e.g. lp4,json; see 'netweave list'). With "
    "--negotiate, items may list alternatives, best first: lp4,zstd|lz4|none,msgpack|json."
)

F = TypeVar("F", bound=Callable[..., Any])


def _connection_options(command: F) -> F:
    """``--negotiate``, the TLS upgrade's options and ``--verbose``, shared by serve and send."""
    options = [
        click.option(
            "--negotiate",
            "protocol",
            metavar="PROTOCOL",
            help="Negotiate protocol PROTOCOL and the stack (from the --stack alternatives) "
            "with the peer first.",
        ),
        click.option(
            "--tls",
            "tls",
            is_flag=True,
            help="With --negotiate: require a TLS upgrade after the agreement "
            "(implied by --tls-cert/--tls-key/--tls-ca).",
        ),
        click.option(
            "--tls-cert", metavar="PEM", help="Our certificate chain (required to serve TLS)."
        ),
        click.option("--tls-key", metavar="PEM", help="Our private key (if not in --tls-cert)."),
        click.option(
            "--tls-ca",
            metavar="PEM",
            help="CAs to trust (send: the server's issuer, system CAs if absent; serve: "
            "require client certificates it issued).",
        ),
        click.option(
            "--verbose",
            "-v",
            is_flag=True,
            help="Report each connection on stderr: what was agreed, the TLS version and cipher.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _negotiation(
    protocol: str | None,
    spec: str,
    url: str,
    *,
    side: Literal["client", "server"],
    tls: bool,
    cert: str | None,
    key: str | None,
    ca: str | None,
) -> Negotiation | None:
    """The side's negotiation settings, ``None`` without ``--negotiate`` (then the TLS
    options are a usage error: a tls:// URL carries certificates without negotiating)."""
    from .tools import TlsFiles, prepare_negotiation

    files = TlsFiles(cert=cert, key=key, ca=ca)
    if protocol is None:
        if tls or files:
            raise UsageError(
                "--tls, --tls-cert, --tls-key and --tls-ca set up the TLS upgrade after "
                "--negotiate; without negotiating, use a tls:// URL "
                "(serve: tls://HOST:PORT?cert=server.pem&key=server.key, send: ?ca=ca.pem)"
            )
        return None
    return prepare_negotiation(protocol, spec, url, side=side, tls=tls, files=files)


def _report(line: str) -> None:
    click.echo(f"netweave: {line}", err=True)
    sys.stderr.flush()


# -- serve ---------------------------------------------------------------------------


@cli.group()
def serve() -> None:
    """Run a server until Ctrl-C or SIGTERM."""


@serve.command("echo")
@click.argument("url")
@click.option("--stack", "spec", required=True, metavar="SPEC", help=_STACK_HELP)
@click.option(
    "--loop",
    "loop_name",
    type=click.Choice(LOOP_CHOICES),
    default="auto",
    show_default=True,
    help="Event loop; auto uses uvloop when it is installed.",
)
@_connection_options
def serve_echo(
    url: str,
    spec: str,
    loop_name: str,
    protocol: str | None,
    tls: bool,
    tls_cert: str | None,
    tls_key: str | None,
    tls_ca: str | None,
    verbose: bool,
) -> None:
    """Echo every message back to its sender, on URL with stack SPEC.

    Prints the URL it listens on (with the real port when 0 was asked) as one
    line on stdout, serves until SIGINT or SIGTERM, then closes every
    connection and exits 0. With --negotiate, each client first agrees on the
    stack (and TLS); a client that cannot agree is reported on stderr and closed.
    """
    from .tools import describe_channel, serve_negotiated_until, serve_until

    negotiation = _negotiation(
        protocol, spec, url, side="server", tls=tls, cert=tls_cert, key=tls_key, ca=tls_ca
    )

    def listening(real_url: str) -> None:
        click.echo(real_url)
        sys.stdout.flush()

    def agreed(channel: Channel[Any]) -> None:
        if verbose:
            _report(f"{channel.remote_address}: {describe_channel(channel)}")

    def failed(remote: str, error: NetweaveError) -> None:
        _report(f"{remote}: negotiation failed: {_one_line(str(error))}")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, stop.set)
                    installed.append(sig)
                except NotImplementedError:  # pragma: no cover - Windows
                    pass
            if negotiation is None:
                await serve_until(
                    url,
                    spec,
                    stop,
                    on_listening=listening,
                    on_connected=agreed if verbose else None,
                )
            else:
                await serve_negotiated_until(
                    url,
                    negotiation,
                    stop,
                    on_listening=listening,
                    on_agreed=agreed,
                    on_failed=failed,
                )
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    # Without signal handlers (Windows), Ctrl-C arrives as KeyboardInterrupt: still a clean stop.
    with contextlib.suppress(KeyboardInterrupt):
        _run(run, loop=loop_name)


# -- send ----------------------------------------------------------------------------


@cli.command()
@click.argument("url")
@click.argument("messages", nargs=-1, required=True, metavar="MESSAGE...")
@click.option("--stack", "spec", required=True, metavar="SPEC", help=_STACK_HELP)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    metavar="S",
    help="Seconds allowed for the whole exchange (connect, negotiate, send, every reply).",
)
@_connection_options
def send(
    url: str,
    messages: tuple[str, ...],
    spec: str,
    timeout: float,
    protocol: str | None,
    tls: bool,
    tls_cert: str | None,
    tls_key: str | None,
    tls_ca: str | None,
    verbose: bool,
) -> None:
    """Send each MESSAGE to URL and print each reply on its own line.

    How a MESSAGE becomes a message depends on the stack's top layer: raw
    sends its UTF-8 bytes, text sends it as a string, json/msgpack/cbor parse
    it as JSON (replies print as compact JSON). Exits 1 when the server cannot
    be reached, cannot agree (--negotiate), does not answer in time, or sends
    fewer replies than messages.
    """
    from .endpoints import parse_endpoint
    from .stack import Stack
    from .tools import (
        check_encodable,
        describe_channel,
        exchange,
        exchange_negotiated,
        message_format,
    )

    negotiation = _negotiation(
        protocol, spec, url, side="client", tls=tls, cert=tls_cert, key=tls_key, ca=tls_ca
    )
    if negotiation is None:
        parse_endpoint(url)
        stack = Stack.parse(spec)
        fmt = message_format(stack)
        parsed = [fmt.parse(argument, position) for position, argument in enumerate(messages, 1)]
        check_encodable(stack, parsed)
    else:
        fmt = negotiation.format
        parsed = negotiation.parse_messages(messages)

    def connected(channel: Channel[Any]) -> None:
        if verbose:
            _report(f"{channel.remote_address}: {describe_channel(channel)}")

    def print_reply(position: int, reply: Any) -> None:
        click.echo(fmt.render(reply))
        sys.stdout.flush()

    if negotiation is None:
        _run(
            lambda: exchange(
                url, stack, parsed, timeout=timeout, on_reply=print_reply, on_connected=connected
            )
        )
    else:
        chosen = negotiation
        _run(
            lambda: exchange_negotiated(
                url,
                chosen,
                parsed,
                timeout=timeout,
                on_reply=print_reply,
                on_connected=connected,
            )
        )


# -- list ----------------------------------------------------------------------------


@cli.command("list")
def list_command() -> None:
    """List the transports (URL schemes) and layers, and where each comes from."""
    from .registry import default_registry

    described = default_registry().describe()
    for title, key in (("transports (URL schemes)", "transports"), ("layers", "layers")):
        click.echo(f"{title}:")
        entries = described[key]
        width = max((len(name) for name, _ in entries), default=0)
        for name, origin in entries:
            where = "built-in" if origin == "netweave" else origin
            click.echo(f"  {name:<{width}}  {where}")


# -- demo ----------------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def demo(as_json: bool) -> None:
    """Echo over TCP, UDP, memory, and a negotiated, compressed, encrypted TCP
    connection, in one process, and show what was agreed and what crossed the wire.

    Exits 0 when every reply matched what was sent, 1 otherwise.
    """
    from .demo import run_demo

    report = _run(run_demo)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        click.echo(format_report(report), nl=False)
    if not report.ok:
        raise click.exceptions.Exit(EXIT_RUNTIME)


def format_report(report: DemoReport) -> str:
    """The demo report as short readable text (ends with a newline)."""
    out = io.StringIO()
    verdict = (
        "every reply matched what was sent" if report.ok else "SOME REPLIES OR COUNTS DID NOT MATCH"
    )
    out.write(f"netweave demo: {len(report.legs)} legs, {verdict}\n")
    for note in report.notes:
        out.write(f"note: {note}\n")
    for leg in report.legs:
        out.write("\n")
        if leg.agreement is None:
            _render_leg(leg, out)
        else:
            _render_negotiated_leg(leg, out)
    return out.getvalue()


def _render_counts(leg: LegReport, out: IO[str]) -> None:
    out.write(
        f"  messages  sent {leg.messages_sent}, received {leg.messages_received}"
        f"{'  (all replies matched)' if leg.ok else ''}\n"
    )
    out.write(f"  bytes     client->server {leg.bytes_sent}, server->client {leg.bytes_received}\n")


def _render_frame(title: str, data: bytes, size: int, out: IO[str]) -> None:
    cut = "" if len(data) == size else f", first {len(data)} shown"
    out.write(f"  {title} ({size} bytes{cut}):\n")
    for line in hexdump(data):
        out.write(f"    {line}\n")


def _render_leg(leg: LegReport, out: IO[str]) -> None:
    out.write(f"{leg.transport}  {leg.url}  stack {leg.stack}\n")
    _render_counts(leg, out)
    if leg.first_frame:
        _render_frame("first frame on the wire", leg.first_frame, leg.first_frame_size, out)
    for problem in leg.problems:
        out.write(f"  problem: {problem}\n")


def _render_negotiated_leg(leg: LegReport, out: IO[str]) -> None:
    agreed = leg.agreement or {}
    offers = leg.offers or {}
    out.write(f"{leg.name}  {leg.url}  ({leg.transport}, negotiated, then TLS)\n")
    out.write(f"  offers    client {offers.get('client')}, server {offers.get('server')}\n")
    features = ", ".join(agreed.get("features", ())) or "none"
    out.write(
        f"  agreed    protocol {agreed.get('protocol')} v{agreed.get('version')}, "
        f"stack {leg.stack} (codec {agreed.get('codec')}, compression "
        f"{agreed.get('compression')}), max frame {agreed.get('max_frame')} B, "
        f"features {features}, TLS {'on' if agreed.get('tls') else 'off'}\n"
    )
    if leg.tls:
        names = ", ".join(leg.tls.get("server_names", ())) or "?"
        out.write(
            f"  tls       {leg.tls.get('version')}, {leg.tls.get('cipher')} "
            f"({leg.tls.get('bits')}-bit), server certificate for {names} "
            f"(made by trustme for this run)\n"
        )
    _render_counts(leg, out)
    sent, received = leg.handshake_bytes
    out.write(f"            of which hello and TLS handshake: {sent} out, {received} back\n")
    if leg.messages:
        shown = json.dumps(leg.messages[0], separators=(",", ":"), default=str)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        out.write(f"  first message  {shown}\n")
    if leg.plain_frame:
        _render_frame(
            "as the agreed stack frames it, before TLS",
            leg.plain_frame,
            leg.plain_frame_size,
            out,
        )
    if leg.first_frame:
        _render_frame(
            "on the wire: one TLS record, encrypted", leg.first_frame, leg.first_frame_size, out
        )
    for problem in leg.problems:
        out.write(f"  problem: {problem}\n")


def hexdump(data: bytes, width: int = 16) -> list[str]:
    """Offset, hex bytes and printable ASCII, ``width`` bytes per line."""
    lines: list[str] = []
    for offset in range(0, len(data), width):
        row = data[offset : offset + width]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{offset:04x}  {row.hex(' '):<{width * 3 - 1}}  {text}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """The ``netweave`` entry point; returns the exit status."""
    # aioquic logs a failed handshake on its own "quic" logger; the CLI already
    # reports the error in its one line, so keep the library's copy off stderr.
    logging.getLogger("quic").addHandler(logging.NullHandler())
    result: int = cli.main(args=argv, prog_name="netweave", standalone_mode=False)
    return result


if __name__ == "__main__":
    sys.exit(main())
