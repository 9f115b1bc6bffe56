"""The subcommands of ``%cbridge``, declared once: the same declarations parse a line, answer
``%cbridge?`` and ``%cbridge help COMMAND`` (or ``%cbridge COMMAND --help``), and name the
defaults that usage errors quote.

    args = parse("connect unix:///tmp/cbridge-demo.sock --name b")  # argparse.Namespace
    print(help_text("plot"))
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable

from IPython.core.error import UsageError
from IPython.core.magic_arguments import MagicArgumentParser

from .line import split


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    examples: tuple[str, ...]
    arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None


def _connect(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help="unix:///path/to.sock (the driver), ws://host:port/?token=... "
                               "(a relay), or raw+unix:///path or raw+tcp://host:port (a program "
                               "that speaks bare structs: give --recv)")
    p.add_argument("--recv", metavar="CLASS", help="raw links: the struct class the program "
                                                   "sends (declared with %%cstruct)")
    p.add_argument("--send", metavar="CLASS", help="raw links: the struct class it takes")
    p.add_argument("--streams", metavar="TYPE,...", help="only these stream types, as "
                   "Telemetry,Status (SUBSCRIBE; default: all)")
    p.add_argument("--token", help="the relay's token, if not in the URL")
    p.add_argument("--ca-file", help="wss://: verify the server against these certificates "
                                     "(PEM) instead of the system's")
    # --name, as for the other views' variables; --as is the older spelling, still taken
    p.add_argument("--name", "--as", dest="name", default="bridge", metavar="VAR",
                   help="the variable the Bridge is bound to (default: bridge)")
    p.add_argument("--history", type=int, help="records kept per streamed type (default: "
                   "CBridgeMagics.history, 100000)")
    p.add_argument("--no-reconnect", action="store_true", help="do not reconnect when the driver goes")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds to wait for the driver's HELLO (default: 5)")
    p.add_argument("--max-payload", type=int, metavar="BYTES", default=64 << 20,
                   help="the largest frame taken, for a driver that raised its limit "
                   "(default: 67108864)")


def _send(p: argparse.ArgumentParser) -> None:
    # Parsed by split_send (the expression may hold anything); declared here for the help.
    p.add_argument("--no-reply", action="store_true", help="send without waiting for the reply")
    p.add_argument("--timeout", type=float, default=1.0,
                   help="seconds to wait for the reply (default: 1)")
    p.add_argument("expr", metavar="EXPR", help="a struct instance; options go before it")


def _plot(p: argparse.ArgumentParser) -> None:
    p.add_argument("specs", nargs="*", metavar="TYPE.FIELD", help="what to plot; an array field "
                                                                   "is flattened in time order")
    p.add_argument("--window", type=int, help="values shown per series (default: "
                   "CBridgeMagics.plot_window, 2000)")
    p.add_argument("--fps", type=float, help="most updates a second (default: "
                   "CBridgeMagics.plot_fps, 10)")
    p.add_argument("--title", help="the plot's title")
    p.add_argument("--stop", nargs="?", const="all", metavar="ID", help="stop one plot, or all")
    p.add_argument("--from", dest="source", metavar="VAR", help="plot from this notebook "
                   "variable instead: another Bridge, or a recording (recording.open(FILE))")
    p.add_argument("--time", metavar="T0:DT", help="x axis in seconds: each record's T0 field "
                   "plus DT per value (for example t0:dt)")
    p.add_argument("--x", metavar="FIELD", help="x axis: this scalar field of the same type")
    p.add_argument("--widget", action="store_true", help="draw into an ipywidgets Image (for "
                   "layouts), bound to the variable plot_ID")


def _scope(p: argparse.ArgumentParser) -> None:
    p.add_argument("specs", nargs="+", metavar="TYPE.FIELD", help="what to draw; an array field "
                                                                   "is flattened in time order")
    p.add_argument("--window", type=int, default=2000, help="values shown per series while "
                   "following the stream (default: 2000)")
    p.add_argument("--fps", type=float, default=60.0, help="most frames a second (default: 60)")
    p.add_argument("--time", metavar="T0:DT", help="x axis in seconds: each record's T0 field "
                   "plus DT per value (for example t0:dt)")
    p.add_argument("--x", metavar="FIELD", help="x axis: this scalar field of the same type")
    p.add_argument("--title", help="the scope's title")
    p.add_argument("--height", type=int, default=320, help="the plot's height in pixels")
    p.add_argument("--from", dest="source", metavar="VAR", help="draw from this notebook "
                   "variable instead: another Bridge, or a recording (recording.open(FILE))")
    p.add_argument("--name", help="the variable it is bound to (default: scope_ID)")
    p.add_argument("--comm", action="store_true", help="frames through the kernel even where the "
                   "page could read the driver through Jupyter Server itself (scope.path)")


def _panel(p: argparse.ArgumentParser) -> None:
    p.add_argument("cls", metavar="STRUCT", help="the struct class the form is for")
    p.add_argument("--name", default="panel", help="the variable it is bound to (default: panel)")
    p.add_argument("--choices", nargs="+", default=[], metavar="FIELD=PREFIX",
                   help="dropdowns of the constants named PREFIX... for these integer fields")
    p.add_argument("--timeout", type=float, default=1.0, help="seconds a request waits for its "
                   "reply (default: 1)")


def parse_choices(items: list[str]) -> dict[str, str]:
    """``--choices op=DEMO_OP_ waveform=DEMO_WAVE_`` -> {"op": "DEMO_OP_", ...}."""
    choices = {}
    for item in items:
        field, sep, prefix = item.partition("=")
        if not sep or not field or not prefix:
            raise UsageError(f"--choices {item}: write FIELD=PREFIX, e.g. op=DEMO_OP_")
        choices[field] = prefix
    return choices


def _console(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default="console", help="the variable it is bound to (default: "
                   "console)")


def _record(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", help="the recording to write (docs/reference/recording-format.md)")
    p.add_argument("--types", help="only these types, as Telemetry,Status (default: every frame)")
    p.add_argument("--max-bytes", type=int, help="stop when the file would grow past this")
    p.add_argument("--sent", action="store_true", help="also the frames this kernel sends")
    p.add_argument("--append", action="store_true", help="add to an existing recording")
    p.add_argument("--stop", action="store_true", help="stop every recording")


def _serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address to listen on (default: CBridgeMagics.relay_host, "
                   "127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: CBridgeMagics.relay_port, 0: a free "
                   "one)")
    p.add_argument("--token", help="the token clients must give (default: a random one)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="an Origin allowed besides same-origin (repeatable)")
    p.add_argument("--stop", action="store_true", help="stop serving")


def _wait(p: argparse.ArgumentParser) -> None:
    p.add_argument("seconds", type=float, help="how long to keep the cell open")


def _help(p: argparse.ArgumentParser) -> None:
    p.add_argument("topic", nargs="?", metavar="COMMAND", help="the subcommand to explain")


COMMANDS = (
    Command("connect", "connect to a driver (or a relay) and bind the Bridge in the notebook",
            ("%cbridge connect unix:///tmp/cbridge-demo.sock",
             "%cbridge connect ws://host:8765/ --token T --name remote",
             "%cbridge connect raw+tcp://10.0.0.7:5025 --recv Measurement --send Command"),
            _connect),
    Command("status", "the link, records and drops per type, plots, relay clients",
            ("%cbridge status",)),
    Command("send", "send a struct instance and show the typed reply",
            ("%cbridge send Command(op=DEMO_OP_GET_STATUS)",
             "%cbridge send --no-reply Command(op=DEMO_OP_STOP)"), _send),
    Command("plot", "live plot of streamed fields in this cell's output",
            ("%cbridge plot Telemetry.samples --window 25600 --fps 10",
             "%cbridge plot Telemetry.samples --time t0:dt   # x axis in seconds",
             "%cbridge plot Telemetry.seq --x t0 --widget   # one field against another",
             "%cbridge plot Telemetry.samples --from r   # r = recording.open('run.cbrec')",
             "%cbridge plot --stop"), _plot),
    Command("scope", "a live scope drawn in the browser from numbers: zoom, pan, pause, PNG",
            ("%cbridge scope Telemetry.samples --window 100000 --time t0:dt",
             "%cbridge scope Status.level_db Status.frequency_hz --name s",
             "%cbridge scope Telemetry.samples --from r   # r = recording.open('run.cbrec')",
             "%cbridge plot --stop ID   # scopes stop like plots (or scope.close())"), _scope),
    Command("panel", "a form for a struct class: Request and Send buttons, the reply, errors",
            ("%cbridge panel Command --choices op=DEMO_OP_ waveform=DEMO_WAVE_",), _panel),
    Command("console", "the link's state, rates, drops, errors and relay clients, live",
            ("%cbridge console",), _console),
    Command("record", "record what the driver sends to a file, until --stop",
            ("%cbridge record run.cbrec --types Telemetry,Status --max-bytes 10000000000",
             "%cbridge record --stop"), _record),
    Command("serve", "serve the driver to remote notebooks over a WebSocket; prints the URL",
            ("%cbridge serve --port 8765", "%cbridge serve --stop"), _serve),
    Command("wait", "keep the cell open while plots update (headless runs)",
            ("%cbridge wait 3",), _wait),
    Command("disconnect", "stop every thread cbridge started and close the link",
            ("%cbridge disconnect",)),
    Command("help", "this help, or one subcommand's", ("%cbridge help plot",), _help),
)
NAMES = tuple(c.name for c in COMMANDS)


def _build() -> tuple[MagicArgumentParser, dict[str, argparse.ArgumentParser]]:
    # add_help=False everywhere: argparse's -h would exit the kernel's process; help is ours.
    parser = MagicArgumentParser(prog="%cbridge", add_help=False)
    sub = parser.add_subparsers(dest="command", parser_class=MagicArgumentParser, metavar="COMMAND")
    subs = {}
    for c in COMMANDS:
        p = sub.add_parser(c.name, add_help=False, help=c.summary, description=c.summary,
                           epilog="examples:\n" + "\n".join(f"  {e}" for e in c.examples),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        c.arguments(p)
        subs[c.name] = p
    return parser, subs


PARSER, SUBPARSERS = _build()


def help_text(topic: str | None = None) -> str:
    """Help for one subcommand, or for all of them."""
    if topic is not None:
        if topic not in SUBPARSERS:
            raise UsageError(f"%cbridge has no subcommand {topic!r} (it has {', '.join(NAMES)})")
        return SUBPARSERS[topic].format_help()
    parts = ["%cbridge COMMAND [options]: drive a C program from the notebook.", ""]
    parts += [f"  {c.name:<11} {c.summary}" for c in COMMANDS]
    parts += ["", "The Bridge is bound in the notebook as `bridge` (or --name VAR); its API covers "
                  "what the", "magics do not: bridge.request(obj), bridge.history('Telemetry'), ...",
              ""]
    parts += [SUBPARSERS[c.name].format_help() for c in COMMANDS if c.name != "help"]
    return "\n".join(parts)


def parse(line: str) -> argparse.Namespace:
    """A %cbridge line (not send) -> its arguments; UsageError on bad use."""
    # POSIX splitting, so --title "two words" arrives without its quotes; a comment is dropped.
    words = split(line)
    if words and words[0] in SUBPARSERS and ("-h" in words[1:] or "--help" in words[1:]):
        return argparse.Namespace(command="help", topic=words[0])
    return PARSER.parse_args(words)


def split_send(rest: str) -> tuple[bool, float, str]:
    """``[--no-reply] [--timeout S] EXPR``: options come first; the rest of the line is EXPR as typed."""
    no_reply = False
    timeout: Any = SUBPARSERS["send"].get_default("timeout")
    while True:
        head, _, tail = rest.strip().partition(" ")
        if head == "--no-reply":
            no_reply, rest = True, tail
        elif head == "--timeout":
            value, _, rest = tail.strip().partition(" ")
            try:
                timeout = float(value)
            except ValueError:
                raise UsageError(f"--timeout takes seconds, not {value!r}") from None
            if timeout <= 0:
                raise UsageError("--timeout must be positive")
        elif head.startswith("--timeout="):
            return split_send(f"--timeout {head.partition('=')[2]} {tail}")
        else:
            break
    if not rest.strip():
        raise UsageError("%cbridge send needs an expression, e.g. %cbridge send Command(op=0)")
    return no_reply, timeout, rest.strip()
