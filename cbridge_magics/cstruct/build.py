"""Build and cache of the struct modules: key, generate, Cython in-process, gcc, atomic install, load.

Cache layout (root: $CBRIDGE_CACHE_DIR, else $XDG_CACHE_HOME/cbridge, else ~/.cache/cbridge)::

    <root>/cstruct/<key>/manifest.json   the current build: module name, .so, header deps, compiler output
    <root>/cstruct/<key>/<build>/        one build: the source header, .pyx, .c and the extension module
    <root>/cstruct/.tmp-*/               builds in progress
    <root>/engine/<key>/                 the engine, when the package build did not compile it

The key hashes everything that can change the binary (see ``cache_key``). A build happens in a
temporary directory that is renamed into place, and manifest.json is replaced last (os.replace), so
another kernel sees either no entry or a whole one, never a half-written module. Every build has its
own module name (``<prefix>_<key>_<build>``): a forced rebuild loads beside the old module, whose
classes and instances keep working.

    req = Request(source, "<cstruct>", 1, (), ())
    module, manifest, cached = obtain(req, force=False)
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import logging
import os
import secrets
import shlex
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from ..errors import CStructError
from .toolchain import Toolchain, check_tools, run_cc, run_cc_checked, search_flags, toolchain

log = logging.getLogger("cbridge_magics.cstruct")

# -O1: the constructor's speed of -O2 at about 60% of its compile time; -Og and -O0 make unpack
# (which runs the module's tp_new) too slow for its target (bench/bench_cstruct.py).
COMPILE_FLAGS = ("-shared", "-fPIC", "-O1", "-g0", "-fwrapv", "-fno-strict-aliasing", "-pipe")
SOURCE_HEADER = "cstruct_source.h"
_GENERATOR_FILES = ("__init__.py", "preprocess.py", "parse.py", "macros.py", "codegen.py",
                    "runtime.py", "build.py", "toolchain.py", "engine.pyx", "engine.pxd",
                    "cstruct_engine.h")
PACKAGE_DIR = Path(__file__).resolve().parent  # cbridge_magics/cstruct: engine.pyx and its header
ENGINE = f"{__package__ or 'cbridge_magics.cstruct'}.engine"
_lock = threading.RLock()  # one build at a time per process (Cython's compiler is not reentrant)


@dataclass(frozen=True)
class Request:
    """What to compile; every field goes into the cache key."""

    source: str
    filename: str                   # the name compiler messages give the source
    first_line: int                 # the line number of the source's first line in messages
    cflags: tuple[str, ...]
    include_dirs: tuple[str, ...]   # absolute; -I: searched for <...> and "..." includes
    name: str | None = None         # module name prefix (-n)
    # absolute; searched for "..." includes only (-iquote; see cc_flags), so that a folder
    # holding its own stddef.h (as /usr/include/linux does) never shadows the system's
    quote_dirs: tuple[str, ...] = ()


@dataclass
class Manifest:
    module: str
    build: str
    so: str                          # relative to the entry directory
    deps: dict[str, str]             # header path -> sha256 of its content
    output: str                      # compiler output (warnings), shown with -v
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)


def cache_root() -> Path:
    """$CBRIDGE_CACHE_DIR, else $XDG_CACHE_HOME/cbridge, else ~/.cache/cbridge."""
    env = os.environ.get("CBRIDGE_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cbridge"


def cstruct_dir() -> Path:
    return cache_root() / "cstruct"


def clear_cache() -> int:
    """Remove every cached build; returns how many entries went. Loaded modules keep working."""
    d = cstruct_dir()
    if not d.is_dir():
        return 0
    n = 0
    for entry in d.iterdir():
        n += not entry.name.startswith(".")
        shutil.rmtree(entry, ignore_errors=True)
    return n


_generator_hash: str | None = None


def _generator_digest() -> str:
    global _generator_hash
    if _generator_hash is None:
        h = hashlib.sha256()
        here = Path(__file__).parent
        for name in _GENERATOR_FILES:
            h.update((here / name).read_bytes())
        _generator_hash = h.hexdigest()
    return _generator_hash


def _package_version() -> str:
    pkg = sys.modules.get(__package__ or "cbridge_magics")
    return str(getattr(pkg, "__version__", "0"))


def cache_key(req: Request, tc: Toolchain) -> str:
    """A hash of everything that can change the binary: the source and its options, the Python
    ABI, Cython's version, the compiler and its flags, the generator and the package version."""
    try:
        from Cython import __version__ as cython_version
    except ImportError:
        cython_version = "missing"
    parts = {
        "source": req.source, "filename": req.filename, "first_line": req.first_line,
        "cflags": req.cflags, "include_dirs": req.include_dirs, "quote_dirs": req.quote_dirs,
        "name": req.name,
        "python": [sys.version, sys.implementation.cache_tag, tc.ext_suffix, tc.py_include],
        "cython": cython_version, "cc": [tc.cc, tc.identity], "flags": COMPILE_FLAGS,
        "generator": _generator_digest(), "package": _package_version(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def cc_flags(req: Request) -> list[str]:
    """The include and user flags of every compiler run of ``req``: the three parse passes and
    the final compile must find the same headers."""
    return search_flags(req.quote_dirs, req.include_dirs, req.cflags)


def _sha(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


# --- loading -----------------------------------------------------------------------------------

def _read_manifest(entry: Path) -> Manifest | None:
    try:
        m = Manifest(**json.loads((entry / "manifest.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if not (entry / m.so).is_file():
        return None
    for path, digest in m.deps.items():
        if _sha(path) != digest:  # an included header changed since the build
            log.debug("cstruct: %s changed, rebuilding", path)
            return None
    return m


def _load(path: Path, modname: str) -> ModuleType:
    mod = sys.modules.get(modname)
    if mod is not None:
        return mod
    if modname != ENGINE:
        ensure_engine()  # a struct module imports the engine as it initialises
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise CStructError(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod  # before exec: pickling finds the classes by module name
    try:
        spec.loader.exec_module(mod)
    except CStructError:
        del sys.modules[modname]
        raise
    except Exception as e:
        del sys.modules[modname]
        raise CStructError(f"the compiled module {path} does not load: {e}") from e
    return mod


def load_by_module_name(modname: str) -> ModuleType:
    """Find a module of an earlier build in the cache by its name (used to unpickle)."""
    try:
        key12 = modname.rsplit("_", 2)[1]
    except IndexError:
        raise ImportError(f"{modname} is not a cstruct module") from None
    for so in sorted(cstruct_dir().glob(f"{key12}*/*/{modname}.*")):
        if so.name.endswith(toolchain().ext_suffix):
            return _load(so, modname)
    raise ImportError(f"no cached cstruct module {modname} in {cstruct_dir()}")


# --- building ----------------------------------------------------------------------------------

def _cythonize(pyx: Path, c_file: Path, modname: str) -> None:
    try:
        from Cython.Compiler import Main
    except ImportError:
        raise CStructError("Cython is not installed: `pip install cython`") from None
    # the top package's parent: where `cimport cbridge_magics.cstruct.engine` finds the .pxd
    options = Main.CompilationOptions(Main.default_options, language_level=3,
                                      output_file=str(c_file),
                                      include_path=[str(PACKAGE_DIR.parent.parent)])
    out = io.StringIO()
    # Cython reports errors on stderr/stdout; keep them for the exception.
    with contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
        try:
            result = Main.compile_single(str(pyx), options, full_module_name=modname)
            failed = result.num_errors > 0
        except Exception as e:  # Cython raises on some errors instead of counting them
            out.write(f"{type(e).__name__}: {e}\n")
            failed = True
    if failed or not c_file.is_file():
        raise CStructError(
            "Cython rejected the generated module (a cbridge bug: please report it with the "
            f"declarations):\n{out.getvalue().strip()}")


def _headline(output: str, filename: str) -> str:
    """The compiler's first error about the source itself, to lead the exception message."""
    for line in output.splitlines():
        if "error" in line and line.startswith(filename + ":"):
            return line
    for line in output.splitlines():
        if "error" in line:
            return line
    return ""


def build(req: Request, key: str, tc: Toolchain) -> Manifest:
    """Preprocess, parse, generate, cythonize and compile ``req`` into the cache entry ``key``."""
    from .codegen import generate
    from .parse import parse_file

    check_tools(tc)
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    root = cstruct_dir()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        build_id = secrets.token_hex(3)
        modname = f"{req.name or 'cstruct'}_{key[:12]}_{build_id}"
        header = tmp / SOURCE_HEADER
        escaped = req.filename.replace("\\", "\\\\").replace('"', '\\"')
        header.write_text(f'#line {req.first_line} "{escaped}"\n{req.source}\n')
        flags = cc_flags(req)
        model = parse_file(header, req.filename, flags, tc.cc)
        stages["parse"] = time.perf_counter() - t0
        pyx = tmp / f"{modname}.pyx"
        pyx.write_text(generate(model, f'#include "{SOURCE_HEADER}"', req.filename))
        c_file = tmp / f"{modname}.c"
        t = time.perf_counter()
        _cythonize(pyx, c_file, modname)
        stages["cython"] = time.perf_counter() - t
        so = tmp / f"{modname}{tc.ext_suffix}"
        # the .c includes SOURCE_HEADER from its own folder (tmp): no search path needed
        argv = [*tc.cc, *COMPILE_FLAGS, *flags, f"-I{PACKAGE_DIR}",
                f"-I{tc.py_include}", str(c_file), "-o", str(so)]
        t = time.perf_counter()
        proc = run_cc(argv, "compile")
        stages["cc"] = time.perf_counter() - t
        output = proc.stderr.strip()
        if proc.returncode != 0 or not so.is_file():
            head = _headline(output, req.filename)
            raise CStructError(f"the C compiler rejected the declarations: {head}\n\n"
                               f"$ {shlex.join(argv)}\n{output}")
        manifest = Manifest(module=modname, build=build_id, so=f"{build_id}/{so.name}",
                            deps={d: _sha(d) or "" for d in model.deps}, output=output,
                            seconds=time.perf_counter() - t0, stages=stages)
        entry = root / key
        entry.mkdir(exist_ok=True)
        os.rename(tmp, entry / build_id)  # atomic: the build appears whole or not at all
        tmp = None
        fd, mtmp = tempfile.mkstemp(prefix=".manifest-", dir=entry)
        with os.fdopen(fd, "w") as f:
            json.dump(manifest.__dict__, f, indent=1)
        os.replace(mtmp, entry / "manifest.json")
        return manifest
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def obtain(req: Request, force: bool = False) -> tuple[ModuleType, Manifest, bool]:
    """The module for ``req``: loaded if this process has it, else from the cache, else built.
    Returns (module, manifest, whether it came from the cache)."""
    tc = toolchain()
    key = cache_key(req, tc)
    entry = cstruct_dir() / key
    with _lock:
        manifest = None if force else _read_manifest(entry)
        cached = manifest is not None
        if manifest is None:
            manifest = build(req, key, tc)
        module = _load(entry / manifest.so, manifest.module)
    return module, manifest, cached


# --- the engine ----------------------------------------------------------------------------------

def ensure_engine(tc: Toolchain | None = None) -> ModuleType:
    """The compiled engine every struct module imports: the package's own build, or else one built
    from the package's engine.pyx into the cache (once per toolchain and engine source)."""
    mod = sys.modules.get(ENGINE)
    if mod is not None:
        return mod
    try:
        return importlib.import_module(ENGINE)
    except ImportError:
        pass
    tc = tc or toolchain()
    key = hashlib.sha256(json.dumps([_generator_digest(), tc.identity, tc.ext_suffix, sys.version,
                                     COMPILE_FLAGS]).encode()).hexdigest()[:24]
    entry = cache_root() / "engine" / key
    so = entry / f"engine{tc.ext_suffix}"
    with _lock:
        if not so.is_file():
            check_tools(tc)
            log.info("cstruct: building the engine into %s (once)", entry)
            entry.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entry.parent))
            try:
                c_file = tmp / "engine.c"
                _cythonize(PACKAGE_DIR / "engine.pyx", c_file, ENGINE)
                out = tmp / so.name
                proc = run_cc_checked([*tc.cc, *COMPILE_FLAGS, f"-I{PACKAGE_DIR}",
                                       f"-I{tc.py_include}", str(c_file), "-o", str(out)])
                if not so.is_file():
                    try:
                        os.rename(tmp, entry)  # atomic; a concurrent builder may have won
                        tmp = None
                    except OSError:
                        pass
                log.debug("cstruct engine: %s", proc)
            finally:
                if tmp is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
        return _load(so, ENGINE)
