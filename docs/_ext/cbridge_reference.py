"""Reference pages generated from the code, so that they cannot drift from it.

At ``builder-inited`` this writes Markdown pages into ``reference/generated/`` (not kept in git):

- ``magics.md`` from the declarations ``%cbridge help`` reads (``magics.commands.COMMANDS``) and
  from ``%%cstruct``'s own argument parser;
- ``command-line.md`` from the parsers of ``python -m cbridge_magics`` and ``cbridge-config``,
  and the demo driver's ``--help``;
- ``settings.md`` from the traitlets of ``CBridgeMagics`` and the Jupyter Server extension;
- ``c-api.md`` from ``cbridge.h``: each declaration with the comment above it (``c_header.py``
  reads the header; ``tests/test_docs.py`` checks it against what libcbridge exports);
- ``python.md``: autodoc directives for every name in the public modules' ``__all__``.

A page is written only when its text changed, so an unchanged build reads nothing again.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from c_header import parse_header, to_markdown  # noqa: E402

# The public modules and what their reference page calls them.
PUBLIC = [
    ("cbridge_magics", "The package: connect, the Bridge, errors"),
    ("cbridge_magics.cstruct", "Compiling C declarations"),
    ("cbridge_magics.scope", "The scope"),
    ("cbridge_magics.widgets", "Panels, forms and the console"),
    ("cbridge_magics.recording", "Recordings"),
    ("cbridge_magics.relay", "The relay"),
]
# Names documented elsewhere on the page (module attributes, not objects with docstrings).
NOT_AUTODOC = {"__version__"}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _cell(text: str) -> str:
    """Text for a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _option(action: argparse.Action) -> tuple[str, str, str]:
    """(how it is written, what it does, its default) for one argparse action."""
    if action.option_strings:
        written = ", ".join(action.option_strings)
        if action.nargs != 0:
            metavar = action.metavar or action.dest.upper()
            written += f" [{metavar}]" if action.nargs == "?" else f" {metavar}"
    else:
        written = action.metavar or action.dest
        if action.nargs in ("*", "+"):
            written += " ..."
        if action.nargs in ("*", "?"):
            written = f"[{written}]"
    default, text = action.default, (action.help or "").replace("%%", "%")
    shown = "" if default in (None, False, [], "", argparse.SUPPRESS) or "default" in text \
        else f"`{default!r}`"
    return written, text, shown


