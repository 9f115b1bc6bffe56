"""C declarations -> a model of the structs, unions, enum constants and integer macros they define.

Route (decided): gcc itself preprocesses the source with the real headers (``gcc -E -dD``), then
pycparser reads the whole preprocessed translation unit, so typedef names from any header (stdint.h,
stdio.h's FILE, the user's own headers) are known to the parser. For this one pass GNU spellings the
parser does not know (``__attribute__``, ``__extension__``, ``__asm__``...) are defined away on the
command line: the parser only reads names and types, the compiler alone decides layout (see
codegen, which compiles sizeof/offsetof into the module). The linemarkers of gcc's output say
which file every declaration came from: only the source's own ("main") declarations become classes
and names, plus the structs from other headers that those classes nest. Should a system header
still defeat pycparser, the system headers' lines are dropped and the usual typedef names
(FALLBACK_TYPEDEFS: stdint.h, stddef.h, FILE...) declared to the parser instead.

    model = parse_file(Path("cell.h"), "<cstruct cell>", ["-I", "include"], cc=["gcc"])
    [r.name for r in model.records]      # ['Header', 'Frame']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from pycparser import c_ast, c_parser

from ..errors import CStructError
from .macros import integer_macros
from .preprocess import Preprocessed, drop_system, escape, preprocess
from .toolchain import run_cc

MAX_RANK = 8
_INT_WORDS = {"int", "short", "long", "signed", "unsigned", "char"}
# Names the generated classes use themselves; a field so named is served by a descriptor that
# answers the class attribute on the class and the field on an instance (see _Field).
CLASS_ATTRS = frozenset({"size", "dtype", "pack", "unpack", "unpack_from", "to_dict"})


@dataclass
class Elem:
    """The element type of a member, arrays stripped and typedefs resolved."""

    kind: str  # 'int', 'float', 'bool', 'char' (plain char), 'enum', 'struct' (or union)
    spelling: str | None  # how C names it ('uint32_t', 'enum mode', 'Header'); None: anonymous
    record: "Record | None" = None
    names: tuple[str, ...] = ()  # IdentifierType words for builtin types ('unsigned', 'int')
    consts: tuple[str, ...] = ()  # an anonymous enum's constants (C cannot name its type)


@dataclass
class Member:
    """One field of a record as Python sees it (members of anonymous struct/union members are
    flattened into their parent, as C lets you name them)."""

    name: str
    elem: Elem
    rank: int
    where: str
    const: bool = False
    overlaps: bool = False  # shares bytes with another member (union, anonymous union)
    bitfield: bool = False  # declared with a width (``mode : 3``); its bits are measured, not read


@dataclass
class Record:
    """A struct or union that becomes a class."""

    name: str                     # the Python class name
    is_union: bool
    spelling: str | None          # C type spelling; None for an anonymous nested type
    where: str
    main: bool
    members: list[Member] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)  # other names C gives it (tag, typedefs)
    parent: "tuple[Record, str] | None" = None       # anonymous type: (record, member access)
    index: int = -1                                   # position in Model.records


@dataclass
class Model:
    """What a source defines: records (nested ones first), enum constants and macro candidates."""

    records: list[Record]
    enum_consts: list[str]
    macros: list[str]            # object-like macros of the main file whose body looks like an ICE
    deps: list[str]              # non-system headers the source included (absolute paths)
    enums: dict[str, list[str]] = field(default_factory=dict)  # 'enum tag' / typedef -> constants


def _file(node: c_ast.Node | None) -> str:
    c = getattr(node, "coord", None)
    return c.file if c is not None and c.file else ""


def _where(node: c_ast.Node | None) -> str:
    c = getattr(node, "coord", None)
    return f"{c.file}:{c.line}" if c is not None and c.file else "?"


def _parse_c(text: str, main_file: str, pre: Preprocessed, syntax_check) -> c_ast.FileAST:
    try:
        return c_parser.CParser().parse(text, "<preprocessed>")
    except c_parser.ParseError as e:
        first = e
    msg = str(first)
    if any(msg.startswith(f"{f}:") for f in pre.system_files):
        try:
            return c_parser.CParser().parse(drop_system(pre), "<preprocessed>")
        except c_parser.ParseError as e:
            msg = str(e)
    # The compiler's own words are better than the parser's: ask it first.
    failed, compiler = syntax_check()
    if failed:
        raise CStructError(f"the C compiler rejected the declarations:\n{compiler}")
    said = f"; the compiler accepts them but says:\n{compiler}" if compiler else \
        "; the compiler accepts them, so this is C that cbridge does not read (GNU extensions " \
        "other than attributes, C23...)"
    raise CStructError(f"cannot read the declarations (pycparser: {msg}){said}")


# --- the model ---------------------------------------------------------------------------------

class _Builder:
    def __init__(self, ast: c_ast.FileAST, main_file: str, system_files: set[str]) -> None:
        self.ast = ast
        self.main_file = main_file
        self.system = system_files
        self.typedefs: dict[str, c_ast.Node] = {}
        self.tags: dict[str, c_ast.Node] = {}          # struct/union tag -> defining node
        self.records: dict[int, Record] = {}           # id(Struct node) -> record
        self.order: list[Record] = []
        self.names: dict[str, Record] = {}

    # type resolution

    def resolve(self, node: c_ast.Node, where: str, owner: str, member: str,
                parent: Record | None, access: str) -> tuple[Elem, int, bool]:
        """(element type, rank, const) of a member's declared type node."""
        rank = 0
        const = False
        while True:
            if isinstance(node, c_ast.ArrayDecl):
                if node.dim is None:
                    raise CStructError(
                        f"{where}: field '{member}' of {owner} is a flexible or incomplete array: "
                        "its size is not part of the struct, so it cannot cross a socket; give it "
                        "a fixed size")
                rank += 1
                node = node.type
            elif isinstance(node, (c_ast.PtrDecl,)):
                raise CStructError(
                    f"{where}: field '{member}' of {owner} is a pointer: a pointer cannot cross a "
                    "socket; send the data it points to as a fixed-size array")
            elif isinstance(node, c_ast.FuncDecl):
                raise CStructError(f"{where}: field '{member}' of {owner} is a function")
            elif isinstance(node, c_ast.TypeDecl):
                const = const or "const" in (node.quals or [])
                node = node.type
            elif isinstance(node, c_ast.Typename):
                node = node.type
            elif isinstance(node, c_ast.IdentifierType):
                names = node.names
                if len(names) == 1 and names[0] in self.typedefs:
                    tname = names[0]
                    target = self.typedefs[tname]
                    inner = target.type if isinstance(target, c_ast.TypeDecl) else None
                    if isinstance(inner, (c_ast.Struct, c_ast.Union)):
                        defn = self.definition(inner)
                        if defn is not None and defn.name is None and id(defn) not in self.records:
                            # an anonymous struct known by its typedef name (from another header)
                            self.make_record(defn, tname, None, None)
                    sub_elem, sub_rank, sub_const = self.resolve(
                        target, where, owner, member, parent, access + "[0]" * rank)
                    spelling = tname if sub_rank == 0 else sub_elem.spelling
                    elem = Elem(sub_elem.kind, spelling, sub_elem.record, sub_elem.names,
                                sub_elem.consts)
                    return elem, rank + sub_rank, const or sub_const
                return Elem(self._builtin_kind(names, where, owner, member), " ".join(names),
                            None, tuple(names)), rank, const
            elif isinstance(node, c_ast.Enum):
                spelling = f"enum {node.name}" if node.name else None
                consts = tuple(e.name for e in node.values.enumerators) \
                    if node.name is None and node.values is not None else ()
                return Elem("enum", spelling, consts=consts), rank, const
            elif isinstance(node, (c_ast.Struct, c_ast.Union)):
                rec = self.record_for(node, where, owner, member, parent, access + "[0]" * rank)
                return Elem("struct", rec.spelling, rec), rank, const
            else:
                raise CStructError(f"{where}: field '{member}' of {owner} has a type cbridge "
                                   f"cannot map ({type(node).__name__})")
            if rank > MAX_RANK:
                raise CStructError(f"{where}: field '{member}' of {owner} has more than "
                                   f"{MAX_RANK} array dimensions")

    def _builtin_kind(self, names: list[str], where: str, owner: str, member: str) -> str:
        s = set(names)
        if s == {"_Bool"}:
            return "bool"
        if "float" in s or "double" in s:
            if s <= {"float", "double", "long"}:
                return "float"
        elif "char" in s and not s & {"signed", "unsigned"} and s == {"char"}:
            return "char"
        elif s <= _INT_WORDS:
            return "int"
        raise CStructError(f"{where}: field '{member}' of {owner} has type '{' '.join(names)}', "
                           "which cbridge does not support (integers, float, double, bool, enums, "
                           "structs and unions are)")

    # records

    def definition(self, node: c_ast.Node) -> c_ast.Node | None:
        if node.decls is not None:
            return node
        return self.tags.get(node.name) if node.name else None

    def record_for(self, node: c_ast.Node, where: str, owner: str, member: str,
                   parent: Record | None, access: str) -> Record:
        defn = self.definition(node)
        kind = "union" if isinstance(node, c_ast.Union) else "struct"
        if defn is None:
            raise CStructError(f"{where}: field '{member}' of {owner} has type '{kind} {node.name}', "
                               "which is declared but not defined (an incomplete type)")
        rec = self.records.get(id(defn))
        if rec is None:
            rec = self.make_record(defn, None, parent, access, owner, member)
        return rec

    def make_record(self, defn: c_ast.Node, name: str | None, parent: Record | None,
                    access: str | None, owner: str = "", member: str = "") -> Record:
        is_union = isinstance(defn, c_ast.Union)
        where = _where(defn)
        main = defn.coord is not None and defn.coord.file == self.main_file
        if name is None and defn.name:
            name = defn.name
        if name is not None:
            spelling = name if name in self.typedefs and self._typedef_is(name, defn) \
                else f"{'union' if is_union else 'struct'} {name}"
            rec = Record(name, is_union, spelling, where, main)
        else:
            assert parent is not None
            rec = Record(f"{parent.name}_{member}", is_union, None, where, main,
                         parent=(parent, access or ""))
        self.records[id(defn)] = rec
        # Members: resolved now, so nested records are complete before this one is listed.
        rec.members = list(self.members(defn, rec, rec.name, overlaps=is_union))
        seen: set[str] = set()
        for m in rec.members:
            if m.name in seen:
                raise CStructError(f"{m.where}: {rec.name} has two fields named '{m.name}'")
            seen.add(m.name)
            if m.name.startswith("_cb"):
                raise CStructError(f"{m.where}: field '{m.name}' of {rec.name}: names starting "
                                   "with _cb are reserved by cbridge")
        rec.index = len(self.order)
        self.order.append(rec)
        return rec

    def _typedef_is(self, name: str, defn: c_ast.Node) -> bool:
        t = self.typedefs.get(name)
        if not isinstance(t, c_ast.TypeDecl) or t.quals:
            return False
        inner = t.type
        return isinstance(inner, type(defn)) and self.definition(inner) is defn

    def members(self, defn: c_ast.Node, rec: Record, owner: str, overlaps: bool,
                prefix: str = "") -> Iterator[Member]:
        for d in defn.decls or ():
            where = _where(d)
            if d.name is None:
                t = d.type.type if isinstance(d.type, c_ast.TypeDecl) else d.type
                if isinstance(t, (c_ast.Struct, c_ast.Union)) and t.name is None and t.decls is not None:
                    # C11 anonymous member: its fields are the parent's fields.
                    yield from self.members(t, rec, owner, overlaps or isinstance(t, c_ast.Union))
                continue
            if d.bitsize is not None:
                yield self.bitfield(d, where, owner, rec, overlaps)
                continue
            elem, rank, const = self.resolve(d.type, where, owner, d.name, rec, f"->{d.name}")
            yield Member(d.name, elem, rank, where, const, overlaps)

    def bitfield(self, d: c_ast.Decl, where: str, owner: str, rec: Record,
                 overlaps: bool) -> Member:
        """A named bit-field (unnamed ones, padding and ``: 0``, are skipped): its width is the
        compiler's business, any constant expression; codegen measures where its bits went."""
        elem, rank, const = self.resolve(d.type, where, owner, d.name, rec, f"->{d.name}")
        if rank or elem.kind not in ("int", "enum", "bool", "char"):
            raise CStructError(f"{where}: field '{d.name}' of {owner} is a bit-field of a type "
                               "that is not an integer, bool or enum")
        kind = "int" if elem.kind == "char" else elem.kind  # plain char: its sign is measured
        return Member(d.name, Elem(kind, elem.spelling, None, elem.names, elem.consts), 0, where,
                      const, overlaps, bitfield=True)

    def walk(self) -> None:
        # Pass 1: every typedef and tag definition in the translation unit, in order.
        for ext in self.ast.ext:
            for node in _iter_nodes(ext):
                if isinstance(node, (c_ast.Struct, c_ast.Union)) and node.name and node.decls is not None:
                    self.tags[node.name] = node
            if isinstance(ext, c_ast.Typedef):
                self.typedefs[ext.name] = ext.type
        # Pass 2: records of the main file, in source order (nested ones come first by recursion).
        for ext in self.ast.ext:
            if _file(ext) != self.main_file:
                continue
            if isinstance(ext, c_ast.Typedef):
                t = ext.type
                if isinstance(t, c_ast.TypeDecl) and isinstance(t.type, (c_ast.Struct, c_ast.Union)):
                    defn = self.definition(t.type)
                    if defn is None:
                        continue  # an opaque typedef: nothing to lay out
                    rec = self.records.get(id(defn))
                    if rec is None:
                        rec = self.make_record(defn, ext.name if defn.name is None else None,
                                               None, None)
                    if ext.name != rec.name and ext.name not in rec.aliases:
                        rec.aliases.append(ext.name)
                        if rec.spelling and rec.spelling.startswith(("struct ", "union ")) \
                                and self._typedef_is(ext.name, defn):
                            rec.spelling = ext.name
                    if defn.name and rec.name == defn.name and ext.name != defn.name \
                            and not rec.parent:
                        # prefer the typedef name (what C code calls it) for the class
                        rec.aliases.remove(ext.name)
                        rec.aliases.insert(0, rec.name)
                        rec.name = ext.name
                continue
            for node in _iter_nodes(ext):
                if isinstance(node, (c_ast.Struct, c_ast.Union)) and node.decls is not None \
                        and node.name and id(node) not in self.records \
                        and _file(node) == self.main_file:
                    self.make_record(node, None, None, None)

    def exported(self) -> None:
        for rec in self.order:
            for n in [rec.name, *rec.aliases]:
                other = self.names.get(n)
                if other is not None and other is not rec:
                    raise CStructError(f"{rec.where}: the name '{n}' is given to two different "
                                       f"structs ({other.where} and here)")
                self.names[n] = rec


