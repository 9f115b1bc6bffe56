"""Compiled parts of cbridge: the frame codec, the struct engine, and the demo driver's classes.

``cbridge_magics._demo_messages`` is generated from c_driver/include/demo_messages.h by the same
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
    Extension("cbridge_magics._wire", ["cython_wrapper/_wire.pyx"],
              include_dirs=["c_driver/include"], extra_compile_args=["-O2"]),
    Extension("cbridge_magics.cstruct_engine", ["cbridge_magics/cstruct_engine.pyx"],
              include_dirs=["cbridge_magics"]),
    Extension("cbridge_magics._demo_messages", ["cython_wrapper/_demo_messages.pyx"],
              include_dirs=["c_driver/include", "cbridge_magics"]),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": 3, "boundscheck": False, "wraparound": False},
    )
)
