"""Argument handling and error messages, through click's CliRunner (no network needed)."""

from __future__ import annotations

import sys
import types

import click
import pytest
from click.testing import CliRunner, Result

import netweave
from netweave.cli import LAZY_COMMANDS, cli, main


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def assert_one_line_error(result: Result, code: int, *fragments: str) -> str:
    """Exit ``code``, exactly one ``netweave: error:`` line on stderr, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("netweave: error: "), lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"netweave {netweave.__version__}"


def test_help_lists_the_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("serve", "send", "list", "demo"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ("send", "foo://127.0.0.1:9", "--stack", "lp4,json", "1"),
            ("unknown scheme 'foo'", "tcp"),
        ),
        (("send", "127.0.0.1:9", "--stack", "lp4,json", "1"), ("not an endpoint URL",)),
        (("send", "tcp://127.0.0.1", "--stack", "lp4,json", "1"), ("missing port",)),
        (
            ("send", "tcp://127.0.0.1:9", "--stack", "lp4,nope", "1"),
            ("unknown layer 'nope'", "lp4"),
        ),
        (("send", "tcp://127.0.0.1:9", "--stack", "lp4,,json", "1"), ("item 2 is empty",)),
        (("send", "tcp://127.0.0.1:9", "--stack", "lp4:max,json", "1"), ("key=value",)),
        (("send", "tcp://127.0.0.1:9", "--stack", "", "1"), ("empty stack spec",)),
        (("send", "tcp://127.0.0.1:9", "--stack", "json", "1"), ("framing layer",)),
        (("serve", "echo", "bar://x", "--stack", "lp4,json"), ("unknown scheme 'bar'",)),
        (("serve", "echo", "tcp://127.0.0.1:0", "--stack", "lp4,zz"), ("unknown layer 'zz'",)),
        (("serve", "echo", "tcp://127.0.0.1:0", "--stack", "lp4,json,json"), ("json",)),
        (("serve", "echo", "tcp://127.0.0.1:0?bogus=1", "--stack", "lp4"), ("unknown option",)),
    ],
)
def test_bad_endpoint_or_stack_is_a_usage_error(
    args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    assert_one_line_error(invoke(*args), 2, *fragments)


def test_bad_json_argument_names_the_argument_and_suggests_quoting() -> None:
    result = invoke("send", "tcp://127.0.0.1:9", "--stack", "lp4,json", "1", "{a:1}")
    line = assert_one_line_error(result, 2, "message 2", "'{a:1}'", "not valid JSON", "quote")
    assert "column 2" in line


def test_value_the_codec_cannot_carry_is_a_usage_error() -> None:
    # Valid for Python's JSON parser, refused by the json codec: caught before connecting.
    result = invoke("send", "tcp://127.0.0.1:9", "--stack", "lp4,json", "NaN")
    assert_one_line_error(result, 2, "json")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("send",), "Missing argument 'URL'"),
        (("send", "tcp://127.0.0.1:9", "--stack", "lp4,raw"), "Missing argument 'MESSAGE...'"),
        (("send", "tcp://127.0.0.1:9", "x"), "Missing option '--stack'"),
        (("serve", "echo"), "Missing argument 'URL'"),
        (("serve", "echo", "tcp://127.0.0.1:0"), "Missing option '--stack'"),
        (("serve", "echo", "tcp://127.0.0.1:0", "--stack", "lp4", "--loop", "twisted"), "--loop"),
        (("send", "tcp://127.0.0.1:9", "--stack", "lp4", "--timeout", "0", "x"), "--timeout"),
        (("send", "tcp://127.0.0.1:9", "--stack", "lp4", "--timeout", "soon", "x"), "--timeout"),
        (("frobnicate",), "No such command 'frobnicate'"),
        (("serve", "chargen"), "No such command 'chargen'"),
        (("--no-such-flag",), "No such option"),
    ],
)
def test_click_usage_errors_are_one_line_exit_2(args: tuple[str, ...], fragment: str) -> None:
    line = assert_one_line_error(invoke(*args), 2, fragment)
    assert "--help" in line


def test_debug_flag_shows_the_traceback() -> None:
    result = invoke("--debug", "send", "foo://x:1", "--stack", "lp4", "x")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("netweave: error: unknown scheme")


def test_list_names_every_registered_transport_and_layer_with_its_origin() -> None:
    result = invoke("list")
    assert result.exit_code == 0, result.output
    described = netweave.default_registry().describe()
    lines = result.stdout.splitlines()
    assert lines[0] == "transports (URL schemes):"
    layers_at = lines.index("layers:")
    transports = {line.split()[0]: line.split(None, 1)[1] for line in lines[1:layers_at]}
    layers = {line.split()[0]: line.split(None, 1)[1] for line in lines[layers_at + 1 :]}
    assert set(transports) == {name for name, _ in described["transports"]}
    assert set(layers) == {name for name, _ in described["layers"]}
    assert transports["tcp"] == "built-in"
    assert layers["lp4"] == "built-in"


def test_main_returns_the_status_instead_of_exiting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert main(["send", "nope://x", "--stack", "lp4", "x"]) == 2
    assert main(["frobnicate"]) == 2
    captured = capsys.readouterr()
    assert captured.out.strip() == f"netweave {netweave.__version__}"
    assert len(captured.err.splitlines()) == 2


@click.group()
def fake_group() -> None:
    """A group provided by another module."""


@fake_group.command()
def hello() -> None:
    click.echo("hello from a lazy command")


def test_lazy_command_is_imported_on_use(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("netweave_fake_lazy")
    module.cli = fake_group  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "netweave_fake_lazy", module)
    monkeypatch.setitem(LAZY_COMMANDS, "fake", ("netweave_fake_lazy", "cli"))
    result = invoke("fake", "hello")
    assert result.exit_code == 0, result.output
    assert result.stdout == "hello from a lazy command\n"
    assert "fake" in invoke("--help").stdout


@pytest.mark.parametrize(
    "target", [("netweave_no_such_module", "cli"), ("netweave.errors", "no_such_attribute")]
)
def test_lazy_command_whose_provider_is_missing_is_absent(
    monkeypatch: pytest.MonkeyPatch, target: tuple[str, str]
) -> None:
    monkeypatch.setitem(LAZY_COMMANDS, "absent", target)
    assert "absent" not in invoke("--help").stdout
    assert_one_line_error(invoke("absent"), 2, "No such command 'absent'")
