"""``make demo``: the two notebooks, headless, against the demo driver.

Starts ``cbridge-demo-driver`` on a private socket, executes ``notebooks/server.ipynb`` through
nbclient in the ``cbridge`` kernel (``python -m cbridge_magics install-kernel --sys-prefix``); once
the server notebook serves the relay, executes ``notebooks/client.ipynb`` against it; then writes
each executed notebook, its HTML rendering and its live plot's final frame into ``out/``.

    python -m cbridge_magics.demo --driver c_driver/build/cbridge-demo-driver --out out
"""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .testing import DriverProcess

ROOT = Path(__file__).resolve().parent.parent


def execute(notebook: Path, out: Path, kernel: str, timeout: int = 180) -> None:
    """Run one notebook with nbclient (in the environment of this process) and write its files:
    the executed notebook, an HTML rendering, and the last image it showed (the live plot)."""
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name=kernel,
                   resources={"metadata": {"path": str(notebook.parent)}}).execute()
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


def run(driver: Path, notebooks: Path, out: Path, kernel: str) -> list[Path]:
    work = Path(tempfile.mkdtemp(prefix="cbridge-demo-"))
    sock, relay_file, done = work / "driver.sock", work / "relay-url", work / "client-done"
    drv = DriverProcess(driver, sock)
    env = dict(os.environ, CBRIDGE_SOCKET=str(sock), CBRIDGE_RELAY_FILE=str(relay_file),
               CBRIDGE_DEMO_DONE=str(done))
    # The server notebook runs in a process of its own, so both notebooks run at once.
    server = subprocess.Popen([sys.executable, "-m", "cbridge_magics.demo", "--execute",
                               str(notebooks / "server.ipynb"), "--out", str(out),
                               "--kernel", kernel], env=env)
    try:
        deadline = time.monotonic() + 180
        while not relay_file.exists():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server notebook did not start serving")
            time.sleep(0.1)
        os.environ["CBRIDGE_RELAY_URL"] = relay_file.read_text()  # the client kernel inherits it
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--driver", type=Path, default=ROOT / "c_driver/build/cbridge-demo-driver")
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    parser.add_argument("--out", type=Path, default=Path("out"))
    parser.add_argument("--kernel", default="cbridge")
    parser.add_argument("--execute", type=Path, help=argparse.SUPPRESS)  # one notebook, for run()
    args = parser.parse_args(argv)
    if args.execute:
        execute(args.execute, args.out, args.kernel)
        return 0
    if not os.access(args.driver, os.X_OK):
        print(f"{args.driver} is missing: build it with `make driver`", file=sys.stderr)
        return 2
    try:
        files = run(args.driver, args.notebooks, args.out, args.kernel)
    except Exception as e:
        print(f"demo failed: {e}", file=sys.stderr)
        return 1
    for f in files:
        print(f"wrote {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
