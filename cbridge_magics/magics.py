"""IPython magics of cbridge: ``%%cstruct`` / ``%cstruct`` (C declarations -> compiled classes)
and ``%cbridge`` (connect, send, plot, serve; see CBridgeMagics).

    %%cstruct -n msgs               # options: -n NAME, -c CFLAGS, -I DIR, -f (force), -v (verbose)
    #include <stdint.h>
    typedef struct { uint32_t op; double gain; } Command;

    %cstruct --header c_driver/include/demo_messages.h -I c_driver/include
    %cstruct --clear-cache

Flags that start with a dash go in with an equals sign or with a space inside the quotes:
``%%cstruct --cflags=-DN=8`` or ``%%cstruct -c "-DN=8 -fshort-enums"``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import (MagicArgumentParser, argument, magic_arguments,
                                          parse_argstring)
from IPython.utils.process import arg_split

from . import cstruct


def _unquote(value: str) -> str:
    # magic_arguments splits the line without removing quotes: -c '-DA=1 -DB=2' arrives quoted.
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _summary(defs: cstruct.Definitions, how: str) -> str:
    classes = ", ".join(defs.classes) or "no structs"
    consts = f"; constants {', '.join(defs.constants)}" if defs.constants else ""
    return f"cstruct: {classes}{consts} ({how})"


@magics_class
class CStructMagics(Magics):
    """``%%cstruct``: the cell's C declarations become classes (and names) in the notebook."""

    @magic_arguments()
    @argument("-n", "--name", help="name of the compiled module; also bound in the notebook to "
                                   "the mapping of everything the cell defines")
    @argument("-c", "--cflags", default="", help="extra C compiler flags, e.g. --cflags=-DN=8")
    @argument("-I", dest="include", action="append", default=[], metavar="DIR",
              help="add DIR to the include path (repeatable)")
    @argument("-f", "--force", action="store_true", help="rebuild even if cached")
    @argument("-v", "--verbose", action="store_true",
              help="show the compiler's output and the build steps also on success")
    @argument("--header", metavar="PATH", help="(line magic) compile this header file")
    @argument("--clear-cache", action="store_true", help="(line magic) empty the build cache")
    @line_cell_magic
    def cstruct(self, line: str, cell: str | None = None) -> None:
        """Compile C struct declarations into Python classes with the C compiler's layout.

        Every struct or union becomes a class in the notebook, and enum constants and integer
        #defines become names:

            %%cstruct
            #include <stdint.h>
            #define N_SAMPLES 8
            typedef struct { uint16_t id; double t; float samples[N_SAMPLES]; } Frame;

            f = Frame(id=1, t=0.5); bytes(f); Frame.unpack(bytes(f)); Frame.dtype; N_SAMPLES
        """
        args = parse_argstring(self.cstruct, line)
        if args.clear_cache:
            if cell is not None or args.header:
                raise UsageError("--clear-cache takes no cell and no header")
            n = cstruct.clear_cache()
            print(f"cstruct: cache {cstruct.cache_dir()} emptied ({n} builds)")
            return
        options = dict(cflags=_unquote(args.cflags), include_dirs=[_unquote(d) for d in args.include],
                       name=args.name, force=args.force, verbose=args.verbose)
        if cell is None:
            if not args.header:
                raise UsageError("%cstruct needs --header PATH (or --clear-cache); "
                                 "use %%cstruct for a cell of declarations")
            defs = cstruct.compile_header(_unquote(args.header), **options)
        else:
            if args.header:
                raise UsageError("--header is for the line magic %cstruct, not for a %%cstruct cell")
            # Line 1 of the cell is the %%cstruct line: the source starts on line 2.
            defs = cstruct.compile(cell, filename="<cstruct cell>", first_line=2, **options)
        self.shell.push(dict(defs))
        if args.name:
            self.shell.push({args.name: defs})
        how = "from the cache" if defs.cached else f"built in {defs.build_seconds:.1f} s"
        print(_summary(defs, how))
        if args.verbose:
            print(f"module {defs.module.__name__}: {defs.module.__file__}")
            if defs.compiler_output:
                print(defs.compiler_output)


# --- %cbridge ------------------------------------------------------------------------------------

