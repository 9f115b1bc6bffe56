"""Compiled parts of cbridge: the frame codec (and the demo driver's struct classes)."""

from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
C_INCLUDE = str(HERE / "c_driver" / "include")

extensions = [
    Extension(
        "cbridge_magics._wire",
        ["cython_wrapper/_wire.pyx"],
        include_dirs=[C_INCLUDE, numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O2"],
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": 3, "boundscheck": False, "wraparound": False},
    )
)
