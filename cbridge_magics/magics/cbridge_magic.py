"""``%cbridge``: connect to a driver, send commands, plot its stream, serve it to others.

The subcommands and their options are declared in ``commands``; this class holds the state (the
Bridge, the plots) and turns each subcommand into calls on the Bridge, printing what they return.

    %cbridge connect unix:///tmp/cbridge-demo.sock
    %cbridge help plot
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
import time
from collections.abc import Iterator, Mapping
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from traitlets import Float, Int, Unicode, observe

from .. import cstruct, switch_interval
from ..errors import CBridgeError
from . import commands, failures, status
from .thread_log import ThreadLog


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
    """``%cbridge COMMAND``: connect to a driver, send commands, plot its stream, serve it to
    others. ``%cbridge?`` or ``%cbridge help`` lists the subcommands with their options.

    The defaults are traitlets: ``c.CBridgeMagics.history = 10_000`` in ipython_config.py, or
    ``%config CBridgeMagics.plot_fps = 5`` in a notebook; a magic's own argument wins."""

    history = Int(100_000, help="Records kept per streamed type (%cbridge connect --history).",
                  ).tag(config=True)
    plot_fps = Float(10.0, help="Most plot updates a second (%cbridge plot --fps).").tag(config=True)
    plot_window = Int(2000, help="Values shown per plotted series (%cbridge plot --window)."
                      ).tag(config=True)
    relay_host = Unicode("127.0.0.1", help="Where %cbridge serve listens (--host): loopback by "
                         "default.").tag(config=True)
    relay_port = Int(0, help="The port %cbridge serve listens on (--port); 0: a free one."
                     ).tag(config=True)
    relay_queue_bytes = Int(4 << 20, help="Stream bytes the relay queues per remote client "
                            "before dropping its oldest stream frames.").tag(config=True)
    relay_max_message = Int((1 << 20) + 16, help="The largest WebSocket message the relay sends "
                            "or takes.").tag(config=True)
    switch_interval = Float(0.0005, allow_none=True, help="The interpreter's thread switch "
                            "interval while a Bridge is connected, at most (seconds); None leaves "
                            "it alone.").tag(config=True)
    backoff_cap = Float(2.0, help="Most seconds between two attempts to reconnect to a driver."
                        ).tag(config=True)

    @observe("switch_interval")
    def _switch_interval_changed(self, change: Any) -> None:
        switch_interval.SWITCH_INTERVAL = change["new"]

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        switch_interval.SWITCH_INTERVAL = self.switch_interval
        self.bridge: Any = None
        self.plots: dict[str, Any] = {}
        self.widgets: list[Any] = []  # panels and consoles: their threads stop with the link
        self.thread_log = ThreadLog()
        logging.getLogger("cbridge_magics").addHandler(self.thread_log)
        shell.events.register("post_run_cell", self._report_thread_messages)

    # --- life --------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every plot, panel and console thread, and the bridge. Safe to call twice."""
        for plot in list(self.plots.values()):
            plot.stop()
        self.plots.clear()
        if self.bridge is not None:
            self.bridge.close()
            self.bridge = None
        for widget in self.widgets:
            widget.stop()  # after the link: a console's last redraw shows it closed
        self.widgets.clear()
        widgets = sys.modules.get("cbridge_magics.widgets")
        if widgets is not None:  # panels and consoles made in Python too
            widgets.stop_all()

    def unload(self) -> None:
        self.close()
        if self in self.shell.configurables:
            self.shell.configurables.remove(self)
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
        try:
            if command == "send" and rest.strip() not in ("-h", "--help"):
                return self._send(*commands.split_send(rest))  # Python: its comments are Python's
            if not command or command.startswith("#"):
                raise UsageError(f"%cbridge needs a subcommand: {', '.join(commands.NAMES)} "
                                 "(see %cbridge help)")
            args = commands.parse(line)
            return getattr(self, f"_{args.command}")(args)
        except CBridgeError as e:  # expected: one message and the next step, not a traceback
            failures.briefly(e, self.shell, command)
            raise

    def _help(self, args: argparse.Namespace) -> None:
        print(commands.help_text(args.topic))

    def _connect(self, args: argparse.Namespace) -> None:
        if args.history is None:
            args.history = self.history
        if args.history < 0:
            raise UsageError("--history must be >= 0")
        from ..bridge import connect

        raw = {k: self._struct_class(getattr(args, k), f"--{k}") for k in ("recv", "send")
               if getattr(args, k)}
        streams = [t for t in args.streams.split(",") if t] if args.streams else None
        try:
            b = connect(args.url, history=args.history, reconnect=not args.no_reconnect,
                        backoff=(0.05, self.backoff_cap),
                        timeout=args.timeout, token=args.token, streams=streams,
                        ca_file=args.ca_file, max_payload=args.max_payload, **raw)
        except ValueError as e:
            raise UsageError(str(e)) from None
        self.close()  # connecting again replaces the old connection, once the new one stands
        report = b.match(cstruct.registry.values())
        b.register(*report.matching)  # the compiled classes encode and decode from here on
        self.bridge = b
        self.shell.push({args.name: b})
        s = b.schema
        if b.raw:
            names = [t.name for t in s.types]
            print(f"connected to the raw link {b.name} (as {args.name}): records of {names[0]} "
                  f"in{f', of {names[-1]} out' if args.send else ''}; no HELLO, so the layouts "
                  "are the compiled classes'")
            return
        print(f"connected to {s.driver} {s.driver_version} at {b.name} (as {args.name})")
        print(textwrap.indent(str(report), "  "))

    def _struct_class(self, name: str, option: str) -> type:
        """A struct class by name: the notebook's variable of that name, else %%cstruct's."""
        cls = self.shell.user_ns.get(name)
        if not hasattr(cls, "__layout__"):
            cls = cstruct.registry.get(name)
        if cls is None:
            raise UsageError(f"{option} {name}: no struct class of that name; declare it with "
                             "%%cstruct (or %cstruct --header FILE.h) first")
        return cls

    def _status(self, _args: argparse.Namespace) -> None:
        print("\n".join(status.lines(self.bridge, self.plots)))

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
        if b.raw:  # a bare-struct program pairs no reply with a request: send, then read
            try:
                b.send(obj)
            except TypeError as e:  # not the class the link sends
                raise UsageError(str(e)) from None
            print(f"sent {type(obj).__name__} ({len(bytes(obj))} bytes; a raw link has no "
                  "replies: its answers arrive in the stream)")
            return None
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
        from ..live import LivePlot

        source = self._need_bridge() if args.source is None else self._history_source(args.source)
        try:
            plot = LivePlot(source, args.specs,
                            window=self.plot_window if args.window is None else args.window,
                            fps=self.plot_fps if args.fps is None else args.fps,
                            title=args.title, time=args.time, x=args.x, widget=args.widget)
        except ValueError as e:
            raise UsageError(str(e)) from None
        plot.start()
        self.plots[plot.id] = plot
        if args.widget:
            self.shell.push({f"plot_{plot.id}": plot})
        return None

    def _scope(self, args: argparse.Namespace) -> None:
        if args.time is not None and args.x is not None:
            raise UsageError("--time and --x both set the x axis: give one")
        source = self._need_bridge() if args.source is None else self._history_source(args.source)
        from ..scope import Scope

        try:
            scope = Scope(source, args.specs, window=args.window, fps=args.fps, time=args.time,
                          x=args.x, title=args.title, height=args.height,
                          fast_path=not args.comm)
        except ValueError as e:
            raise UsageError(str(e)) from None
        self.plots[scope.id] = scope
        self.shell.push({args.name or f"scope_{scope.id}": scope})
        scope.show()

    def _panel(self, args: argparse.Namespace) -> None:
        from IPython.display import display

        from ..widgets import Panel

        try:
            cls = self._struct_class(args.cls, "panel")
        except UsageError:  # not declared here: the driver's own type, built from its schema
            cls = self.bridge.types.get(args.cls) if self.bridge is not None else None
            if cls is None:
                raise
        choices = commands.parse_choices(args.choices)
        names = {**(self.bridge.types if self.bridge is not None else {}), **self.shell.user_ns}
        try:
            panel = Panel(cls, lambda: self.bridge, choices=choices, constants=names,
                          timeout=args.timeout)
        except ValueError as e:
            raise UsageError(str(e)) from None
        self.widgets.append(panel)
        self.shell.push({args.name: panel})
        display(panel)

    def _console(self, args: argparse.Namespace) -> None:
        from IPython.display import display

        from ..live import stop_all
        from ..widgets import Console

        def stop_plots() -> None:
            for plot in list(self.plots.values()):
                plot.stop()
            self.plots.clear()
            stop_all()

        console = Console(lambda: self.bridge, on_disconnect=self.close, on_stop_plots=stop_plots)
        self.widgets.append(console)
        self.shell.push({args.name: console})
        display(console)

    def _history_source(self, name: str) -> Any:
        obj = self.shell.user_ns.get(name)
        if not hasattr(obj, "history_of"):
            raise UsageError(f"--from {name}: not a Bridge or a recording in this notebook "
                             "(r = cbridge_magics.recording.open('run.cbrec'))")
        return obj

    def _record(self, args: argparse.Namespace) -> None:
        b = self._need_bridge()
        if args.stop:
            if args.file:
                raise UsageError("--stop stops every recording; it takes no FILE")
            for rec in b.stop_recording():
                print(f"cbridge: recording stopped: {status.recording_line(rec.stats())}")
            return
        if not args.file:
            raise UsageError("%cbridge record needs FILE, e.g. %cbridge record run.cbrec")
        if args.max_bytes is not None and args.max_bytes <= 0:
            raise UsageError("--max-bytes must be above 0")
        types = [t for t in (args.types or "").split(",") if t] or None
        unknown = [t for t in types or () if b.schema is not None and t not in b.schema.by_name]
        if unknown:
            raise UsageError(f"--types: the driver has no {', '.join(unknown)} (it has "
                             f"{', '.join(b.schema.by_name)})")
        from ..errors import CBridgeError

        try:
            rec = b.record(args.file, types=types, max_bytes=args.max_bytes, sent=args.sent,
                           append=args.append)
        except CBridgeError as e:
            raise UsageError(str(e)) from None
        print(f"cbridge: recording to {rec.path} ({', '.join(types) if types else 'every frame'})")

    def _serve(self, args: argparse.Namespace) -> None:
        b = self._need_bridge()
        if args.stop:
            stopped = b.stop_serving()
            for relay in stopped:
                print(f"cbridge: stopped serving ws://{relay.host}:{relay.port}/")
            if not stopped:
                print("cbridge: not serving")
            return
        args.host = args.host or self.relay_host
        args.port = self.relay_port if args.port is None else args.port
        if not 0 <= args.port <= 65535:
            raise UsageError("--port must be 0..65535")
        from ..errors import CBridgeError

        try:
            relay = b.serve(host=args.host, port=args.port, token=args.token,
                            queue_bytes=self.relay_queue_bytes, max_message=self.relay_max_message,
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


# %cbridge? shows the same help as %cbridge help, from the same declarations.
CBridgeMagics.cbridge.__doc__ = commands.help_text()
