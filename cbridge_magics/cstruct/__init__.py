"""C struct declarations -> compiled Python classes with the C compiler's exact layout.

The engine of ``%%cstruct``, for plain Python too::

    from cbridge_magics import cstruct

    ns = cstruct.compile('''
        #include <stdint.h>
        #define N 4
        typedef struct { uint32_t op; double gain; float taps[N]; } Command;
    ''')
    Command = ns["Command"]            # also ns.Command; ns["N"] == 4
    c = Command(op=1, gain=2.5, taps=[1, 2, 3, 4])
    data = bytes(c)                    # == c.pack(); padding bytes are zero
    Command.unpack(data) == c          # exact length check; unpack_from(buf, offset) for longer ones
    Command.size, Command.dtype        # numpy structured dtype: np.frombuffer(buf, Command.dtype)
    Command.__layout__                 # {"name", "size", "align", "fields": [{name, offset, size, ctype, count}]}
    Reg.bits(records, "mode")          # one bit-field of a batch (a bit-field's entry has its unit's
                                       # offset and size, and bit_offset, bit_width, signed)

Classes (one per struct or union; see codegen for how they are built):

- ``Cls(**fields)``: keyword-only construction, fields not given (or given as None) are zero.
- attributes for every field: integers (range-checked, never floats), floats, bools, ``char``
  arrays as bytes (up to the first NUL; set with bytes or str), plain ``char`` as one byte, other
  arrays as numpy views of the object's bytes, nested structs and unions as struct objects sharing
  the parent's bytes (set with an object or a dict).
- ``bytes(obj)``/``obj.pack()``, ``Cls.unpack(buf)``, ``Cls.unpack_from(buf, offset)``,
  ``memoryview(obj)`` (zero-copy, writable), ``==`` (same class and bytes), a readable repr,
  ``obj.to_dict()``, pickling (also in another process: the module is found in the cache).
- final (no subclasses) and unhashable (mutable); a field named like a class attribute (``size``)
  is that attribute on the class and the field on an instance.

Modules: preprocess (gcc -E), parse (pycparser -> model), macros (which #defines are integers),
codegen (model -> Cython), build (cache, Cython, gcc, load), toolchain (the compiler and what to
install), engine (compiled: what all classes share), runtime (import-time setup and slow paths),
bitfields (where a bit-field's bits are, measured; its values out of a batch), from_schema
(classes built from a driver's HELLO, for types nobody compiled).

``registry`` maps each struct name to the class most recently compiled under it (every
``compile`` updates it). It is the seam for the Bridge, which matches a driver's HELLO types to
classes by name: ``registry["Command"].__layout__`` is compared with the schema entry.

Builds are cached on disk (see build); a cached source loads without Cython or the compiler.
"""

from __future__ import annotations

import importlib
import logging
import os
import shlex
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..errors import CBridgeError, CStructError
from ..wire.layout import ALL_KEYS, compare

if TYPE_CHECKING:
    from .build import Manifest

__all__ = ["compile", "compile_header", "clear_cache", "registry", "Definitions",
           "LayoutChangedWarning", "CStructError", "cache_dir"]

log = logging.getLogger("cbridge_magics.cstruct")

registry: dict[str, type] = {}
"""Struct name -> the latest compiled class of that name (updated by every compile)."""


class LayoutChangedWarning(UserWarning):
    """A struct was compiled again with a different layout; objects made before keep the old one."""


