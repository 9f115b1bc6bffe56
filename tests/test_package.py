"""cbridge as users get it: the wheel and the sdist built from this checkout, the wheel installed
into a fresh venv outside the source tree (the repository not on sys.path), and what a user does
with it tried there with real processes: the magics in a real kernel against the bundled demo
driver, Jupyter Server with the extension enabled by the install, a C program built against the
installed libcbridge three ways, the demo notebooks. The sdist is installed into a second venv
to show it builds from source with only its build requirements and a C compiler.

Built and installed once per run; figures (sizes, install time) go to out/package.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import cbridge_magics
from cbridge_magics.testing import ROOT
from package_scripts import CMAKE_PROJECT, DRIVE_MINIMAL, KERNEL_SESSION, SERVER_SESSION

pytestmark = pytest.mark.timeout(900)

VERSION = cbridge_magics.__version__
EXAMPLES = ROOT / "c_driver" / "examples"


@dataclass
class Dist:
    wheel: Path
    sdist: Path
    figures: dict = field(default_factory=dict)


@dataclass
class Venv:
    root: Path
    work: Path  # a folder outside the checkout, the cwd of what runs here
    figures: dict

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.root / "bin" / name

    @property
    def env(self) -> dict[str, str]:
        """The venv's PATH first, nothing of the checkout's on any path."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "VIRTUAL_ENV", "CBRIDGE_DRIVER", "PKG_CONFIG_PATH")}
        env["PATH"] = f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.root)
        return env

    def run(self, *argv: object, timeout: float = 300, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(a) for a in argv], cwd=self.work, env=env or self.env,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            pytest.fail(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n"
                        f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    def script(self, text: str, *args: object, timeout: float = 300) -> str:
        path = self.work / f"script_{abs(hash(text))}.py"
        path.write_text(textwrap.dedent(text))
        return self.run(self.python, path, *args, timeout=timeout).stdout


def _pip_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.fixture(scope="session")
def dist(tmp_path_factory) -> Dist:
    """The sdist, and the wheel built from it (python -m build: the wheel is made from the
    unpacked sdist in an isolated environment holding only the build requirements)."""
    out = tmp_path_factory.mktemp("dist")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                          capture_output=True, text=True, env=_pip_env(), timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    wheel, = out.glob("cbridge-*.whl")
    sdist, = out.glob("cbridge-*.tar.gz")
    return Dist(wheel, sdist, {"build_seconds": round(time.perf_counter() - t0, 1),
                               "wheel_bytes": wheel.stat().st_size,
                               "sdist_bytes": sdist.stat().st_size})


@pytest.fixture(scope="session")
def venv(dist: Dist, tmp_path_factory) -> Venv:
    """A fresh venv with the wheel and its server and demo extras; its work folder is outside
    the checkout."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(root / "env")], check=True)
    v = Venv(root / "env", root / "work", dist.figures)
    v.work.mkdir()
    t0 = time.perf_counter()
    v.run(v.python, "-m", "pip", "install", "--quiet", f"{dist.wheel}[server,demo]",
          env=_pip_env(), timeout=600)
    dist.figures["wheel_install_seconds"] = round(time.perf_counter() - t0, 1)
    yield v
    out = ROOT / "out"
    out.mkdir(exist_ok=True)
    (out / "package.json").write_text(json.dumps(dist.figures, indent=1) + "\n")


# --- the files ---------------------------------------------------------------------------------

def test_the_wheel_holds_what_users_need_and_nothing_else(dist: Dist) -> None:
    names = zipfile.ZipFile(dist.wheel).namelist()
    data = f"cbridge-{VERSION}.data"
    for needed in [
            "cbridge_magics/include/cbridge.h", "cbridge_magics/include/demo_messages.h",
            "cbridge_magics/lib/libcbridge.a", "cbridge_magics/lib/libcbridge.so.1",
            "cbridge_magics/lib/libcbridge.so", "cbridge_magics/lib/pkgconfig/cbridge.pc",
            "cbridge_magics/lib/cmake/cbridge/cbridgeConfig.cmake",
            "cbridge_magics/lib/cmake/cbridge/cbridgeTargets.cmake",
            f"{data}/scripts/cbridge-demo-driver",
            f"{data}/data/etc/jupyter/jupyter_server_config.d/cbridge_magics.json",
            "cbridge_magics/notebooks/server.ipynb", "cbridge_magics/notebooks/client.ipynb",
            "cbridge_magics/notebooks/panel.ipynb", "cbridge_magics/_version.py",
            "cbridge_magics/py.typed", "cbridge_magics/cstruct/engine.pxd",
            "cbridge_magics/cstruct/engine.pyx", f"cbridge-{VERSION}.dist-info/licenses/LICENSE",
            # the scope's page module, bundled when the wheel was built, and uPlot's licence
            "cbridge_magics/scope/static/scope.js", "cbridge_magics/scope/static/scope.css",
            "cbridge_magics/scope/static/uPlot.LICENSE"]:
        assert needed in names, needed
    assert not [n for n in names if "node_modules" in n or "/js/" in n  # no sources, no npm
                or n.endswith("CMakeLists.txt")]
    for module in ("cbridge_magics/wire/_wire", "cbridge_magics/cstruct/engine",
                   "cbridge_magics/_demo_messages", "cbridge_magics/scope/_decimate",
                   "cbridge_magics/recording/_walk"):
        assert any(n.startswith(module + ".") and n.endswith(".so") for n in names), module
    junk = [n for n in names if n.startswith(("tests/", "build/", "c_driver/", "bench/"))
            or "__pycache__" in n or n.endswith((".c", ".o"))
            or (n.endswith(".pyx") and not n.endswith("engine.pyx"))]
    assert junk == []
    # The linker's name for the library is a one-line script naming the soname's file: a wheel
    # holds no symbolic links.
    script = zipfile.ZipFile(dist.wheel).read("cbridge_magics/lib/libcbridge.so").decode()
    assert "INPUT(libcbridge.so.1)" in script
    enabled = json.loads(zipfile.ZipFile(dist.wheel).read(
        f"{data}/data/etc/jupyter/jupyter_server_config.d/cbridge_magics.json"))
    assert enabled == {"ServerApp": {"jpserver_extensions": {"cbridge_magics": True}}}


def test_the_sdist_holds_the_sources_and_no_build_output(dist: Dist) -> None:
    names = [n.split("/", 1)[1] for n in tarfile.open(dist.sdist).getnames() if "/" in n]
    for needed in ["pyproject.toml", "CMakeLists.txt", "c_driver/CMakeLists.txt",
                   "c_driver/src/server.c", "c_driver/include/cbridge.h",
                   "cython_wrapper/_wire.pyx", "cython_wrapper/gen_demo_messages.py",
                   "cbridge_magics/cstruct/engine.pyx", "LICENSE", "README.md",
                   "cbridge_magics/scope/js/package.json",
                   "cbridge_magics/scope/js/package-lock.json",
                   "cbridge_magics/scope/js/src/scope.js"]:
        assert needed in names, needed
    assert not [n for n in names if n.startswith((".venv/", "build/", "out/", "c_driver/build"))
                or n.endswith((".so", ".o")) or "node_modules" in n or "/static/" in n]


def test_metadata_passes_twine_check_and_carries_the_readme(dist: Dist) -> None:
    proc = subprocess.run([sys.executable, "-m", "twine", "check", "--strict",
                           str(dist.wheel), str(dist.sdist)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    meta = zipfile.ZipFile(dist.wheel).read(f"cbridge-{VERSION}.dist-info/METADATA").decode()
    assert "Description-Content-Type: text/markdown" in meta
    assert "# cbridge" in meta and "## Install" in meta
    assert "License-Expression: MIT" in meta


def test_the_shared_library_exports_the_public_api_only(venv: Venv) -> None:
    lib = Path(venv.run(venv.bin("cbridge-config"), "--libdir").stdout.strip())
    header = (ROOT / "c_driver" / "include" / "cbridge.h").read_text()
    public = set(re.findall(r"^CB_API [^(]*?\b(cb_\w+)\(", header, re.M))
    assert len(public) > 20
    nm = subprocess.run(["nm", "-D", "--defined-only", str(lib / "libcbridge.so.1")],
                        capture_output=True, text=True, check=True).stdout
    exported = {line.split()[-1] for line in nm.splitlines() if line.split()[1] in "TDBR"}
    assert exported == public
    readelf = subprocess.run(["readelf", "-d", str(lib / "libcbridge.so.1")],
                             capture_output=True, text=True, check=True).stdout
    assert "Library soname: [libcbridge.so.1]" in readelf


# --- the installed package at work ------------------------------------------------------------

def test_nothing_comes_from_the_checkout(venv: Venv) -> None:
    out = venv.script("""
        import cbridge_magics, cbridge_magics.wire._wire as w, sys
        from cbridge_magics import config
        print(cbridge_magics.__file__); print(w.__file__); print(config.demo_driver())
        print(config.prefix()); print(cbridge_magics.__version__)
    """).split()
    for path in out[:4]:
        assert path.startswith(str(venv.root)), out
        assert not path.startswith(str(ROOT)), out
    assert out[4] == VERSION


def test_cbridge_config_answers_as_python_m_cbridge_magics_config(venv: Venv) -> None:
    flags = ["--cflags", "--libs", "--prefix", "--includedir", "--libdir", "--pkgconfigdir",
             "--cmakedir", "--demo-driver", "--modversion"]
    a = venv.run(venv.bin("cbridge-config"), *flags).stdout
    b = venv.run(venv.python, "-m", "cbridge_magics", "config", *flags).stdout
    assert a == b
    words = a.split()
    prefix = Path(words[4])
    assert words[:4] == [f"-I{prefix}/include", f"-L{prefix}/lib", "-lcbridge",
                         f"-Wl,-rpath,{prefix}/lib"]
    assert words[5:9] == [f"{prefix}/include", f"{prefix}/lib", f"{prefix}/lib/pkgconfig",
                          f"{prefix}/lib/cmake/cbridge"]
    assert words[9] == str(venv.bin("cbridge-demo-driver")) and words[10] == VERSION
    static = venv.run(venv.bin("cbridge-config"), "--libs", "--static").stdout.split()
    assert static == [f"{prefix}/lib/libcbridge.a"]
    bad = venv.run(venv.bin("cbridge-config"), "--nonsense", check=False)
    assert bad.returncode == 2 and "unrecognized arguments: --nonsense" in bad.stderr


def test_the_magics_in_a_real_kernel_against_the_bundled_driver(venv: Venv) -> None:
    lines = dict(line.split(" ", 1) for line in
                 venv.script(KERNEL_SESSION, venv.work).splitlines() if " " in line)
    assert lines["CSTRUCT"].startswith("cstruct: Command, Status, Telemetry"), lines
    assert lines["CONNECT"].startswith(f"connected to cbridge-demo-driver {VERSION}"), lines
    assert "Status(code=0" in lines["SEND"], lines
    assert int(lines["PLOT"]) >= 2 and int(lines["RECORDS"]) > 0, lines
    assert lines["MODULE"].strip("'").startswith(str(venv.root)), lines
    assert lines["WIDGETS"] == "Panel Console" and int(lines["RECORDED"]) > 0, lines
    # the scope's bundle and its compiled decimation, from the installed package
    assert lines["SCOPE"].startswith(f"comm {venv.root}"), lines
    # xarray is not installed there: the error names the extra that brings it
    assert "needs xarray, which is in cbridge's data extra: pip install 'cbridge[data]'" in \
        lines["NOEXTRA"], lines


def test_jupyter_server_has_the_extension_enabled_by_the_install(venv: Venv) -> None:
    listed = venv.run(venv.bin("jupyter"), "server", "extension", "list")
    text = re.sub(r"\x1b\[[0-9;]*m", "", listed.stdout + listed.stderr)  # no colours
    assert re.search(r"cbridge_magics\s+enabled", text), text
    assert f"cbridge_magics {VERSION} OK" in text, text
    out = venv.script(SERVER_SESSION)
    assert "STATUS Status 0" in out, out
    assert "BARE {'drivers': []}" in out, out
    assert "'demo'" in out


def test_a_c_program_builds_against_the_installed_library_three_ways(venv: Venv) -> None:
    """c_driver/examples/minimal.c, copied out of the checkout: its tables from c-schema, then
    built through pkg-config, CMake's find_package and cbridge-config, shared and static; every
    binary serves Python in the venv, and the shared ones find libcbridge by their rpath."""
    src = venv.work / "minimal"
    src.mkdir()
    for name in ("minimal.c", "minimal_messages.h"):
        shutil.copy(EXAMPLES / name, src / name)
    venv.run(venv.python, "-m", "cbridge_magics", "c-schema", src / "minimal_messages.h",
             "--prefix", "minimal", "-o", src / "minimal_schema.c")
    cc = ["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{src}",
          src / "minimal.c", src / "minimal_schema.c"]
    config = venv.bin("cbridge-config")
    pc_env = {**venv.env, "PKG_CONFIG_PATH": venv.run(config, "--pkgconfigdir").stdout.strip()}

    def pkg_config(*args: str) -> list[str]:
        return venv.run("pkg-config", *args, "cbridge", env=pc_env).stdout.split()

    libdir = pkg_config("--variable=libdir")[0]
    builds = {
        "pc-shared": [*pkg_config("--cflags"), *pkg_config("--libs")],
        "pc-static": [*pkg_config("--cflags"), f"{libdir}/libcbridge.a"],
        "config-shared": venv.run(config, "--cflags", "--libs").stdout.split(),
        "config-static": venv.run(config, "--cflags", "--libs", "--static").stdout.split(),
    }
    binaries = []
    for name, flags in builds.items():
        # the objects first, the libraries after them, as a linker wants
        venv.run(*cc, *[f for f in flags if f.startswith("-I")], "-o", src / name,
                 *[f for f in flags if not f.startswith("-I")])
        binaries.append(src / name)
    (src / "CMakeLists.txt").write_text(CMAKE_PROJECT)
    cmake_dir = venv.run(config, "--cmakedir").stdout.strip()
    venv.run("cmake", "-S", src, "-B", src / "build", f"-Dcbridge_DIR={cmake_dir}")
    venv.run("cmake", "--build", src / "build")
    binaries += [src / "build" / "minimal-cmake", src / "build" / "minimal-cmake-static"]

    env = {k: v for k, v in venv.env.items() if k != "LD_LIBRARY_PATH"}
    for binary in binaries:
        ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True,
                             env=env).stdout
        found = [line.split() for line in ldd.splitlines() if "libcbridge" in line]
        if "static" in binary.name:
            assert found == [], ldd
        else:
            assert len(found) == 1 and found[0][0] == "libcbridge.so.1", ldd
            assert Path(found[0][2]).resolve() == (Path(libdir) / "libcbridge.so.1").resolve()
    served = venv.script(DRIVE_MINIMAL, src / "minimal_messages.h", *binaries)
    lines = served.splitlines()
    assert len(lines) == 6 and all(line.endswith("minimal-thermometer Ack 30.0")
                                   for line in lines), lines


def test_python_m_cbridge_magics_demo_runs_the_notebooks(venv: Venv) -> None:
    out = venv.work / "demo-out"
    venv.run(venv.python, "-m", "cbridge_magics", "demo", "--out", out, timeout=600)
    for stem in ("server", "client"):
        nb = json.loads((out / f"{stem}.ipynb").read_text())
        errors = [o for c in nb["cells"] for o in c.get("outputs", [])
                  if o["output_type"] == "error"]
        assert errors == [], errors
        assert (out / f"{stem}_plot.png").read_bytes().startswith(b"\x89PNG")
        assert (out / f"{stem}.html").stat().st_size > 10_000


def test_install_kernel_works_from_the_wheel(venv: Venv) -> None:
    venv.run(venv.python, "-m", "cbridge_magics", "install-kernel", "--sys-prefix",
             "--name", "cbridge-wheel")
    spec = json.loads((venv.root / "share" / "jupyter" / "kernels" / "cbridge-wheel" /
                       "kernel.json").read_text())
    assert spec["argv"][0] == str(venv.python)
    listed = venv.run(venv.python, "-m", "cbridge_magics", "list-kernels").stdout
    assert "cbridge-wheel" in listed


# --- from source ---------------------------------------------------------------------------

def test_the_sdist_installs_with_only_its_build_requirements(dist: Dist, tmp_path) -> None:
    """pip builds the sdist in an isolated environment (scikit-build-core, Cython, cython-cmake,
    pycparser; CMake too when the machine has none) with the C compiler, and installs it."""
    root = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    t0 = time.perf_counter()
    proc = subprocess.run([str(root / "bin" / "python"), "-m", "pip", "install", "--quiet",
                           "--no-deps", str(dist.sdist)], capture_output=True, text=True,
                          env=_pip_env(), cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    dist.figures["sdist_install_seconds"] = round(time.perf_counter() - t0, 1)
    site = next((root / "lib").glob("python3*/site-packages"))
    assert os.access(root / "bin" / "cbridge-demo-driver", os.X_OK)
    for path in ("cbridge_magics/include/cbridge.h", "cbridge_magics/lib/libcbridge.so.1",
                 "cbridge_magics/lib/libcbridge.a", "cbridge_magics/lib/pkgconfig/cbridge.pc"):
        assert (site / path).is_file(), path
    assert list(site.glob("cbridge_magics/wire/_wire.*.so"))
