"""``python -m cbridge_magics install-kernel``: see cbridge_magics.kernelspec."""

from __future__ import annotations

import argparse
import sys

from . import kernelspec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cbridge_magics")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("install-kernel", help="install a kernelspec for this Python environment")
    p.add_argument("--name", default="cbridge", help="kernelspec name (default: cbridge)")
    p.add_argument("--display-name", help="name shown in Jupyter's launcher")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user")
    where.add_argument("--sys-prefix", action="store_true", help="install into this environment")
    where.add_argument("--prefix", help="install under this prefix")
    p.add_argument("--load-ext", action="store_true",
                   help="load cbridge_magics in every kernel at start (no %%load_ext needed)")
    args = parser.parse_args(argv)
    prefix = sys.prefix if args.sys_prefix else args.prefix
    path = kernelspec.install(args.name, args.display_name, user=args.user, prefix=prefix,
                              load_ext=args.load_ext)
    print(f"installed kernelspec {args.name!r} in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