class Definitions(Mapping[str, Any]):
    """Every name one source defines: struct classes (under each C name), then enum constants and
    integer #defines, in source order. Attribute access works too (``ns.Frame``).

        ns = cstruct.compile("enum { A = 3 }; typedef struct { int x; } P;")
        dict(ns)    # {'P': <class 'P'>, 'A': 3}
    """

    def __init__(self, names: Mapping[str, Any], module: ModuleType,
                 manifest: Manifest, cached: bool) -> None:
        self._names = dict(names)
        self.module = module
        self.cached = cached
        self.compiler_output = manifest.output
        self.build_seconds = manifest.seconds

    @property
    def classes(self) -> dict[str, type]:
        return {k: v for k, v in self._names.items() if isinstance(v, type)}

    @property
    def constants(self) -> dict[str, int]:
        return {k: v for k, v in self._names.items() if not isinstance(v, type)}

    def __getitem__(self, name: str) -> Any:
        return self._names[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_names"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        state = "cached" if self.cached else f"built in {self.build_seconds:.2f} s"
        return f"<cstruct definitions {', '.join(self._names) or '(none)'} ({state})>"


def _split_flags(cflags: str | Sequence[str]) -> tuple[str, ...]:
    return tuple(shlex.split(cflags)) if isinstance(cflags, str) else tuple(cflags)


def compile(  # noqa: A001 - the name the design gives it (cstruct.compile)
    source: str,
    *,
    cflags: str | Sequence[str] = (),
    include_dirs: Sequence[str | os.PathLike[str]] = (),
    name: str | None = None,
    force: bool = False,
    verbose: bool = False,
    filename: str = "<cstruct>",
    first_line: int = 1,
) -> Definitions:
    """Compile C declarations into classes; returns every name the source defines.

    cflags: extra compiler flags (a string is split like a shell would), also used to preprocess.
    include_dirs: ``-I`` directories. ``#include "mine.h"`` also finds headers in the current
    directory (with gcc's ``-iquote``: only for quoted includes, so a stddef.h there never hides
    the system's ``<stddef.h>``; it comes before include_dirs for quoted includes).
    name: a prefix for the compiled module's name (``%%cstruct -n``).
    force: rebuild even if the cache has this source. verbose: log the compiler's output.
    filename, first_line: how compiler messages name the source and number its first line.

    Raises CStructError with the compiler's own message (naming ``filename`` and its lines).

        ns = compile("typedef struct { char tag[4]; double v; } Rec;")
        ns.Rec(tag=b"abc", v=1.0).pack()
    """
    return _compile(source, (), cflags, include_dirs, name, force, verbose, filename, first_line)


def _compile(source: str, quote_dirs: Sequence[str | os.PathLike[str]],
             cflags: str | Sequence[str], include_dirs: Sequence[str | os.PathLike[str]],
             name: str | None, force: bool, verbose: bool, filename: str,
             first_line: int) -> Definitions:
    """``compile`` with directories searched for quoted includes only (before the current one)."""
    if name is not None and not name.isidentifier():
        raise CStructError(f"module name {name!r} is not a Python identifier")
    quote = [str(Path(d).resolve()) for d in quote_dirs] + [os.getcwd()]
    dirs = [str(Path(d).resolve()) for d in include_dirs]
    from . import build as _build  # on first use: the Bridge imports this package for from_schema

    req = _build.Request(source, filename, int(first_line), _split_flags(cflags),
                         tuple(dict.fromkeys(dirs)), name, tuple(dict.fromkeys(quote)))
    module, manifest, cached = _build.obtain(req, force=force)
    defs = Definitions(module.__cstruct__, module, manifest, cached)
    if verbose:
        log.info("cstruct: %s %s (%s)%s", filename, "loaded from the cache" if cached else
                 f"built in {manifest.seconds:.2f} s", module.__name__,
                 f"\n{manifest.output}" if manifest.output else "")
    _register(defs)
    return defs


def compile_header(
    path: str | os.PathLike[str],
    *,
    include_dirs: Sequence[str | os.PathLike[str]] = (),
    cflags: str | Sequence[str] = (),
    name: str | None = None,
    force: bool = False,
    verbose: bool = False,
) -> Definitions:
    """``compile`` of a header file; its own directory is searched first for its quoted includes
    (``#include "other.h"``, as a compiler does for the file itself), never for ``<...>`` ones:
    /usr/include/linux has a stddef.h of its own that must not replace the system's.

    A relative path that is not found from the current directory is looked for as a compiler
    looks for an include: in ``include_dirs``, then in cbridge's own include directory (where
    the demo driver's ``demo_messages.h`` is installed):

        ns = compile_header("demo_messages.h")
        ns.Telemetry.size
    """
    p = find_header(path, include_dirs)
    try:
        text = p.read_text()
    except OSError as e:
        raise CStructError(f"cannot read {p}: {e.strerror}") from None
    return _compile(text, [p.resolve().parent], cflags, include_dirs, name, force, verbose,
                    str(p), 1)


def find_header(path: str | os.PathLike[str],
                include_dirs: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """``path`` itself if it exists (or is absolute); else the first of ``include_dirs`` and
    cbridge's include directory that has it. CStructError, naming every place looked in, if
    none does."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    dirs = [Path(d) for d in include_dirs]
    try:
        from ..config import include_dir

        dirs.append(include_dir())
    except CBridgeError:
        pass  # a source tree on sys.path: no installed headers to look in
    for d in dirs:
        if (d / p).is_file():
            return d / p
    places = ", ".join([str(Path.cwd()), *map(str, dirs)])
    raise CStructError(f"no header {str(path)!r} in {places}: give its path from the notebook's "
                       "folder, or the folder it is in with -I DIR")


def preload() -> None:
    """Import what compiling a cell or loading a cached one needs (numpy, the compiled engine, the
    build cache's code), building nothing. The %%cstruct magic calls it when it is registered, so
    that after a kernel restart a cached cell costs only its own load."""
    from . import build

    try:
        importlib.import_module(build.ENGINE)
    except ImportError:
        pass  # no package build (a bare source tree): the first cell builds the engine


def clear_cache() -> int:
    """Empty the build cache (modules loaded in this process keep working); returns the entry count."""
    from .build import clear_cache as clear

    return clear()


def cache_dir() -> Path:
    """Where builds are cached: $CBRIDGE_CACHE_DIR, else $XDG_CACHE_HOME/cbridge, else ~/.cache/cbridge."""
    from .build import cstruct_dir

    return cstruct_dir()


def _register(defs: Definitions) -> None:
    for cname, cls in defs.classes.items():
        old = registry.get(cname)
        if old is not None and old is not cls:
            changes = [d.as_change() for d in
                       compare(old.__layout__, cls.__layout__, keys=ALL_KEYS, align=True)]
            if changes:
                warnings.warn(LayoutChangedWarning(
                    f"struct {cname} has a new layout ({'; '.join(changes)}); objects made "
                    "before keep the old one"), stacklevel=4)  # the caller of compile()
        registry[cname] = cls
