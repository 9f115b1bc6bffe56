"""A form for one struct class, made from its layout: one input per field, read back as an instance.

    form = Form(Command, choices={"op": "DEMO_OP_"}, constants=ns)
    form.box             # the ipywidgets layout to show
    form.value           # Command(...) from what the inputs hold; ValueError names a bad field
    form.value = Command(op=1)      # fills the inputs

What each field gets:
- integers: a bounded integer input with the C type's range (64-bit ones, which a browser's numbers
  cannot hold exactly, a text box checked against the range);
- a bit-field: a checkbox if it is one bit wide (unsigned), else a bounded integer input with its
  width's range;
- float and double: a float input; bool: a checkbox;
- a char array: a text box, at most its length in bytes;
- a numeric array: a text box of comma-separated values, checked for count and each value;
- a nested struct: a labelled group of its own fields;
- a field whose C type is an enum (from the compiled module, or from the driver's HELLO for a
  schema-built class), or one named in ``choices``: a dropdown of constant names.
Arrays of structs cannot be edited here: they keep the value last set through ``form.value``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..cstruct import bitfields
from ..cstruct.runtime import field_specs
from .threads import free_routing

_LABEL_WIDTH = "150px"


def enum_constants(cls: type, ctype: str, name: str | None = None) -> dict[str, int]:
    """The constants of a field's enum type (name -> value): from the class's compiled module, or
    for a class built from a driver's schema, from its HELLO."""
    schema = getattr(cls, "_cb_enums", None)
    if schema is not None:
        return dict(schema.get(name, {}))
    module = sys.modules.get(cls.__module__)
    key = f"{cls.__name__}.{name}" if ctype == "enum" else ctype  # an anonymous enum's field
    names = getattr(module, "__enums__", {}).get(key, [])
    values = getattr(module, "__cstruct__", {})
    return {n: values[n] for n in names if isinstance(values.get(n), int)}


def prefixed(constants: Mapping[str, Any], prefix: str) -> dict[str, int]:
    """Integer constants whose names start with ``prefix``, in their order."""
    return {k: int(v) for k, v in constants.items() if k.startswith(prefix)
            and isinstance(v, (int, np.integer)) and not isinstance(v, bool)}


def _fields(cls: type) -> list[tuple[str, str, str, Any]]:
    """(name, kind, ctype, nested class) of each field: the compiled tables, or, for a class built
    from a driver's schema, its dtype (a bit-field's kind is "bits" there)."""
    specs = field_specs(cls)
    if specs is not None:
        return [(f[0], "bits" if f[5] else f[1], f[2], f[3]) for f in specs]
    out = []
    for f in cls.__layout__["fields"]:
        if f.get("bit_width") is not None:
            out.append((f["name"], "bits", f["ctype"], None))
            continue
        base = cls.dtype.fields[f["name"]][0].base
        kind = {"f": "float", "b": "bool", "S": "char", "V": "struct"}.get(base.kind, "int")
        out.append((f["name"], kind, f["ctype"], None))
    return out


class _Field:
    """One field's input: ``get()`` gives a value for the struct, ``set(v)`` shows one."""

    def __init__(self, name: str, widget: Any) -> None:
        self.name, self.widget = name, widget

    def get(self) -> Any:
        return self.widget.value

    def set(self, value: Any) -> None:
        self.widget.value = value


class _IntField(_Field):
    def __init__(self, name: str, dtype: np.dtype, ctype: str,
                 bounds: tuple[int, int] | None = None) -> None:
        import ipywidgets as w

        info = np.iinfo(dtype)
        self.lo, self.hi = bounds or (int(info.min), int(info.max))
        self.ctype = ctype
        # A browser's numbers are doubles: exact up to 2**53, so wider fields are typed as text.
        self.exact = -(1 << 53) <= self.lo and self.hi <= 1 << 53
        if self.exact:
            widget = w.BoundedIntText(value=0, min=self.lo, max=self.hi, description=name)
        else:
            widget = w.Text(value="0", description=name, placeholder=f"{self.lo} .. {self.hi}")
        super().__init__(name, widget)

    def get(self) -> int:
        raw = self.widget.value
        try:
            value = int(str(raw).strip(), 0)
        except ValueError:
            raise ValueError(f"{self.name}: {raw!r} is not an integer") from None
        if not self.lo <= value <= self.hi:
            raise ValueError(f"{self.name}: {value} is out of range for {self.ctype} "
                             f"({self.lo} .. {self.hi})")
        return value

    def set(self, value: Any) -> None:
        self.widget.value = int(value) if self.exact else str(int(value))


