"""``%%cstruct`` / ``%cstruct``: C declarations -> compiled classes and names in the notebook.

    %%cstruct -n msgs               # options: -n NAME, -c CFLAGS, -I DIR, -f (force), -v (verbose)
    #include <stdint.h>
    typedef struct { uint32_t op; double gain; } Command;

    %cstruct --header demo_messages.h      # also found in -I dirs and cbridge's include dir
    %cstruct --clear-cache

Flags that start with a dash go in with an equals sign or with a space inside the quotes:
``%%cstruct --cflags=-DN=8`` or ``%%cstruct -c "-DN=8 -fshort-enums"``.
"""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .. import cstruct
from ..errors import CStructError
from . import failures
from .line import strip_comment


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

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        # Registering the magic is the moment to pay for what a cell needs (numpy, the compiled
        # engine), so that after a kernel restart a cached cell loads in milliseconds.
        cstruct.preload()

    @magic_arguments()
    @argument("-n", "--name", help="name of the compiled module; also bound in the notebook to "
                                   "the mapping of everything the cell defines")
    @argument("-c", "--cflags", default="", help="extra C compiler flags, e.g. --cflags=-DN=8")
    @argument("-I", dest="include", action="append", default=[], metavar="DIR",
              help="add DIR to the include path (repeatable)")
    @argument("-f", "--force", action="store_true", help="rebuild even if cached")
    @argument("-v", "--verbose", action="store_true",
              help="show the compiler's output and the build steps also on success")
    @argument("--header", metavar="PATH", help="(line magic) compile this header file; a "
              "relative path not found here is looked for in the -I dirs, then in cbridge's "
              "include dir (demo_messages.h)")
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
        try:  # quotes kept (see _unquote): -c "-DN=8" must not read as an option
            args = parse_argstring(self.cstruct, strip_comment(line))
        except ValueError as e:  # an unclosed quote
            raise UsageError(f"cannot read this line ({e}): {line!r}") from None
        if args.clear_cache:
            if cell is not None or args.header:
                raise UsageError("--clear-cache takes no cell and no header")
            n = cstruct.clear_cache()
            print(f"cstruct: cache {cstruct.cache_dir()} emptied ({n} builds)")
            return
        options = dict(cflags=_unquote(args.cflags), include_dirs=[_unquote(d) for d in args.include],
                       name=args.name, force=args.force, verbose=args.verbose)
        try:
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
        except CStructError as e:  # the compiler's words on the cell's lines, no traceback
            failures.briefly(e, self.shell, "cstruct")
            raise
        self.shell.push(dict(defs))
        if args.name:
            self.shell.push({args.name: defs})
        how = "from the cache" if defs.cached else f"built in {defs.build_seconds:.1f} s"
        print(_summary(defs, how))
        if args.verbose:
            print(f"module {defs.module.__name__}: {defs.module.__file__}")
            if defs.compiler_output:
                print(defs.compiler_output)
