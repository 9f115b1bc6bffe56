"""Where the installed package keeps what a C build and the demo need, without knowing where
site-packages is: ``cbridge-config`` (also ``python -m cbridge_magics config``).

    cc app.c $(cbridge-config --cflags --libs) -o app          # shared, with an rpath
    cc app.c $(cbridge-config --cflags --libs --static) -o app # libcbridge.a
    PKG_CONFIG_PATH=$(cbridge-config --pkgconfigdir) pkg-config --cflags --libs cbridge
    cmake -DCMAKE_PREFIX_PATH=$(cbridge-config --cmakedir) ...  # find_package(cbridge CONFIG)

The wheel holds libcbridge under the package (``include/``, ``lib/``, ``lib/pkgconfig``,
``lib/cmake/cbridge``) and ``cbridge-demo-driver`` among the environment's scripts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import sysconfig
from pathlib import Path

from .errors import CBridgeError

DRIVER = "cbridge-demo-driver"


def prefix() -> Path:
    """The directory that holds the installed C library's ``include/`` and ``lib/``."""
    import cbridge_magics

    # An editable install's package spans the source tree and the installed files.
    for d in cbridge_magics.__path__:
        if (Path(d) / "include" / "cbridge.h").is_file():
            return Path(d)
    raise CBridgeError(
        "cbridge's C library is not installed with this package (looked in "
        f"{', '.join(cbridge_magics.__path__)}): install cbridge from its wheel or sdist "
        "(pip install cbridge), not by putting the source tree on sys.path")


def include_dir() -> Path:
    return prefix() / "include"


def lib_dir() -> Path:
    return prefix() / "lib"


def pkgconfig_dir() -> Path:
    return lib_dir() / "pkgconfig"


def cmake_dir() -> Path:
    return lib_dir() / "cmake" / "cbridge"


def demo_header() -> Path:
    """The demo driver's messages, as ``%cstruct --header demo_messages.h`` finds them."""
    return include_dir() / "demo_messages.h"


def demo_driver() -> Path:
    """The demo driver installed with this package: in this environment's scripts (also for a
    ``pip install --user``), else on PATH."""
    dirs = [sysconfig.get_path("scripts")]
    user_scheme = f"{os.name}_user"
    if user_scheme in sysconfig.get_scheme_names():
        dirs.append(sysconfig.get_path("scripts", user_scheme))
    for d in dirs:
        candidate = Path(d) / DRIVER
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(DRIVER)
    if found:
        return Path(found)
    raise CBridgeError(f"{DRIVER} is not installed: it comes with the cbridge package "
                       f"(pip install cbridge); looked in {', '.join(dirs)} and on PATH")


def cflags() -> list[str]:
    return [f"-I{include_dir()}"]


def libs(static: bool = False) -> list[str]:
    """Link flags: the shared library with an rpath to it (the package's lib/ is no place the
    dynamic loader searches), or libcbridge.a (it needs only libc)."""
    lib = lib_dir()
    if static:
        return [str(lib / "libcbridge.a")]
    return [f"-L{lib}", "-lcbridge", f"-Wl,-rpath,{lib}"]


def build_parser() -> argparse.ArgumentParser:
    """``cbridge-config``'s parser (the docs' reference reads it)."""
    parser = argparse.ArgumentParser(
        prog="cbridge-config", description="Where cbridge's C library and demo are installed, "
        "for a C build: print the flags or paths asked for, in order, on one line.")
    for flag, text in [
            ("--cflags", "compiler flags: the include directory of cbridge.h"),
            ("--libs", "linker flags: libcbridge.so with an rpath (with --static: libcbridge.a)"),
            ("--prefix", "the directory holding include/ and lib/"),
            ("--includedir", "the directory of cbridge.h and demo_messages.h"),
            ("--libdir", "the directory of libcbridge.a and libcbridge.so"),
            ("--pkgconfigdir", "the directory of cbridge.pc, for PKG_CONFIG_PATH"),
            ("--cmakedir", "the directory of cbridgeConfig.cmake, for CMAKE_PREFIX_PATH or "
                           "cbridge_DIR"),
            ("--demo-driver", "the demo driver program"),
            ("--modversion", "the version of cbridge")]:
        parser.add_argument(flag, action="append_const", const=flag, dest="asked", help=text)
    parser.add_argument("--static", action="store_true", help="--libs for static linking")
    return parser


def main(argv: list[str] | None = None) -> int:
    from . import __version__

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.asked:
        parser.print_help()
        return 2
    answers = {"--cflags": cflags, "--libs": lambda: libs(args.static),
               "--prefix": prefix, "--includedir": include_dir, "--libdir": lib_dir,
               "--pkgconfigdir": pkgconfig_dir, "--cmakedir": cmake_dir,
               "--demo-driver": demo_driver, "--modversion": lambda: __version__}
    out: list[str] = []
    try:
        for flag in args.asked:
            value = answers[flag]()
            out.extend(map(str, value) if isinstance(value, list) else [str(value)])
    except CBridgeError as e:
        print(f"cbridge-config: error: {e}", file=sys.stderr)
        return 1
    print(" ".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
