"""Kernelspecs for server-side notebooks (python -m cbridge_magics install-kernel, list-kernels,
remove-kernel): written with ipykernel's own writer, started as real kernels."""

from __future__ import annotations

import json
import subprocess
import sys

from cbridge_magics.testing import Kernel


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cbridge_magics", *args], capture_output=True,
                          text=True, env=env)


def test_a_kernel_that_connects_at_start_with_its_environment(driver, tmp_path, monkeypatch,
                                                              cstruct_cache):
    share = tmp_path / "share" / "jupyter"
    monkeypatch.setenv("JUPYTER_PATH", str(share))  # where this test's kernelspecs are found
    out = cli("install-kernel", "--prefix", str(tmp_path), "--name", "rig", "--display-name",
              "Rig", "--env", "RIG_MODE=bench", "--env", "EMPTY=", "--connect", driver.url)
    assert out.returncode == 0, out.stderr
    spec = json.loads((share / "kernels" / "rig" / "kernel.json").read_text())
    assert spec["display_name"] == "Rig" and spec["env"] == {"RIG_MODE": "bench", "EMPTY": ""}
    assert spec["argv"][0] == sys.executable and "--ext=cbridge_magics" in spec["argv"]
    assert (share / "kernels" / "rig" / "logo-64x64.png").is_file()  # ipykernel's writer

    k = Kernel("rig")
    try:
        assert k.value("__import__('os').environ['RIG_MODE']") == "bench"
        assert k.value("bridge.state.value") == "connected"
        assert k.value("bridge.schema.driver") == "cbridge-demo-driver"
        assert "connected to unix://" in k.run("%cbridge status")["stdout"]
    finally:
        k.shutdown()

    listed = cli("list-kernels").stdout
    assert "rig\t" in listed and f"connects to {driver.url}" in listed and "RIG_MODE=bench" in listed
    refused = cli("remove-kernel", "python3")
    assert refused.returncode == 1 and "no cbridge kernelspec named 'python3'" in refused.stderr
    assert cli("remove-kernel", "rig").returncode == 0
    assert not (share / "kernels" / "rig").exists()
    assert "rig\t" not in cli("list-kernels").stdout


def test_bad_env_is_a_usage_error(tmp_path):
    out = cli("install-kernel", "--prefix", str(tmp_path), "--env", "NOEQUALS")
    assert out.returncode == 2 and "--env wants KEY=VALUE" in out.stderr