class _FlagField(_Field):
    """A one-bit bit-field: a checkbox, read back as 0 or 1."""

    def __init__(self, name: str) -> None:
        import ipywidgets as w

        super().__init__(name, w.Checkbox(value=False, description=name, indent=True))

    def get(self) -> int:
        return int(bool(self.widget.value))

    def set(self, value: Any) -> None:
        self.widget.value = bool(value)


class _ChoiceField(_Field):
    def __init__(self, name: str, options: Mapping[str, int], dtype: np.dtype) -> None:
        import ipywidgets as w

        self.dtype = dtype
        opts = list(options.items())
        super().__init__(name, w.Dropdown(options=opts, value=opts[0][1] if opts else None,
                                          description=name))

    def get(self) -> int:
        if self.widget.value is None:
            raise ValueError(f"{self.name}: nothing chosen")
        return int(self.widget.value)

    def set(self, value: Any) -> None:
        value = int(value)
        if value not in [v for _, v in self.widget.options]:
            # a value with no name (set from Python) is shown as itself, never lost
            self.widget.options = [*self.widget.options, (str(value), value)]
        self.widget.value = value


class _CharArrayField(_Field):
    def __init__(self, name: str, size: int) -> None:
        import ipywidgets as w

        self.size = size
        super().__init__(name, w.Text(value="", description=name,
                                      placeholder=f"at most {size} bytes"))

    def get(self) -> bytes:
        data = self.widget.value.encode()
        if len(data) > self.size:
            raise ValueError(f"{self.name}: holds at most {self.size} bytes, got {len(data)}")
        return data

    def set(self, value: Any) -> None:
        data = bytes(value).split(b"\0", 1)[0]
        self.widget.value = data.decode(errors="replace")


