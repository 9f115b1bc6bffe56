"""The command line: ``python -m cbridge_magics install-kernel``, ``list-kernels`` and
``remove-kernel`` (see cbridge_magics.kernelspec),
``c-schema HEADER.h`` (cbridge_magics.cstruct.c_schema), ``replay FILE --socket PATH``
(cbridge_magics.recording.replay), ``export FILE --to OUT.nc|.zarr|.parquet``
(cbridge_magics.recording.export), ``config --cflags --libs ...`` (cbridge_magics.config, also
installed as ``cbridge-config``) and ``demo [--out DIR]`` (cbridge_magics.demo)."""

from __future__ import annotations

import argparse
import shlex
import sys

from . import kernelspec


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["config"]:  # its own parser: every flag after it is cbridge-config's
        from . import config

        return config.main(args_in[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from . import demo

        return demo.run_args(args)
    if args.command == "c-schema":
        return _c_schema(parser, args, argv)
    if args.command == "replay":
        return _replay(parser, args)
    if args.command == "export":
        return _export(args)
    if args.command == "list-kernels":
        return _list_kernels()
    if args.command == "remove-kernel":
        return _remove_kernel(args.name)
    return _install_kernel(parser, args)


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser: every subcommand and option (the docs' reference reads it)."""
    from . import demo

    parser = argparse.ArgumentParser(prog="python -m cbridge_magics")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("config", add_help=False,
                   help="where the C library is, for a C build (as cbridge-config: "
                   "config --help)")
    d = sub.add_parser("demo", help="run the demo notebooks headless against the demo driver",
                       description="Run the package's demo notebooks (server and client) "
                       "against the installed demo driver; write the executed notebooks, their "
                       "HTML and their plots into --out. Needs pip install 'cbridge[demo]'.")
    demo.add_arguments(d)
    p = sub.add_parser("install-kernel", help="install a kernelspec for this Python environment")
    p.add_argument("--name", default="cbridge", help="kernelspec name (default: cbridge)")
    p.add_argument("--display-name", help="name shown in Jupyter's launcher")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user")
    where.add_argument("--sys-prefix", action="store_true", help="install into this environment")
    where.add_argument("--prefix", help="install under this prefix")
    p.add_argument("--load-ext", action="store_true",
                   help="load cbridge_magics in every kernel at start (no %%load_ext needed)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="an environment variable of every kernel it starts (repeatable)")
    p.add_argument("--connect", metavar="URL",
                   help="every kernel runs %%cbridge connect URL at start and has `bridge`")
    sub.add_parser("list-kernels", help="list the kernelspecs cbridge installed")
    rm = sub.add_parser("remove-kernel", help="remove a kernelspec cbridge installed")
    rm.add_argument("name")
    c = sub.add_parser(
        "c-schema", help="write libcbridge field tables for the structs of a C header",
        description="Write the cb_field tables of every struct in HEADER that has a type id, "
        "and int PREFIX_register(cb_server *s), which registers them. Ids come from --ids, else "
        "from an integer macro or enum constant PREFIX_TYPE_NAME in the header (prefix and "
        "struct name upper-cased), else from --first-id.")
    c.add_argument("header", help="the C header that declares the structs")
    c.add_argument("-o", "--output", help="the .c to write (its .h goes beside it); "
                   "default: the .c to standard output")
    c.add_argument("--prefix", help="names: PREFIX_register, PREFIX_TYPE_NAME (default: the "
                   "header's file name)")
    c.add_argument("--ids", action="append", default=[], metavar="NAME=ID,...",
                   help="type ids, as Command=256,Status=257 (repeatable)")
    c.add_argument("--first-id", type=lambda v: int(v, 0), metavar="N",
                   help="give every struct without an id the next free one from N")
    c.add_argument("--include", help='how the .c includes the header (default: a path relative '
                   'to the output, in quotes; e.g. "<mylib/messages.h>")')
    c.add_argument("-I", dest="include_dirs", action="append", default=[], metavar="DIR",
                   help="also search DIR for the header's includes")
    c.add_argument("--cflags", default="", help="more compiler flags, as one string")
    r = sub.add_parser(
        "replay", help="serve a recording as a driver, on a Unix socket",
        description="Serve FILE (made by bridge.record or %%cbridge record) over the cbridge "
        "protocol: its HELLO, its stream frames, PING, and requests answered with the recorded "
        "replies to requests of their type, in order (ERROR 7 when the recording has none). "
        "Stops on Ctrl-C or SIGTERM.")
    r.add_argument("file", help="the recording")
    r.add_argument("--socket", required=True, help="the Unix socket to listen on")
    r.add_argument("--speed", default="1.0", help="a factor of the recorded pace, or max: as "
                   "fast as the clients read (default: 1.0)")
    r.add_argument("--loop", action="store_true", help="start again at the end")
    r.add_argument("--epoch", type=int, default=0, help="which schema of a recording that spans "
                   "drivers (default: 0, the first)")
    e = sub.add_parser(
        "export", help="write a recording's records to NetCDF, Zarr or Parquet",
        description="Write the records of FILE (a recording) to OUT: a NetCDF4 group (.nc) or a "
        "Zarr v3 group (.zarr, or an fsspec URL) per type, or a Parquet file per type "
        "(.parquet: the file for one type, a folder of TYPE.parquet for several), with their "
        "receive times and where they came from. Needs pip install 'cbridge[data]'.")
    e.add_argument("file", help="the recording")
    e.add_argument("--to", required=True, metavar="OUT", help="the output: OUT.nc, OUT.zarr "
                   "or OUT.parquet (it must not exist)")
    e.add_argument("--types", metavar="T,U", help="the types to write (default: every type "
                   "with records)")
    e.add_argument("--epoch", type=int, help="which schema, for a type whose layout changed "
                   "during the recording")
    e.add_argument("--compress", action="store_true", help="zlib (NetCDF), zstd (Zarr, "
                   "Parquet)")
    e.add_argument("--chunk-records", type=int, metavar="N", help="records read and written "
                   "at a time (default: about 64 MiB of them)")
    e.add_argument("--progress", action="store_true", help="a progress bar on stderr even "
                   "when it is not a terminal")
    return parser


def _list_kernels() -> int:
    for name, s in sorted(kernelspec.cbridge_kernels().items()):
        spec = s["spec"]
        meta = spec["metadata"]["cbridge"]
        extras = [f"connects to {meta['connect']}"] if meta.get("connect") else []
        extras += [f"env {k}={v}" for k, v in spec.get("env", {}).items()]
        print(f"{name}\t{s['resource_dir']}\t{meta.get('python')}"
              + (f"\t{'; '.join(extras)}" if extras else ""))
    return 0


def _remove_kernel(name: str) -> int:
    try:
        print(f"removed kernelspec {name!r} from {kernelspec.remove(name)}")
    except ValueError as e:
        print(f"remove-kernel: error: {e}", file=sys.stderr)
        return 1
    return 0


def _install_kernel(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    env = {}
    for item in args.env:
        key, eq, value = item.partition("=")
        if not eq or not key:
            parser.error(f"--env wants KEY=VALUE, got {item!r}")
        env[key] = value
    prefix = sys.prefix if args.sys_prefix else args.prefix
    path = kernelspec.install(args.name, args.display_name, user=args.user, prefix=prefix,
                              load_ext=args.load_ext, env=env, connect=args.connect)
    print(f"installed kernelspec {args.name!r} in {path}")
    return 0


def _c_schema(parser: argparse.ArgumentParser, args: argparse.Namespace,
              argv: list[str] | None) -> int:
    from .cstruct import c_schema
    from .errors import CStructError

    try:
        ids = c_schema.parse_ids(args.ids)
    except ValueError as e:
        parser.error(str(e))
    command = shlex.join(["python", "-m", "cbridge_magics",
                          *(sys.argv[1:] if argv is None else argv)])
    try:
        gen = c_schema.generate(args.header, prefix=args.prefix, ids=ids, first_id=args.first_id,
                                include=args.include, out=args.output,
                                include_dirs=args.include_dirs, cflags=shlex.split(args.cflags),
                                command=command)
    except CStructError as e:
        print(f"c-schema: error: {e}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(gen.c)
    else:
        h = c_schema.write(gen, args.output)
        print(f"c-schema: wrote {args.output} and {h}: {gen.summary()} ({gen.seconds:.2f} s)",
              file=sys.stderr)
    return 0


def _replay(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from .errors import CBridgeError
    from .recording.replay import Replay

    if args.speed == "max":
        speed = None
    else:
        try:
            speed = float(args.speed)
        except ValueError:
            parser.error(f"--speed wants a number or max, not {args.speed!r}")
    logging.basicConfig(level=logging.INFO, format="replay: %(message)s")
    try:
        replay = Replay(args.file, args.socket, speed=speed, loop=args.loop, epoch=args.epoch)
    except (CBridgeError, ValueError, OSError) as e:
        print(f"replay: error: {e}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        replay.serve(stop)
    except OSError as e:
        print(f"replay: error: {e}", file=sys.stderr)
        return 1
    return 0


def _export(args: argparse.Namespace) -> int:
    import os
    import time

    from .errors import CBridgeError
    from .recording import open as open_recording

    bar = None
    start = time.monotonic()

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:  # made once the total is known
            from .recording.datasets import need

            bar = need("tqdm", "export's progress bar").tqdm(
                total=total, unit=" records", unit_scale=True, file=sys.stderr, desc="export")
        bar.update(done - bar.n)

    try:
        with open_recording(args.file) as rec:
            out = rec.export(args.to, types=args.types, epoch=args.epoch,
                             compress=args.compress, chunk_records=args.chunk_records,
                             progress=progress if args.progress or sys.stderr.isatty()
                             else None)
    except KeyError as e:  # an unknown type: its message, without KeyError's quotes
        return _export_error(bar, e.args[0] if e.args else e)
    except (CBridgeError, ValueError, OSError, ImportError) as e:
        return _export_error(bar, e)
    if bar is not None:
        bar.close()
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.to)
               for f in fs) if os.path.isdir(args.to) else \
        os.path.getsize(args.to) if os.path.isfile(args.to) else None
    counts = ", ".join(f"{name} ({t['records']:,} records)" for name, t in out["types"].items())
    print(f"export: wrote {counts} to {args.to}"
          + (f" ({size:,} bytes)" if size is not None else "")
          + f" in {time.monotonic() - start:.2f} s")
    return 0


def _export_error(bar: object, message: object) -> int:
    if bar is not None:
        bar.close()  # type: ignore[attr-defined]
    print(f"export: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
