"""``python -m cbridge_magics demo`` (and ``make demo``): the demo notebooks, headless, against
the demo driver installed with the package.

Starts ``cbridge-demo-driver`` on a private socket, executes the package's
``notebooks/server.ipynb`` through nbclient in a kernel of this Python (or ``--kernel NAME``);
once the server notebook serves the relay, executes ``notebooks/client.ipynb`` against it; then
writes each executed notebook, its HTML rendering and its live plot's final frame into ``--out``
(default ``out``). Needs the ``demo`` extra: ``pip install 'cbridge[demo]'``.

    python -m cbridge_magics demo --out /tmp/cbridge-demo
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .testing import DriverProcess

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"


def _kernel_manager(kernel: str | None, specs: Path):
    """A kernel of ``kernel``'s spec, or (None) of this very Python, whatever kernelspecs the
    machine has: a spec written into ``specs`` for the run names sys.executable."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    if kernel is not None:
        return KernelManager(kernel_name=kernel)
    (specs / "this-python").mkdir()
    (specs / "this-python" / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "cbridge demo", "language": "python"}))
    return KernelManager(kernel_name="this-python",
                         kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(specs)]))


def execute(notebook: Path, out: Path, kernel: str | None, timeout: int = 180) -> None:
    """Run one notebook with nbclient and write its files: the executed notebook, an HTML
    rendering, and the last image it showed (the live plot)."""
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    nb = nbformat.read(notebook, as_version=4)
    with tempfile.TemporaryDirectory(prefix="cbridge-demo-kernel-") as specs:
        client = NotebookClient(nb, timeout=timeout, km=_kernel_manager(kernel, Path(specs)),
                                resources={"metadata": {"path": str(notebook.parent)}})
        client.owns_km = True  # the kernel made here is shut down, its channels closed, by nbclient
        client.execute()
    out.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out / notebook.name)
    body, _ = HTMLExporter().from_notebook_node(nb)
    (out / f"{notebook.stem}.html").write_text(body, encoding="utf-8")
    png = None
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if "image/png" in output.get("data", {}):
                png = base64.b64decode(output["data"]["image/png"])
    if png is None:
        raise RuntimeError(f"{notebook.name} showed no plot")
    (out / f"{notebook.stem}_plot.png").write_bytes(png)


def run(driver: Path, notebooks: Path, out: Path, kernel: str | None) -> list[Path]:
    work = Path(tempfile.mkdtemp(prefix="cbridge-demo-"))
    sock, relay_file, done = work / "driver.sock", work / "relay-url", work / "client-done"
    drv = DriverProcess(driver, sock)
    env = dict(os.environ, CBRIDGE_SOCKET=str(sock), CBRIDGE_RELAY_FILE=str(relay_file),
               CBRIDGE_DEMO_DONE=str(done))
    # The server notebook runs in a process of its own, so both notebooks run at once.
    server = subprocess.Popen([sys.executable, "-m", "cbridge_magics.demo", "--execute",
                               str(notebooks / "server.ipynb"), "--out", str(out),
                               *(["--kernel", kernel] if kernel else [])], env=env)
    try:
        deadline = time.monotonic() + 180
        # The file exists a moment before its text is in it: wait for the whole URL.
        while "?token=" not in (url := relay_file.read_text() if relay_file.exists() else ""):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server notebook did not start serving")
            time.sleep(0.1)
        os.environ["CBRIDGE_RELAY_URL"] = url  # the client kernel inherits it
        try:
            execute(notebooks / "client.ipynb", out, kernel)
        finally:
            done.touch()
        if server.wait(180) != 0:
            raise RuntimeError("the server notebook failed")
    finally:
        if server.poll() is None:
            server.kill()
        drv.stop()
    return [out / f"{stem}{ext}" for stem in ("server", "client")
            for ext in (".ipynb", ".html", "_plot.png")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("out"),
                        help="where the executed notebooks and plots go (default: out)")
    parser.add_argument("--driver", type=Path,
                        help="the driver program (default: the installed cbridge-demo-driver)")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS,
                        help="a folder with server.ipynb and client.ipynb (default: the package's)")
    parser.add_argument("--kernel", help="a kernelspec's name (default: this Python)")


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--execute", type=Path, help=argparse.SUPPRESS)  # one notebook, for run()
    args = parser.parse_args(argv)
    if args.execute:
        execute(args.execute, args.out, args.kernel)
        return 0
    return run_args(args)


def run_args(args: argparse.Namespace) -> int:
    from .config import demo_driver
    from .errors import CBridgeError

    for module in ("nbclient", "nbconvert"):
        if importlib.util.find_spec(module) is None:
            print(f"demo: error: {module} is missing: pip install 'cbridge[demo]'",
                  file=sys.stderr)
            return 2
    try:
        driver = args.driver or demo_driver()
    except CBridgeError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2
    if not os.access(driver, os.X_OK):
        print(f"demo: error: {driver} is not an executable program", file=sys.stderr)
        return 2
    try:
        files = run(driver, args.notebooks, args.out, args.kernel)
    except Exception as e:
        print(f"demo failed: {e}", file=sys.stderr)
        return 1
    for f in files:
        print(f"wrote {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