def _subcommand_parsers() -> MagicArgumentParser:
    parser = MagicArgumentParser(prog="%cbridge", add_help=False)
    sub = parser.add_subparsers(dest="command", parser_class=MagicArgumentParser, metavar="COMMAND")
    p = sub.add_parser("connect", add_help=False)
    p.add_argument("url", help="unix:///path/to.sock or ws://host:port/?token=...")
    p.add_argument("--token", help="the relay's token, if not in the URL")
    p.add_argument("--as", dest="name", default="bridge", help="name of the Bridge in the notebook")
    p.add_argument("--history", type=int, default=100_000, help="records kept per streamed type")
    p.add_argument("--no-reconnect", action="store_true", help="do not reconnect when the driver goes")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the driver's HELLO")
    sub.add_parser("status", add_help=False)
    p = sub.add_parser("plot", add_help=False)
    p.add_argument("specs", nargs="*", metavar="TYPE.FIELD")
    p.add_argument("--window", type=int, default=2000, help="values shown per series")
    p.add_argument("--fps", type=float, default=10.0, help="most updates a second")
    p.add_argument("--title")
    p.add_argument("--stop", nargs="?", const="all", metavar="ID", help="stop one plot, or all")
    p = sub.add_parser("serve", add_help=False)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    p.add_argument("--port", type=int, default=0, help="port (0 picks a free one)")
    p.add_argument("--token", help="the token clients must give (default: a random one)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="an Origin allowed besides same-origin (repeatable)")
    p.add_argument("--stop", action="store_true", help="stop serving")
    p = sub.add_parser("wait", add_help=False)
    p.add_argument("seconds", type=float)
    sub.add_parser("disconnect", add_help=False)
    return parser


_PARSER = _subcommand_parsers()


def _split_send(rest: str) -> tuple[bool, float, str]:
    """``[--no-reply] [--timeout S] EXPR``: options come first; the rest of the line is EXPR as typed."""
    no_reply, timeout = False, 1.0
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
            return _split_send(f"--timeout {head.partition('=')[2]} {tail}")
        else:
            break
    if not rest.strip():
        raise UsageError("%cbridge send needs an expression, e.g. %cbridge send Command(op=0)")
    return no_reply, timeout, rest.strip()


class _ThreadLog(logging.Handler):
    """Collects what cbridge's threads log (warnings and worse) so the next cell can report it:
    threads never print into a cell's output themselves. The same line repeated is counted."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: deque[list] = deque(maxlen=20)  # [text, times]
        self.missed = 0

    def emit(self, record: logging.LogRecord) -> None:
        if threading.current_thread() is threading.main_thread():
            return  # the main thread's own errors reach the user as exceptions
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        if self.lines and self.lines[-1][0] == text:
            self.lines[-1][1] += 1
            return
        if len(self.lines) == self.lines.maxlen:
            self.missed += 1
        self.lines.append([text, 1])

    def drain(self) -> list[str]:
        with self.lock:  # emit() runs under the same lock, on the threads that log
            lines = [text if n == 1 else f"{text} (x{n})" for text, n in self.lines]
            if self.missed:
                lines.insert(0, f"({self.missed} earlier messages not shown)")
            self.lines.clear()
            self.missed = 0
        return lines


class _Names(Mapping):
    """The names a %cbridge send expression sees: the notebook's, then the driver's types."""

    def __init__(self, user_ns: Mapping[str, Any], types: Mapping[str, type]) -> None:
        self.user_ns, self.types = user_ns, types

    def __getitem__(self, name: str) -> Any:
        if name in self.user_ns:
            return self.user_ns[name]
        return self.types[name]

    def __iter__(self) -> Iterator[str]:
        return iter({**self.types, **self.user_ns})

    def __len__(self) -> int:
        return len({**self.types, **self.user_ns})


@magics_class
class CBridgeMagics(Magics):
    """``%cbridge``: connect to a driver, send commands, plot its stream, serve it to others.

    Subcommands (one per call):

        %cbridge connect unix:///tmp/cbridge-demo.sock [--as NAME] [--history N] [--no-reconnect]
        %cbridge connect ws://host:8765/?token=... (or --token T): a driver served by another kernel
        %cbridge status
        %cbridge send Command(op=DEMO_OP_START, rate_hz=1000) [--no-reply] [--timeout S]
            (options go before the expression: %cbridge send --timeout 5 Command(op=0))
        %cbridge plot Telemetry.samples [TYPE.FIELD ...] [--window 2000] [--fps 10] [--title T]
        %cbridge plot --stop [ID]
        %cbridge serve [--port 8765] [--host 127.0.0.1] [--allow-origin URL]   # prints the ws:// URL
        %cbridge serve --stop
        %cbridge wait 3                 # keep the cell open while plots update
        %cbridge disconnect             # stop every thread cbridge started and close the socket

    The Bridge is bound in the notebook as ``bridge`` (or ``--as NAME``); its API is there for
    everything the magics do not cover: bridge.request(obj), bridge.history("Telemetry"), ...
    """

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.bridge: Any = None
        self.plots: dict[str, Any] = {}
        self.thread_log = _ThreadLog()
        logging.getLogger("cbridge_magics").addHandler(self.thread_log)
        shell.events.register("post_run_cell", self._report_thread_messages)

    # --- life --------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every plot and the bridge. Safe to call twice."""
        for plot in list(self.plots.values()):
            plot.stop()
        self.plots.clear()
        if self.bridge is not None:
            self.bridge.close()
            self.bridge = None

    def unload(self) -> None:
        self.close()
        logging.getLogger("cbridge_magics").removeHandler(self.thread_log)
        try:
            self.shell.events.unregister("post_run_cell", self._report_thread_messages)
        except ValueError:
            pass

    def _report_thread_messages(self, _result: Any = None) -> None:
        lines = self.thread_log.drain()
        if lines:
            print("cbridge (background):\n  " + "\n  ".join(lines), file=sys.stderr)

    def _need_bridge(self) -> Any:
        if self.bridge is None:
            raise UsageError("not connected: %cbridge connect unix:///path/to.sock first")
        return self.bridge

    # --- the magic ---------------------------------------------------------------------------

    @line_magic
    def cbridge(self, line: str) -> Any:
        command, _, rest = line.strip().partition(" ")
        if command == "send":
            return self._send(*_split_send(rest))
        if not command:
            raise UsageError("%cbridge needs a subcommand: connect, status, send, plot, serve, "
                             "wait, disconnect (see %cbridge?)")
        # POSIX splitting, so --title "two words" arrives without its quotes.
        args = _PARSER.parse_args(arg_split(line, posix=True))
        return getattr(self, f"_{args.command}")(args)

    def _connect(self, args: argparse.Namespace) -> None:
        if args.history < 0:
            raise UsageError("--history must be >= 0")
        from .bridge import connect

        try:
            b = connect(args.url, history=args.history, reconnect=not args.no_reconnect,
                        timeout=args.timeout, token=args.token)
        except ValueError as e:
            raise UsageError(str(e)) from None
        self.close()  # connecting again replaces the old connection, once the new one stands
        checks, good = self._layout_checks(b)
        b.register(*good)  # the compiled classes encode and decode from here on
        self.bridge = b
        self.shell.push({args.name: b})
        s = b.schema
        print(f"connected to {s.driver} {s.driver_version} at {b.name} (as {args.name})")
        for t in s.types:
            print(f"  {t.id:>5}  {t.name:<20} {t.size:>6} bytes  {checks[t.name]}")

    @staticmethod
    def _layout_checks(b: Any) -> tuple[dict[str, str], list[type]]:
        """For each driver type: is there a %%cstruct class of that name, and does it match?"""
        from . import cstruct
        from .errors import LayoutMismatch
        from .protocol import check_layout

        checks, good = {}, []
        for t in b.schema.types:
            cls = cstruct.registry.get(t.name)
            if cls is None:
                checks[t.name] = "schema-built class (no %%cstruct of that name)"
                continue
            try:
                check_layout(cls.__layout__, t.layout)
            except LayoutMismatch as e:
                checks[t.name] = f"LAYOUT MISMATCH, will not send or decode it: {e}"
                continue
            checks[t.name] = "layout matches your %%cstruct class"
            good.append(cls)
        return checks, good

    def _status(self, _args: argparse.Namespace) -> None:
        b = self.bridge
        if b is None:
            print("cbridge: not connected")
            return
        st = b.stats()
        print(f"cbridge: {st['state']} to {st['url']} ({st['driver']}), reconnects {st['reconnects']}")
        if st["last_error"]:
            print(f"  last error: {st['last_error']}")
        checks = self._layout_checks(b)[0] if b.schema else {}
        for name, counts in st["types"].items():
            print(f"  {name:<20} {counts['records']:>12,} records {counts['frames']:>10,} frames"
                  f"  {checks.get(name, '')}")
        print(f"  stream frames dropped for this reader (as told by the other end): "
              f"{st['dropped_frames']}; gaps seen: {st['stream_gaps']}; "
              f"refused sends: {st['refused_sends']}; pending requests: {st['pending']}")
        for plot in self.plots.values():
            print(f"  plot {plot!r}")
        for relay in b.relays:
            print(f"  serving ws://{relay.host}:{relay.port}/ (driver link "
                  f"{'up' if relay.driver_connected else 'DOWN'}), {len(relay.clients)} clients")
            clients = [(c, "") for c in relay.client_stats()]
            clients += [(c, " (left)") for c in relay.closed_clients]
            for c, left in clients:
                print(f"    client {c.id} from {c.peer}{left}: {c.delivered:,} stream frames "
                      f"delivered, {c.dropped:,} dropped, {c.queued_bytes / 2**20:.1f} MiB queued, "
                      f"{c.requests:,} requests")

    def _send(self, no_reply: bool, timeout: float, expr: str) -> Any:
        b = self._need_bridge()
        try:
            # the notebook's names first, then the driver's types (schema-built when no %%cstruct
            # declared them), so Command(op=0) works right after connecting
            obj = eval(expr, self.shell.user_ns, _Names(self.shell.user_ns, b.types))  # noqa: S307
        except Exception as e:
            hint = f" (the driver's types: {', '.join(b.types)})" if isinstance(e, NameError) else ""
            raise UsageError(f"cannot evaluate {expr!r}: {type(e).__name__}: {e}{hint}") from None
        if not hasattr(type(obj), "__layout__"):
            raise UsageError(f"{expr} is of type {type(obj).__name__}, not a struct instance")
        if no_reply:
            seq = b.send(obj)
            print(f"sent {type(obj).__name__} (seq {seq})")
            return None
        return b.request(obj, timeout=timeout)

    def _plot(self, args: argparse.Namespace) -> Any:
        if args.stop is not None:
            if args.specs:
                raise UsageError("--stop takes a plot id, not TYPE.FIELD")
            ids = list(self.plots) if args.stop == "all" else [args.stop]
            for pid in ids:
                plot = self.plots.pop(pid, None)
                if plot is None:
                    raise UsageError(f"no plot {pid!r} (running: {', '.join(self.plots) or 'none'})")
                plot.stop()
            return None
        if not args.specs:
            raise UsageError("%cbridge plot needs TYPE.FIELD, e.g. %cbridge plot Telemetry.samples")
        from .live import LivePlot

        try:
            plot = LivePlot(self._need_bridge(), args.specs, window=args.window, fps=args.fps,
                            title=args.title)
        except ValueError as e:
            raise UsageError(str(e)) from None
        plot.start()
        self.plots[plot.id] = plot
        return None

    def _serve(self, args: argparse.Namespace) -> None:
        b = self._need_bridge()
        if args.stop:
            stopped = b.stop_serving()
            for relay in stopped:
                print(f"cbridge: stopped serving ws://{relay.host}:{relay.port}/")
            if not stopped:
                print("cbridge: not serving")
            return
        if not 0 <= args.port <= 65535:
            raise UsageError("--port must be 0..65535")
        from .errors import CBridgeError

        try:
            relay = b.serve(host=args.host, port=args.port, token=args.token,
                            allowed_origins=args.allow_origin)
        except ValueError as e:
            raise UsageError(str(e)) from None
        except CBridgeError as e:
            raise UsageError(f"cannot serve: {e}") from None
        print(f"cbridge: serving {b.name} to remote notebooks at\n  {relay.url}\n"
              "(anyone with this URL can drive the instrument: share it like a password)")

    def _wait(self, args: argparse.Namespace) -> None:
        if args.seconds < 0:
            raise UsageError("wait takes a number of seconds >= 0")
        # Short sleeps: Ctrl-C (a kernel interrupt) lands at once, in this thread only.
        deadline = time.monotonic() + args.seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))

    def _disconnect(self, _args: argparse.Namespace) -> None:
        if self.bridge is None and not self.plots:
            print("cbridge: not connected")
            return
        url = self.bridge.name if self.bridge is not None else ""
        self.close()
        print(f"cbridge: disconnected from {url}")
