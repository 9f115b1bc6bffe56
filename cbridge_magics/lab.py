"""``make lab``: the demo driver and JupyterLab on the demo notebooks, with the cbridge extension
serving the driver through JupyterLab's own login; Ctrl-C stops both.

    python -m cbridge_magics.lab [--driver PATH] [--notebooks DIR] [--port 8888]

JupyterLab listens on loopback with a fresh token, and the URL it prints (token included) is the
way in. The driver listens on /tmp/cbridge-demo.sock (the socket the notebooks use by default) and
is reached from any notebook, on this host or another, as
``%cbridge connect ws://HOST:PORT/cbridge/drivers/demo/ws --token TOKEN``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from .config import demo_driver
from .demo import NOTEBOOKS
from .testing import DriverProcess

SOCKET = Path("/tmp/cbridge-demo.sock")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--driver", type=Path,
                        help="the driver program (default: the installed cbridge-demo-driver)")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS,
                        help="JupyterLab's root folder (default: the package's demo notebooks)")
    parser.add_argument("--socket", type=Path, default=SOCKET)
    parser.add_argument("--port", type=int, default=8888)
    args = parser.parse_args(argv)
    token = secrets.token_hex(24)  # hex: a pasted "--token T" never reads as an option
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    driver = DriverProcess(args.driver or demo_driver(), args.socket)
    with tempfile.TemporaryDirectory(prefix="cbridge-lab-") as config_dir:
        Path(config_dir, "jupyter_server_config.py").write_text(
            'c.ServerApp.jpserver_extensions = {"cbridge_magics": True}\n'
            f'c.CBridgeApp.drivers = {{"demo": "unix://{args.socket}"}}\n')
        lab = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={args.port}", f"--ServerApp.token={token}",
             f"--ServerApp.root_dir={args.notebooks}", "--allow-root"],
            # CBRIDGE_SOCKET: the notebooks' kernels find this driver on its Unix socket
            env={**os.environ, "JUPYTER_CONFIG_DIR": config_dir,
                 "CBRIDGE_SOCKET": str(args.socket)},
            start_new_session=True)  # Ctrl-C is ours to pass on, after the driver's safe stop
        print(f"\nJupyterLab on the demo notebooks, the demo driver served through it:\n"
              f"  http://127.0.0.1:{args.port}/lab?token={token}\n"
              f"  %cbridge connect ws://127.0.0.1:{args.port}/cbridge/drivers/demo/ws "
              f"--token {token}\nCtrl-C stops JupyterLab and the driver.\n", flush=True)
        try:
            while not stop.wait(0.5):
                if lab.poll() is not None:
                    print(f"JupyterLab exited with {lab.returncode}", file=sys.stderr)
                    break
        finally:
            if lab.poll() is None:
                lab.send_signal(signal.SIGTERM)
                try:
                    lab.wait(15)
                except subprocess.TimeoutExpired:
                    lab.kill()
            driver.stop()
    return 0 if stop.is_set() or lab.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
