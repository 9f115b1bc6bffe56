"""Compiled parts of cbridge: the frame codec, the struct engine, and the demo driver's classes.

- ``cbridge_magics.wire._wire``: cython_wrapper/_wire.pyx with libcbridge's own framing
  (c_driver/src/frame.c) compiled in, so C and Python judge frames with the same fuzzed parser.
- ``cbridge_magics.cstruct.engine``: what every ``%%cstruct`` class shares.
- ``cbridge_magics._demo_messages``: generated from c_driver/include/demo_messages.h by the same
  code generator ``%%cstruct`` uses, so the package has compiled Command, Status and Telemetry
  classes without any cell.
"""

import runpy
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
runpy.run_path(str(HERE / "cython_wrapper" / "gen_demo_messages.py"))["generate"]()

extensions = [
    Extension("cbridge_magics.wire._wire", ["cython_wrapper/_wire.pyx", "c_driver/src/frame.c"],
              include_dirs=["c_driver/include", "c_driver/src", "cython_wrapper"],
              depends=["c_driver/include/cbridge.h", "c_driver/src/cb_internal.h",
                       "cython_wrapper/cbridge.pxd"],
              extra_compile_args=["-O2"]),
    Extension("cbridge_magics.cstruct.engine", ["cbridge_magics/cstruct/engine.pyx"],
              include_dirs=["cbridge_magics/cstruct"],
              depends=["cbridge_magics/cstruct/cstruct_engine.h"]),
    Extension("cbridge_magics._demo_messages", ["cython_wrapper/_demo_messages.pyx"],
              include_dirs=["c_driver/include", "cbridge_magics/cstruct"]),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": 3, "boundscheck": False, "wraparound": False},
    )
)
