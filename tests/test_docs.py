"""The documentation site, built as ``make docs`` builds it (Sphinx, warnings as errors, the
tutorials executed against the demo driver) into out/docs/html, then read back: every
``%cbridge`` subcommand, every name a public module exports, every setting, and every function
``cbridge.h`` declares and libcbridge exports must have its entry in the reference. A broken
reference, a warning, or a tutorial cell that raises fails the build, and so this test.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import time

import pytest

from cbridge_magics import config
from cbridge_magics.testing import ROOT

DOCS = ROOT / "docs"
HTML = ROOT / "out" / "docs" / "html"
sys.path.insert(0, str(DOCS / "_ext"))

from cbridge_reference import PUBLIC  # noqa: E402


@pytest.fixture(scope="module")
def site():
    """(the build's seconds, the inventory: {(domain:role, name)}) of a fresh build."""
    from sphinx.util.inventory import InventoryFile

    t0 = time.monotonic()
    # -E: read every page again (a cached page would hide a broken one); -W: warnings fail
    build = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-E", "-W",
                            "--keep-going", "-q", str(DOCS), str(HTML)],
                           capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - t0
    assert build.returncode == 0, f"the docs build failed:\n{build.stderr[-6000:]}"
    with open(HTML / "objects.inv", "rb") as f:
        inventory = InventoryFile.load(f, "", lambda base, uri: uri)
    print(f"docs built in {seconds:.1f} s (make test's budget for it: 2 minutes)")
    data = inventory.data if hasattr(inventory, "data") else inventory  # Sphinx 8.2+ / before
    return seconds, {(role, name) for role, objects in data.items() for name in objects}


def names(entries, role: str) -> set[str]:
    return {name for r, name in entries if r == role}


def test_every_magic_subcommand_has_its_entry(site):
    from cbridge_magics.magics.commands import NAMES

    page = (HTML / "reference" / "generated" / "magics.html").read_text()
    missing = [n for n in NAMES if f'id="magic-cbridge-{n}"' not in page]
    assert not missing, f"subcommands without an entry in the magics reference: {missing}"
    for option in ("--window", "--time", "--streams", "--name", "--fps"):  # options are listed
        assert f"<code class=\"docutils literal notranslate\"><span class=\"pre\">{option}" in page


def test_every_public_python_name_is_documented(site):
    _, entries = site
    documented = {name for role, name in entries if role.startswith("py:")}
    missing = []
    for module, _title in PUBLIC:
        mod = importlib.import_module(module)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if name == "__version__" or type(obj).__name__ == "module":
                continue
            # a re-exported object is documented once, under the first module that exports it
            homes = {f"{m}.{name}" for m, _ in PUBLIC}
            if not documented & homes:
                missing.append(f"{module}.{name}")
    assert not missing, f"public names the Python reference does not document: {missing}"
    assert {m for m, _ in PUBLIC} <= names(entries, "py:module")
    assert "cbridge_magics.Bridge.request" in names(entries, "py:method")


def test_every_function_of_cbridge_h_and_of_libcbridge_is_documented(site):
    _, entries = site
    documented = names(entries, "c:function")
    header = (ROOT / "c_driver" / "include" / "cbridge.h").read_text()
    # read independently of the page's generator: every CB_API declaration names a function
    declared = set(re.findall(r"CB_API[^;(]*?\b(cb_\w+)\s*\(", header, re.S))
    libs = sorted(config.lib_dir().glob("libcbridge.so.*"))  # .so is a linker script
    assert libs, f"no libcbridge.so.N in {config.lib_dir()}"
    nm = subprocess.run(["nm", "-D", "--defined-only", str(libs[0])], capture_output=True,
                        text=True, check=True).stdout
    exported = {line.split()[-1] for line in nm.splitlines() if " T " in line}
    assert len(declared) > 30 and declared == exported, \
        f"cbridge.h and libcbridge differ: {sorted(declared ^ exported)}"
    assert not declared - documented, f"undocumented: {sorted(declared - documented)}"
    # and the header says something of each: a comment above it (its own or its group's)
    from c_header import parse_header

    _, sections = parse_header(header)
    bare = [d.name for sec in sections for d in sec.decls
            if d.kind == "function" and not (d.doc or d.note)]
    assert not bare, f"functions of cbridge.h without a comment: {bare}"
    assert {"cb_header", "cb_field", "cb_request", "cb_stats"} <= names(entries, "c:struct")


def test_every_setting_is_documented(site):
    from cbridge_magics.magics.cbridge_magic import CBridgeMagics
    from cbridge_magics.relay.jupyter_host import CBridgeApp

    page = (HTML / "reference" / "generated" / "settings.html").read_text()
    for cls in (CBridgeMagics, CBridgeApp):
        for name, trait in cls.class_traits(config=True).items():
            if trait.this_class is cls:
                assert f"c.{cls.__name__}.{name}" in page, f"{cls.__name__}.{name}"


def test_the_tutorials_ran_against_the_demo_driver(site):
    pages = {p.stem: p.read_text() for p in (HTML / "tutorials").glob("*.html")}
    assert {"first-steps", "plots-and-scope", "panels-and-console", "remote", "own-program",
            "recordings"} <= set(pages)
    assert "connected to cbridge-demo-driver" in pages["first-steps"]
    assert "Status(code=0" in pages["first-steps"]
    # the plots (the live plot, the stopped scope's picture) are in the page as images
    assert pages["plots-and-scope"].count('<img alt="_images/') + pages["plots-and-scope"] \
        .count('src="../_images/') >= 3
    assert "connected to minimal-thermometer" in pages["own-program"]
    assert "xarray.Dataset" in pages["recordings"]
    for name, page in pages.items():
        if name != "own-program":  # its refusal is shown on purpose (raises-exception)
            assert "Traceback (most recent call last)" not in page, name
