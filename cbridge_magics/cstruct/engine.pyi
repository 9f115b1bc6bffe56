"""Types of cbridge_magics.cstruct.engine (compiled); see engine.pyx."""

from typing import Any

class Field:
    """One field of a struct class (a descriptor: the field's value on an instance)."""

    qualname: bytes
    ctype: bytes
    def __get__(self, obj: Any, objtype: type | None = None) -> Any: ...
    def __set__(self, obj: Any, value: Any) -> None: ...
    def __delete__(self, obj: Any) -> None: ...
