"""A Jupyter kernelspec that starts kernels in this Python environment, for server-side notebooks.

    python -m cbridge_magics install-kernel --sys-prefix      # into this venv
    python -m cbridge_magics install-kernel --user --name lab-rig --load-ext
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path


def kernel_json(display_name: str, load_ext: bool) -> dict:
    # sys.executable is this environment's interpreter: the kernel sees exactly its packages.
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    if load_ext:
        argv.append("--ext=cbridge_magics")
    return {
        "argv": argv,
        "display_name": display_name,
        "language": "python",
        "metadata": {"debugger": True, "cbridge": {"python": sys.executable}},
    }


def install(name: str = "cbridge", display_name: str | None = None, *, user: bool = False,
            prefix: str | None = None, load_ext: bool = False) -> str:
    """Install the kernelspec; returns the directory it went to."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = kernel_json(display_name or f"Python (cbridge, {Path(sys.prefix).name})", load_ext)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "kernel.json").write_text(json.dumps(spec, indent=1))
        return KernelSpecManager().install_kernel_spec(tmp, name, user=user, prefix=prefix)
