"""Jupyter kernelspecs that start kernels in this Python environment, for server-side notebooks.

    python -m cbridge_magics install-kernel --sys-prefix      # into this venv
    python -m cbridge_magics install-kernel --user --name lab-rig --load-ext \\
        --env CBRIDGE_CACHE_DIR=/data/cstruct --connect unix:///tmp/rig.sock
    python -m cbridge_magics list-kernels
    python -m cbridge_magics remove-kernel lab-rig

Built on ipykernel's own kernelspec writer (its argv, logos and metadata), with what cbridge adds:
the extension loaded at start, a driver connected at start (``bridge`` in the notebook), and
environment variables. Each cbridge kernelspec says so in ``metadata.cbridge``; list and remove
touch only those.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping


def _spec_manager() -> Any:
    from jupyter_client.kernelspec import KernelSpecManager

    return KernelSpecManager()


def install(name: str = "cbridge", display_name: str | None = None, *, user: bool = False,
            prefix: str | None = None, load_ext: bool = False,
            env: Mapping[str, str] | None = None, connect: str | None = None) -> str:
    """Install the kernelspec; returns the directory it went to. ``connect`` makes every kernel
    it starts run ``%cbridge connect URL`` at start (which loads the extension too)."""
    from ipykernel.kernelspec import write_kernel_spec

    extra = ["--ext=cbridge_magics"] if load_ext or connect else []
    if connect:
        extra.append(f"--IPKernelApp.exec_lines=%cbridge connect {connect}")
    # sys.executable is this environment's interpreter: the kernel sees exactly its packages.
    overrides: dict[str, Any] = {
        "display_name": display_name or f"Python (cbridge, {Path(sys.prefix).name})",
        "metadata": {"debugger": True, "cbridge": {"python": sys.executable, "connect": connect,
                                                   "load_ext": bool(extra)}},
    }
    if env:
        overrides["env"] = dict(env)
    with tempfile.TemporaryDirectory() as tmp:
        spec_dir = Path(tmp) / name  # write_kernel_spec makes the folder itself
        write_kernel_spec(spec_dir, overrides=overrides, extra_arguments=extra)
        return _spec_manager().install_kernel_spec(str(spec_dir), name, user=user, prefix=prefix)


def cbridge_kernels() -> dict[str, dict[str, Any]]:
    """Every installed kernelspec cbridge made: name -> {"resource_dir", "spec"}."""
    specs = _spec_manager().get_all_specs()
    return {name: s for name, s in specs.items()
            if "cbridge" in s.get("spec", {}).get("metadata", {})}


def remove(name: str) -> str:
    """Remove a kernelspec cbridge made; returns where it was. ValueError for any other."""
    mine = cbridge_kernels()
    if name not in mine:
        others = ", ".join(mine) or "none"
        raise ValueError(f"no cbridge kernelspec named {name!r} (cbridge's: {others}); other "
                         "kernelspecs are jupyter kernelspec's to remove")
    return _spec_manager().remove_kernel_spec(name)
