"""Shared pieces of the cstruct suites: a private build cache and a C-side harness.

The cache lives in the system temp dir (one per user), not in ~/.cache, so the suites never touch a
user's real cache but still reuse builds from one run to the next: a suite builds each of its modules
once (module-scoped fixtures), and not at all when the generator and sources are unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEMO_HEADER = Path(__file__).resolve().parent.parent / "c_driver" / "include" / "demo_messages.h"
PYTHON = ROOT / ".venv" / "bin" / "python"

# Declarations that exercise every kind of field and name, compiled once per run (the ``ns``
# fixture of conftest.py) by the cstruct suites.
API_SOURCE = r"""
#include <stdint.h>
#include <stdbool.h>
#define N_SAMPLES 8
#define TWICE (N_SAMPLES * 2)
#define MASK (1u << 31)
#define NEG (-5)
#define BIG 0xFFFFFFFFFFFFFFFFull
#define WITH_ENUM (MODE_RUN + 10)
#define PI 3.14159
#define NAME "frame"
#define PACKED __attribute__((packed))
#define LIMIT UINT16_MAX
enum mode { MODE_IDLE = 0, MODE_RUN = 1 };
typedef struct { uint16_t id; uint8_t flags; } Header;
typedef struct { Header h; enum mode mode; double t; float samples[N_SAMPLES]; } Frame;
typedef struct PACKED { uint8_t a; uint32_t b; } Packed;
typedef struct { char name[8]; char tags[2][4]; char c; bool ok; Header hs[2]; } Named;
typedef struct { uint32_t size; uint8_t from; double pack; uint16_t dtype; } Clashes;
typedef union { int32_t i; float f; uint8_t b[4]; } Word;
typedef struct { uint8_t a; double d; } Padded;
typedef struct { const uint32_t magic; int8_t v; } WithConst;
"""


def test_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"cbridge-test-cache-{os.getuid()}"


test_cache_dir.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def stable_header(name: str, text: str) -> Path:
    """``text`` in the suites' cache folder: compile_header's cache key holds the path, so a
    tmp_path would rebuild it on every run."""
    path = test_cache_dir().with_name(f"{test_cache_dir().name}-headers") / name
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{name}.{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)  # whole, for a suite running beside this one
    return path


def python_exe() -> str:
    import sys

    return str(PYTHON) if PYTHON.exists() else sys.executable


# --- values -> C statements ------------------------------------------------------------------

def c_literal(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return f"({value}LL)" if value < 0 else f"{value}ULL"
    if isinstance(value, float):
        return repr(value)
    raise TypeError(value)


def c_bytes(value: bytes) -> str:
    return '"' + "".join(f"\\x{b:02x}" for b in value) + '"'


def _leaves(path: str, value: Any) -> Iterator[tuple[str, Any]]:
    """(lvalue, scalar or bytes) for every leaf of ``value``: dicts are structs, lists arrays."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _leaves(f"{path}.{k}", v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(f"{path}[{i}]", v)
    else:
        yield path, value


def c_assignments(path: str, value: Any) -> Iterator[str]:
    """C statements that store ``value`` (dicts for structs, lists for arrays, bytes for char
    arrays) at the lvalue ``path``."""
    for p, v in _leaves(path, value):
        if isinstance(v, bytes):
            yield f"memcpy(&({p}), {c_bytes(v)}, {len(v)});"
        else:
            yield f"{p} = {c_literal(v)};"


def c_checks(path: str, value: Any) -> Iterator[str]:
    """C conditions that hold when the lvalue ``path`` holds ``value``."""
    for p, v in _leaves(path, value):
        if isinstance(v, bytes):
            yield (f"memcmp(&({p}), {c_bytes(v)}, {len(v)}) == 0 && "
                   f"zero_tail((const char *)&({p}) + {len(v)}, sizeof({p}) - {len(v)})")
        else:
            yield f"{p} == {c_literal(v)}"


def matches(actual: Any, expected: Any) -> bool:
    """Does a field read back from Python hold ``expected`` (same shapes as c_assignments)?"""
    if isinstance(expected, Mapping):
        return all(matches(actual[k] if isinstance(actual, np.void) else getattr(actual, k), v)
                   for k, v in expected.items())
    if isinstance(expected, list):
        return len(actual) == len(expected) and all(matches(a, e) for a, e in zip(actual, expected))
    if isinstance(expected, bytes):
        return bytes(actual) == expected
    if isinstance(expected, float):
        return float(actual) == expected
    return actual == expected


def build_c_program(source: Path, out: Path, cflags: list[str] | None = None) -> Path:
    cc = os.environ.get("CC", "gcc").split()
    proc = subprocess.run([*cc, "-std=gnu11", "-O0", "-Wall", *(cflags or []), str(source), "-o",
                           str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out


def run_json_lines(argv: list[str]) -> list[dict[str, Any]]:
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
