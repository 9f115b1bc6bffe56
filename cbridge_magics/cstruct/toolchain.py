"""The C compiler cstruct runs, and the Python it builds for; what to install when either is missing.

    tc = toolchain()            # $CC, else gcc, else cc; cheap after the first call
    check_tools(tc)             # CStructError saying what to install
    proc = run_cc([*tc.cc, "-E", "cell.h"], "preprocess")
    flags = search_flags(["/src/include"], ["/opt/include"], ["-DN=4"])   # -iquote, -I, as given
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import CStructError


@dataclass
class Toolchain:
    cc: tuple[str, ...]
    cc_path: str | None
    identity: str
    py_include: str
    ext_suffix: str


_toolchains: dict[str, Toolchain] = {}


def toolchain() -> Toolchain:
    """The C compiler ($CC, else gcc, else cc) and the Python it builds for; cheap after the first call."""
    env = os.environ.get("CC", "")
    tc = _toolchains.get(env)
    if tc is None:
        cc = tuple(shlex.split(env)) or (("gcc",) if shutil.which("gcc") else ("cc",))
        path = shutil.which(cc[0])
        identity = "missing"
        if path:
            real = os.path.realpath(path)
            st = os.stat(real)
            identity = f"{real}:{st.st_size}:{st.st_mtime_ns}"
        tc = Toolchain(cc, path, identity, sysconfig.get_paths()["include"],
                       sysconfig.get_config_var("EXT_SUFFIX") or ".so")
        _toolchains[env] = tc
    return tc


def check_tools(tc: Toolchain) -> None:
    if tc.cc_path is None:
        raise CStructError(
            f"no C compiler: {tc.cc[0]!r} was not found. Install one (Debian/Ubuntu: "
            "`apt-get install gcc`) or point $CC at it.")
    if not (Path(tc.py_include) / "Python.h").is_file():
        ver = f"{sys.version_info.major}.{sys.version_info.minor}"
        raise CStructError(
            f"no Python headers: {tc.py_include}/Python.h is missing. Install the development "
            f"package of this Python (Debian/Ubuntu: `apt-get install python{ver}-dev`).")


def run_cc(argv: Sequence[str], what: str) -> subprocess.CompletedProcess:
    """Run the compiler; a missing binary becomes a CStructError saying what to install."""
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, errors="replace")
    except FileNotFoundError:
        raise CStructError(
            f"no C compiler: {argv[0]!r} was not found ({what}). Install one "
            "(Debian/Ubuntu: `apt-get install gcc`) or point $CC at it.") from None


def run_cc_checked(argv: list[str]) -> str:
    """run_cc for a build cstruct makes of its own (the engine): a failure is a CStructError."""
    proc = run_cc(argv, "compile")
    if proc.returncode != 0:
        raise CStructError(f"building the cstruct engine failed:\n$ {shlex.join(argv)}\n"
                           f"{proc.stderr.strip()}")
    return proc.stderr.strip()


def search_flags(quote_dirs: Sequence[str], include_dirs: Sequence[str],
                 cflags: Sequence[str]) -> list[str]:
    """Compiler flags that search ``quote_dirs`` for quoted includes only, then ``include_dirs``,
    then pass ``cflags``: the flags of every cstruct compiler run (and of c-schema's)."""
    quote: list[str] = []
    for d in quote_dirs:
        # gcc's limits.h includes its syslimits.h with quotes, which then does #include_next
        # <limits.h>: gcc searches that from the first -iquote dir, so a folder with a limits.h
        # of its own (/usr/include/linux) would replace the system's even as -iquote. Such a
        # folder goes after the system's folders instead: its headers are still found, but
        # those the system also has come from the system.
        opt = "-idirafter" if os.path.isfile(os.path.join(d, "limits.h")) else "-iquote"
        quote += [opt, d]
    return [*quote, *(f"-I{d}" for d in include_dirs), *cflags]
