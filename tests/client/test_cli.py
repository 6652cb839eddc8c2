"""The command line: `luminet http 3000` and `--port 3000` are the same run."""

import pytest

from client.cli import parse_command_line, program_name

PROG = "luminet"


def parse(*argv: str):
    return parse_command_line(list(argv), prog=PROG)


def refusal(capsys, *argv: str) -> str:
    """The error line argparse prints for ``argv``, after checking it exits with status 2."""
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_the_command_form_and_the_flag_give_the_same_settings():
    """`http 3000 --server URL` parses to exactly what `--port 3000 --server URL` does."""
    flags = ["--server", "https://tunnel.example.com", "--subdomain", "shop", "--verbose"]
    command_form = vars(parse("http", "3000", *flags))
    flag_form = vars(parse("--port", "3000", *flags))
    assert command_form["ports"] == flag_form["ports"] == [3000]
    ignored = {"command", "targets", "port"}
    assert {k: v for k, v in command_form.items() if k not in ignored} == {
        k: v for k, v in flag_form.items() if k not in ignored
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["http", "3000", "--host", "127.0.0.1"],
        ["--host", "127.0.0.1", "http", "3000"],
        ["http", "--host", "127.0.0.1", "3000"],
        ["--verbose", "http", "--host", "127.0.0.1", "3000", "--log-format", "json"],
    ],
)
def test_the_command_may_stand_anywhere_among_the_flags(argv):
    """`http PORT` is found before, between or after the flags."""
    args = parse(*argv)
    assert (args.ports, args.host) == ([3000], "127.0.0.1")


def test_the_port_flag_alone_keeps_working():
    """`--port 3000` without a command is the original form, unchanged."""
    args = parse("--port", "3000", "--token", "lmn_x")
    assert (args.ports, args.token, args.command) == ([3000], "lmn_x", None)


def test_port_repeated_asks_for_several_tunnels():
    args = parse("--port", "3000", "--port", "5173", "--host-header", "rewrite")
    assert (args.ports, args.names, args.host_header) == ([3000, 5173], None, "rewrite")


@pytest.mark.parametrize(
    ("argv", "names"), [(["start", "web", "api"], ["web", "api"]), (["start", "--all"], [])]
)
def test_start_names_the_config_files_tunnels(argv, names):
    """`start web api` asks for those tunnels of ~/.tunnel/config, `start --all` for all."""
    args = parse(*argv)
    assert (args.names, args.ports) == (names, [])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "which local port? e.g. `luminet http 3000` or `luminet --port 3000`"),
        (["http"], "`http` needs the local port"),
        (["3000"], "a port goes after the command: `luminet http 3000`"),
        (["tcp", "22"], "unknown command 'tcp': the commands are `http PORT` and `start`"),
        (["http", "3000", "--port", "3000"], "the port is given twice"),
        (["http", "localhost:3000"], "takes a port number, not 'localhost:3000'"),
        (["http", "3000", "4000"], "`http` takes one port; for more, repeat --port or use `start`"),
        (["start"], "which tunnels? `luminet start web api`, or --all"),
        (["start", "web", "--all"], "give `start` tunnel names or --all, not both"),
        (["start", "web", "--port", "3000"], "--port goes in there"),
        (["start", "web", "--subdomain", "shop"], "--subdomain goes in there"),
        (["start", "web", "--host-header", "rewrite"], "set host and host_header there"),
        (["--port", "3000", "--all"], "--all goes with `start`"),
    ],
)
def test_a_missing_or_conflicting_port_is_refused_with_the_fix(capsys, argv, message):
    """Each wrong way to give the port exits with status 2 and a line saying what to type."""
    assert message in refusal(capsys, *argv)


@pytest.mark.parametrize(
    ("argv0", "prog"),
    [
        ("/home/a/.local/bin/luminet", "luminet"),
        ("luminet.pyz", "luminet.pyz"),
        ("/work/luminet/client/__main__.py", "python -m client"),
    ],
)
def test_usage_names_the_program_as_it_was_started(argv0, prog):
    """Usage lines say `luminet`, `luminet.pyz` or `python -m client`, as the user typed it."""
    assert program_name(argv0) == prog
