"""The installed package against the checkout: `import cbridge_magics` and `%load_ext
cbridge_magics` (in a fresh IPython shell) in a venv with the wheel, and in the checkout's
editable .venv, each a fresh process, in turns; the floor is `import numpy` in the same process.

    .venv/bin/python bench/bench_install.py [--venv PATH] [--repeat N]

Without --venv it builds the wheel (python -m build) and installs it into a venv in a temporary
folder first, timing both. No timed assertions: it prints figures.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cbridge_magics.testing import ROOT

PROBE = """
import time
t0 = time.perf_counter(); import numpy; t1 = time.perf_counter()
import cbridge_magics; t2 = time.perf_counter()
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance(); t3 = time.perf_counter()
shell.run_line_magic("load_ext", "cbridge_magics"); t4 = time.perf_counter()
print((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t4 - t3) * 1e3)
"""


def timings(python: Path, cwd: Path, repeat: int) -> list[list[float]]:
    return [[float(x) for x in subprocess.run(
        [str(python), "-c", PROBE], capture_output=True, text=True, check=True,
        cwd=cwd).stdout.split()] for _ in range(repeat)]


def install(work: Path) -> tuple[Path, dict[str, float]]:
    figures = {}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(work / "dist"),
                    str(ROOT)], check=True, capture_output=True)
    figures["wheel build (s)"] = time.perf_counter() - t0
    wheel, = (work / "dist").glob("*.whl")
    figures["wheel size (kB)"] = wheel.stat().st_size / 1e3
    subprocess.run([sys.executable, "-m", "venv", str(work / "env")], check=True)
    t0 = time.perf_counter()
    subprocess.run([str(work / "env" / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    str(wheel)], check=True)
    figures["install into a fresh venv (s)"] = time.perf_counter() - t0
    return work / "env", figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", type=Path, help="a venv with cbridge installed from its wheel")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cbridge-install-") as tmp:
        work = Path(tmp)
        figures: dict[str, float] = {}
        venv = args.venv
        if venv is None:
            venv, figures = install(work)
        for name, value in figures.items():
            print(f"{name:34s} {value:8.1f}")
        installed, checkout = [], []
        for _ in range(args.repeat):  # in turns: the machine's drift hits both alike
            installed += timings(venv / "bin" / "python", work, 1)
            checkout += timings(ROOT / ".venv" / "bin" / "python", work, 1)
        print(f"\n{'median of ' + str(args.repeat) + ', ms':34s} {'wheel':>8s} {'checkout':>9s}"
              f" {'ratio':>6s}")
        for i, what in enumerate(["import numpy (floor)", "import cbridge_magics",
                                  "%load_ext cbridge_magics"]):
            a = statistics.median(r[i] for r in installed)
            b = statistics.median(r[i] for r in checkout)
            print(f"{what:34s} {a:8.1f} {b:9.1f} {a / b:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