def _options_table(parser: argparse.ArgumentParser) -> list[str]:
    rows = [_option(a) for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    if not rows:
        return ["No arguments.", ""]
    out = ["| argument | what it does | default |", "|---|---|---|"]
    out += [f"| `{_cell(w)}` | {_cell(h)} | {d} |" for w, h, d in rows]
    return out + [""]


def magics_page() -> str:
    from cbridge_magics.magics import commands
    from cbridge_magics.magics.cstruct_magic import CStructMagics

    out = ["# Magics", "",
           "Generated from the declarations `%cbridge help` prints, so this page and the help in "
           "the notebook say the same. Load the extension first: `%load_ext cbridge_magics`.", "",
           "A magic line takes a trailing `# comment` as Python does and quotes as a shell does. "
           "Bad arguments raise `UsageError` with what to write instead; a failure of the link or "
           "the driver is one message that says what to do next; its exception keeps its type "
           "(the {py:class}`~cbridge_magics.CBridgeError` family) for whatever runs the "
           "notebook.", "",
           "## `%cbridge`", "", "`%cbridge COMMAND [options]`: drive a C program from the notebook. "
           "`%cbridge help COMMAND` (or `%cbridge COMMAND --help`) shows one command's help in "
           "the notebook.", "", "| command | what it does |", "|---|---|"]
    out += [f"| {{ref}}`{c.name} <magic-cbridge-{c.name}>` | {_cell(c.summary)} |"
            for c in commands.COMMANDS]
    out += [""]
    for c in commands.COMMANDS:
        parser = commands.SUBPARSERS[c.name]
        usage = parser.format_usage().strip().removeprefix("usage: ")
        out += [f"(magic-cbridge-{c.name})=", f"### `%cbridge {c.name}`", "", c.summary[0].upper()
                + c.summary[1:] + ".", "", "```text", usage, "```", ""]
        out += _options_table(parser)
        out += ["Examples:", "", "```text", *c.examples, "```", ""]
    parser = CStructMagics.cstruct.parser
    out += ["(magic-cstruct)=", "## `%%cstruct` and `%cstruct`", "",
            (CStructMagics.cstruct.__doc__ or "").strip().split("\n\n")[0].replace("%%", "%"),
            "", "```text", parser.format_usage().strip().removeprefix("usage: ").replace("%%", "%"),
            "```", ""]
    out += _options_table(parser)
    return "\n".join(out)


def command_line_page() -> str:
    import subprocess

    from cbridge_magics import __main__ as cli
    from cbridge_magics import config

    out = ["# Command line", "",
           "Generated from the programs' own parsers. `python` is the Python environment cbridge "
           "is installed in.", ""]
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, p in sub.choices.items():
        if name == "config":
            p = config.build_parser()
        p.prog = f"python -m cbridge_magics {name}"
        about = (p.description or helps.get(name) or "").replace("%%", "%")
        out += [f"(cli-{name})=", f"## `python -m cbridge_magics {name}`", "",
                about[:1].upper() + about[1:] + ("" if about.endswith(".") else "."), "",
                "```text", p.format_usage().strip().removeprefix("usage: "), "```", ""]
        out += _options_table(p)
        if name == "config":
            out += ["The same program is installed as `cbridge-config`.", ""]
    driver = subprocess.run([str(config.demo_driver()), "--help"], capture_output=True,
                            text=True, timeout=30, check=True).stdout
    out += ["(cli-demo-driver)=", "## `cbridge-demo-driver`", "",
            "The demo driver (see {doc}`../demo-driver`), a C program; its `--help`:", "",
            "```text", driver.rstrip(), "```", ""]
    return "\n".join(out)


def _traits(cls: type, section: str) -> list[str]:
    out = ["| setting | type | default | what it does |", "|---|---|---|---|"]
    for name, trait in sorted(cls.class_traits(config=True).items()):
        if trait.this_class is not cls:
            continue  # the base class's own settings (log_level, ...) are documented upstream
        default = trait.default_value_repr()
        out.append(f"| `c.{section}.{name}` | {type(trait).__name__} | `{_cell(default)}` | "
                   f"{_cell(trait.help)} |")
    return out + [""]


def settings_page() -> str:
    from cbridge_magics.magics.cbridge_magic import CBridgeMagics
    from cbridge_magics.relay.jupyter_host import CBridgeApp

    return "\n".join([
        "# Settings", "",
        "Generated from the traitlets themselves: the names, types, defaults and help are the "
        "code's.", "",
        "(settings-kernel)=", "## In the kernel: `CBridgeMagics`", "",
        "Set in `ipython_config.py` (`ipython profile locate` shows its folder), or for one "
        "notebook with `%config CBridgeMagics.plot_fps = 30` before the magic that reads it.", "",
        "```python", "# ~/.ipython/profile_default/ipython_config.py", "c = get_config()  # noqa",
        "c.CBridgeMagics.history = 1_000_000", "c.CBridgeMagics.plot_fps = 20", "```", "",
        *_traits(CBridgeMagics, "CBridgeMagics"),
        "(settings-server)=", "## In Jupyter Server: `CBridgeApp`", "",
        "Set in `jupyter_server_config.py` (`jupyter --config-dir` shows its folder) or on the "
        "command line (`--CBridgeApp.drivers=...`). Nothing is served until `drivers` names one.",
        "", "```python", "# jupyter_server_config.py", "c = get_config()  # noqa",
        "c.CBridgeApp.drivers = {\"demo\": \"unix:///tmp/cbridge-demo.sock\"}", "```", "",
        *_traits(CBridgeApp, "CBridgeApp"),
    ])


def public_names(module: str) -> list[str]:
    return [n for n in importlib.import_module(module).__all__ if n not in NOT_AUTODOC]


def python_page() -> str:
    out = ["# Python API", "",
           "Generated from the docstrings and type hints of every name the public modules "
           "export (their `__all__`). The magics are a front to these: everything a magic does, "
           "a script can do without IPython.", ""]
    seen: dict[int, str] = {}
    for module, title in PUBLIC:
        out += [f"## {title}: `{module}`", "", "```{eval-rst}", f".. module:: {module}", "```",
                ""]
        if module == "cbridge_magics":
            out += ["`cbridge_magics.__version__` is the installed version.", ""]
        for name in public_names(module):
            obj = getattr(importlib.import_module(module), name)
            if inspect.ismodule(obj):
                continue  # a public module has a section of its own
            if id(obj) in seen:
                out += [f"`{name}` is {{py:obj}}`{seen[id(obj)]}`.", ""]
                continue
            seen[id(obj)] = f"{module}.{name}"
            kind = ("autoexception" if isinstance(obj, type) and issubclass(obj, BaseException)
                    else "autoclass" if isinstance(obj, type)
                    else "autofunction" if callable(obj) else "autodata")
            options = ["   :members:", "   :show-inheritance:"] if kind == "autoclass" else []
            out += ["```{eval-rst}", f".. {kind}:: {module}.{name}", *options, "```", ""]
    return "\n".join(out)


def c_api_page(header: Path) -> str:
    return to_markdown(parse_header(header.read_text(encoding="utf-8")), header.name)


def code_blocks(app, what, name, obj, options, lines: list[str]) -> None:  # type: ignore
    """cbridge's docstrings show code as a block indented by four spaces after a blank line, as
    the source reads best; reST would take it for a quotation. Make each such block literal."""
    out: list[str] = []
    in_code = False
    for line in lines:
        indented = line.startswith("    ")
        if indented and not in_code and (not out or not out[-1].strip()):
            last = next((x for x in reversed(out) if x.strip()), "")
            if not last.rstrip().endswith("::"):
                out += ["::", ""]
            in_code = True
        elif line.strip() and not indented:
            in_code = False
        out.append(line)
    lines[:] = out


def generate(app) -> None:  # type: ignore[no-untyped-def]
    root = Path(app.srcdir)
    out = root / "reference" / "generated"
    _write(out / "magics.md", magics_page())
    _write(out / "settings.md", settings_page())
    _write(out / "command-line.md", command_line_page())
    _write(out / "python.md", python_page())
    _write(out / "c-api.md", c_api_page(root.parent / "c_driver" / "include" / "cbridge.h"))


def setup(app):  # type: ignore[no-untyped-def]
    app.connect("builder-inited", generate)
    app.connect("autodoc-process-docstring", code_blocks)
    return {"parallel_read_safe": True, "version": "1"}
