"""``cbridge.h`` read as its reader reads it: sections, and each declaration with the comment
written above it (or beside it), turned into a Markdown page of Sphinx C-domain entries.

The header's layout is the contract this parser relies on, and ``tests/test_docs.py`` holds it
to it: every function libcbridge exports is declared here with ``CB_API`` and a comment.

    decls = parse_header(Path("c_driver/include/cbridge.h").read_text())
    page = to_markdown(decls, "cbridge.h")
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field

BANNER = re.compile(r"^/\* -{8,}\s*$")
DEFINE = re.compile(r"^#define\s+(\w+)(\([^)]*\))?\s*(.*?)\s*(?:/\*\s*(.*?)\s*\*/)?\s*$")
TRAILING = re.compile(r"/\*\s*(.*?)\s*\*/\s*$")
# Defines that are the header's machinery, not its API.
MACHINERY = {"CBRIDGE_H", "CB_API", "CB_PRINTF"}


@dataclass
class Decl:
    kind: str  # function, macro, struct, type, opaque
    name: str
    signature: str
    doc: list[str] = field(default_factory=list)  # the comment above it, without /* * */
    note: str = ""  # the comment beside it
    value: str = ""  # a constant macro's value
    members: list[tuple[str, str]] = field(default_factory=list)  # struct: (decl, comment)


@dataclass
class Section:
    title: str
    intro: list[str] = field(default_factory=list)
    decls: list[Decl] = field(default_factory=list)


def _comment_lines(block: list[str]) -> list[str]:
    """The text of a /* ... */ block, one entry a line, the common indent removed."""
    text = "\n".join(block).strip()
    text = text.removeprefix("/*").removesuffix("*/")
    lines = []
    for line in text.split("\n"):
        s = line.strip()
        if s.startswith("*"):
            s = line.split("*", 1)[1]
            s = s[1:] if s.startswith(" ") else s
        else:
            s = line.strip()
        lines.append(s.rstrip())
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _clean_signature(text: str) -> str:
    text = re.sub(r"\s+", " ", text.replace("CB_API", "")).strip().rstrip(";").strip()
    return re.sub(r"\s*CB_PRINTF\([^)]*\)$", "", text)


def _function_name(signature: str) -> str:
    return re.search(r"(\w+)\s*\(", signature).group(1)  # type: ignore[union-attr]


def parse_header(text: str) -> tuple[list[str], list[Section]]:
    """(the header's opening comment, its sections in order)."""
    lines = text.split("\n")
    i, n = 0, len(lines)
    opening: list[str] = []
    sections = [Section("Constants and build")]
    # The comment block just above the next declaration; declarations that follow it without
    # a blank line share it.
    comment: list[str] = []

    def add(decl: Decl) -> None:
        decl.doc = comment[:]
        sections[-1].decls.append(decl)

    while i < n:
        line = lines[i]
        s = line.strip()
        if not s:
            comment = []
            i += 1
            continue
        if s.startswith("/*"):
            block = [line]
            while "*/" not in lines[i]:
                i += 1
                block.append(lines[i])
            i += 1
            if BANNER.match(s):
                title = _comment_lines(block)[1] if len(block) > 2 else ""
                sections.append(Section(title.strip()))
                comment = []
            elif i == len(block):  # the file's first lines
                opening = _comment_lines(block)
            else:
                comment = _comment_lines(block)
            continue
        if s.startswith("#define"):
            # a macro's body may run over several lines (\ at the end): its first line names it
            first = s
            while lines[i].rstrip().endswith("\\"):
                i += 1
            i += 1
            m = DEFINE.match(first.rstrip("\\").rstrip())
            if m and m.group(1) not in MACHINERY and not m.group(1).startswith("CB__"):
                name, params, value, beside = m.groups()
                decl = Decl("macro", name, name + (params or ""), note=beside or "",
                            value=value if not params else "")
                add(decl)
            continue
        if s.startswith("typedef struct") and s.endswith(";") and "{" not in s:
            name = s.split()[-1].rstrip(";")
            add(Decl("opaque", name, name))
            i += 1
            continue
        if s.startswith("typedef struct") and "{" in s:
            name = s.split()[2]
            decl = Decl("struct", name, name)
            i += 1
            member_doc: list[str] = []
            while not lines[i].strip().startswith("}"):
                m_line = lines[i].strip()
                if m_line.startswith("/*"):  # a comment of its own above a member
                    block = [lines[i]]
                    while "*/" not in lines[i]:
                        i += 1
                        block.append(lines[i])
                    member_doc = _comment_lines(block)
                elif m_line:
                    beside = TRAILING.search(m_line)
                    code = TRAILING.sub("", m_line).strip()
                    more = []
                    while not code.endswith(";"):  # a member's comment running on below it
                        i += 1
                        nxt = lines[i].strip()
                        more.append(nxt.rstrip("*/").strip())
                        if nxt.endswith("*/"):
                            break
                    doc = " ".join(member_doc + ([beside.group(1)] if beside else []) + more)
                    if beside is None and "/*" in m_line:  # an opened comment, continued
                        doc = " ".join(member_doc + [m_line.split("/*", 1)[1].strip()] + more)
                        code = m_line.split("/*", 1)[0].strip()
                    code = code.rstrip(";").strip()
                    if "," in code:  # unsigned bit_offset, bit_width: one entry each
                        kind, first = code.split(",")[0].rsplit(None, 1)
                        names = [first] + [x.strip() for x in code.split(",")[1:]]
                        for name in names:
                            decl.members.append((f"{kind} {name}", doc.strip()))
                    else:
                        decl.members.append((code, doc.strip()))
                    member_doc = []
                i += 1
            close = lines[i].strip()
            beside = TRAILING.search(close)
            add(decl)
            decl.note = beside.group(1) if beside else ""
            i += 1
            continue
        if s.startswith("typedef"):
            add(Decl("type", re.search(r"\(\s*\*\s*(\w+)\s*\)", s).group(1),  # type: ignore
                     _clean_signature(s.removeprefix("typedef"))))
            i += 1
            continue
        if s.startswith("CB_API"):
            text_ = s
            while not text_.rstrip().endswith(";") and ";" not in TRAILING.sub("", text_):
                i += 1
                text_ += " " + lines[i].strip()
            beside = TRAILING.search(text_)
            signature = _clean_signature(TRAILING.sub("", text_))
            decl = Decl("function", _function_name(signature), signature,
                        note=beside.group(1) if beside else "")
            add(decl)
            i += 1
            continue
        # static_assert, #include, #if/#endif, extern "C", braces: not the API
        comment = []
        i += 1
    return opening, [s for s in sections if s.decls]


def _escape(text: str) -> str:
    return re.sub(r"([\\*_\[\]<>|#])", r"\\\1", text)  # `code` stays code


def _linked(text: str, kinds: dict[str, str]) -> str:
    """Prose with the API's names (cb_on, cb_server_error(), CB_ERR...) as references."""
    roles = {"function": "c:func", "macro": "c:macro"}
    out, last = [], 0
    for m in re.finditer(r"\b((?:cb|CB)_\w+)(\(\))?", text):
        out.append(_escape(text[last:m.start()]))
        name = m.group(1)
        if name in kinds:
            out.append(f"{{{roles.get(kinds[name], 'c:type')}}}`{name}`")
        else:
            out.append(_escape(m.group(0)))
        last = m.end()
    out.append(_escape(text[last:]))
    return "".join(out)


def prose(lines: list[str], kinds: dict[str, str]) -> list[str]:
    """A comment's lines as Markdown: prose paragraphs (names linked), '- ' lists, and
    indented lines (code, aligned tables) kept as they are."""
    out: list[str] = []
    para: list[str] = []

    def flush() -> None:
        if not para:
            return
        if not para[0].startswith("- ") and any(line.startswith("  ") for line in para):
            # prose lines and indented ones (code, an aligned table), each run as it is
            runs: list[tuple[bool, list[str]]] = []
            for line in para:
                code = line.startswith("  ")
                if runs and runs[-1][0] == code:
                    runs[-1][1].append(line)
                else:
                    runs.append((code, [line]))
            for code, run in runs:
                if code:
                    out.extend(["```text", *textwrap.dedent("\n".join(run)).split("\n"),
                                "```", ""])
                else:
                    out.extend([_linked(" ".join(x.strip() for x in run), kinds), ""])
        elif para[0].startswith("- "):
            items: list[str] = []
            for line in para:
                if line.startswith("- "):
                    items.append(line[2:])
                else:
                    items[-1] += " " + line.strip()
            out.extend([f"- {_linked(item, kinds)}" for item in items] + [""])
        else:
            out.extend([_linked(" ".join(line.strip() for line in para), kinds), ""])
        para.clear()

    for line in lines:
        if not line.strip():
            flush()
        else:
            if para and line.startswith("- ") and not para[0].startswith("- "):
                flush()
            para.append(line)
    flush()
    return out


def to_markdown(parsed: tuple[list[str], list[Section]], header: str) -> str:
    opening, sections = parsed
    names = {d.name: d.kind for sec in sections for d in sec.decls}
    out = ["# C API: `cbridge.h`", "",
           f"Generated from `{header}`: every declaration with the comment above it. A C "
           "program includes it and links libcbridge (`cbridge-config --cflags --libs`; see "
           "{doc}`../../howto/own-program`).", ""]
    out += ["## Overview", "", *prose(opening[1:], names)]
    directive = {"function": "c:function", "macro": "c:macro", "struct": "c:struct",
                 "type": "c:type", "opaque": "c:type"}
    for sec in sections:
        out += [f"## {sec.title}", ""]
        decls = sec.decls
        for k, d in enumerate(decls):
            # a comment above several declarations is said once, before them; one above a
            # single declaration is its description
            shared = bool(d.doc) and any(0 <= j < len(decls) and decls[j].doc == d.doc
                                         for j in (k - 1, k + 1))
            first = k == 0 or decls[k - 1].doc != d.doc
            if shared and first:
                out += prose(d.doc, names)
            body = [] if shared else prose(d.doc, names)
            if d.note:
                body += [_linked(d.note[0].upper() + d.note[1:], names), ""]
            if d.value:
                body += [f"Value: `{d.value}`", ""]
            if d.kind == "struct":
                out += [f"`````{{{directive[d.kind]}}} {d.signature}", "", *body]
                for code, doc in d.members:
                    out += [f"````{{c:member}} {code}", _linked(doc, names), "````", ""]
                out += ["`````", ""]
            else:  # four backticks: a body may hold a code block
                out += [f"````{{{directive[d.kind]}}} {d.signature}", *body, "````", ""]
    return "\n".join(out)