def _iter_nodes(node: c_ast.Node) -> Iterator[c_ast.Node]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(child for _, child in reversed(n.children()))


def _enum_consts(ast: c_ast.FileAST, main_file: str) -> tuple[list[str], dict[str, list[str]]]:
    """The enum constants of the main file, in source order, and each enum type's constants under
    the names a field's type can have: ``enum tag`` and the typedef names."""
    out: list[str] = []
    types: dict[str, list[str]] = {}
    for ext in ast.ext:
        for node in _iter_nodes(ext):
            if isinstance(node, c_ast.Enumerator) and _file(node) == main_file:
                if node.name not in out:
                    out.append(node.name)
            elif isinstance(node, c_ast.Enum) and node.values is not None \
                    and _file(node) == main_file:
                names = [e.name for e in node.values.enumerators]
                if node.name:
                    types[f"enum {node.name}"] = names
                if isinstance(ext, c_ast.Typedef) and isinstance(ext.type, c_ast.TypeDecl) \
                        and ext.type.type is node:
                    types[ext.name] = names
    for ext in ast.ext:  # typedef enum tag Name;, the enum defined elsewhere
        if isinstance(ext, c_ast.Typedef) and isinstance(ext.type, c_ast.TypeDecl) \
                and isinstance(ext.type.type, c_ast.Enum) and ext.type.type.values is None \
                and f"enum {ext.type.type.name}" in types:
            types[ext.name] = types[f"enum {ext.type.type.name}"]
    return out, types


# --- entry point -------------------------------------------------------------------------------

def parse_file(path: Path, main_file: str, flags: Sequence[str], cc: Sequence[str]) -> Model:
    """Preprocess and parse the file; ``main_file`` is its presumed name (from its #line)."""
    main_file = escape(main_file)
    pre = preprocess(path, main_file, flags, cc)

    def syntax_check() -> tuple[bool, str]:
        proc = run_cc([*cc, "-fsyntax-only", *flags, "-x", "c", str(path)], "check syntax")
        return proc.returncode != 0, proc.stderr.strip()

    ast = _parse_c(pre.text, main_file, pre, syntax_check)
    b = _Builder(ast, main_file, pre.system_files)
    b.walk()
    b.exported()
    enums, enum_types = _enum_consts(ast, main_file)
    macros = integer_macros(pre.macros, path, flags, cc, list(b.typedefs), set(enums)) \
        if pre.macros else []
    deps = [f for f in pre.files if f not in pre.system_files and f != main_file
            and not f.startswith("<") and Path(f).is_file()
            and Path(f).resolve() != path.resolve()]
    return Model(b.order, enums, [m for m in macros if m not in enums],
                 [str(Path(d).resolve()) for d in deps], enum_types)