class _ArrayField(_Field):
    def __init__(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        import ipywidgets as w

        self.shape, self.dtype = shape, dtype
        self.count = int(np.prod(shape))
        super().__init__(name, w.Text(value="", description=name,
                                      placeholder=f"{self.count} values, comma-separated "
                                                  "(empty: all 0)"))

    def get(self) -> np.ndarray:
        text = self.widget.value.strip()
        if not text:
            return np.zeros(self.shape, self.dtype)
        parts = [p.strip() for p in text.replace(";", ",").split(",")]
        if len(parts) != self.count:
            raise ValueError(f"{self.name}: needs {self.count} values, got {len(parts)}")
        out = np.zeros(self.count, self.dtype)
        integer = self.dtype.kind in "iu"
        if integer:
            info = np.iinfo(self.dtype)
        for i, p in enumerate(parts):
            try:
                v = int(p, 0) if integer else float(p)
            except ValueError:
                raise ValueError(f"{self.name}[{i}]: {p!r} is not a "
                                 f"{'an integer' if integer else 'number'}") from None
            if integer and not info.min <= v <= info.max:
                raise ValueError(f"{self.name}[{i}]: {v} is out of range for {self.dtype} "
                                 f"({info.min} .. {info.max})")
            out[i] = v
        return out.reshape(self.shape)

    def set(self, value: Any) -> None:
        flat = np.asarray(value).reshape(-1)
        self.widget.value = "" if not flat.any() else ", ".join(
            repr(v) if isinstance(v, float) else str(v) for v in flat.tolist())


class _KeptField(_Field):
    """A field the form cannot edit (an array of structs): shown as a note, kept as set."""

    def __init__(self, name: str, note: str) -> None:
        import ipywidgets as w

        self.value: Any = None
        super().__init__(name, w.HTML(f"<i>{name}: {note}; set it with panel.value</i>"))

    def get(self) -> Any:
        return self.value

    def set(self, value: Any) -> None:
        self.value = value


class Form:
    """The inputs for one struct class (see the module docstring)."""

    def __init__(self, cls: type, choices: Mapping[str, Any] | None = None,
                 constants: Mapping[str, Any] | None = None, title: str | None = None) -> None:
        import ipywidgets as w

        self.cls, self.title = cls, title
        choices = dict(choices or {})
        constants = dict(constants if constants is not None
                         else getattr(sys.modules.get(cls.__module__), "__cstruct__", {}))
        self.fields: list[tuple[_Field | Form, bool]] = []  # (input, is a nested form)
        rows = []
        for name, kind, ctype, nested in _fields(cls):
            item: _Field | Form
            if kind == "bits":
                item = self._bits_input(cls, name, ctype, choices, constants)
                item.widget.style = {"description_width": _LABEL_WIDTH}
                item.widget.layout = w.Layout(width="420px")
                rows.append(item.widget)
                self.fields.append((item, False))
                continue
            ftype = cls.dtype.fields[name][0]
            base, shape = ftype.base, ftype.shape
            if kind == "struct" and not shape and nested is not None:
                item = Form(nested, {k.split(".", 1)[1]: v for k, v in choices.items()
                                     if k.startswith(name + ".")}, constants, title=name)
                rows.append(item.box)
                self.fields.append((item, True))
                continue
            if kind == "struct":
                item = _KeptField(name, f"an array {shape} of {ctype}")
            elif kind == "char" and base.kind == "S" and base.itemsize > 1:
                item = _CharArrayField(name, base.itemsize * int(np.prod(shape)) if shape else
                                       base.itemsize)
            elif shape:
                item = _ArrayField(name, shape, base)
            elif name in choices:
                options = choices[name]
                if isinstance(options, str):
                    options = prefixed(constants, options)
                if not options:
                    raise ValueError(f"choices for {cls.__name__}.{name}: no integer constants "
                                     f"named {choices[name]!r}... here")
                item = _ChoiceField(name, options, base)
            elif enum_constants(cls, ctype, name):
                item = _ChoiceField(name, enum_constants(cls, ctype, name), base)
            elif kind == "float":
                item = _Field(name, w.FloatText(value=0.0, description=name))
            elif kind == "bool":
                item = _Field(name, w.Checkbox(value=False, description=name, indent=True))
            elif kind == "char":
                item = _IntField(name, np.dtype("i1"), "char")
            else:
                item = _IntField(name, base, ctype)
            item.widget.style = {"description_width": _LABEL_WIDTH}
            item.widget.layout = w.Layout(width="420px")
            rows.append(item.widget)
            self.fields.append((item, False))
        if title:  # a nested struct: a labelled group
            header = w.HTML(f"<b>{title}</b> <small>({cls.__name__})</small>")
            self.box = w.VBox([header, *rows], layout=w.Layout(
                border="1px solid var(--jp-border-color2, #ccc)", padding="2px 6px"))
        else:
            self.box = w.VBox(rows)

    @staticmethod
    def _bits_input(cls: type, name: str, ctype: str, choices: Mapping[str, Any],
                    constants: Mapping[str, Any]) -> _Field:
        b, _ = bitfields.find(cls.__layout__, name)
        assert b is not None
        options = choices.get(name)
        if isinstance(options, str):
            options = prefixed(constants, options)
        options = options or enum_constants(cls, ctype, name)
        if options:
            return _ChoiceField(name, options, np.dtype("i8"))
        if b.width == 1 and not b.signed:
            return _FlagField(name)
        return _IntField(name, np.dtype("i8" if b.signed else "u8"), f"{ctype} : {b.width}",
                         b.range)

    @property
    def value(self) -> Any:
        """The struct instance the inputs describe; ValueError names the first bad field."""
        values: dict[str, Any] = {}
        for item, nested in self.fields:
            try:
                values[_name(item)] = item.value if nested else item.get()
            except ValueError as e:
                raise ValueError(f"{self.cls.__name__}.{e}") from None
        values = {k: v for k, v in values.items() if v is not None}
        try:
            return self.cls(**values)
        except (ValueError, TypeError, OverflowError) as e:
            raise ValueError(f"{self.cls.__name__}: {e}") from None

    @value.setter
    def value(self, obj: Any) -> None:
        self._fill(obj)
        free_routing(self.inputs())

    def inputs(self) -> list[Any]:
        """Every input widget of the form, nested groups included."""
        out = []
        for item, nested in self.fields:
            out.extend(item.inputs() if nested else [item.widget])
        return out

    def _fill(self, obj: Any) -> None:
        if not isinstance(obj, self.cls):
            layout = getattr(type(obj), "__layout__", None)
            if layout != self.cls.__layout__:
                raise TypeError(f"this form is for {self.cls.__name__}, not {type(obj).__name__}")
        for item, nested in self.fields:
            value = getattr(obj, _name(item))
            if nested:
                item._fill(value)
            else:
                item.set(value)


def _name(item: "_Field | Form") -> str:
    return item.title if isinstance(item, Form) else item.name
