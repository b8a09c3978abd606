"""Helpers for ctypes mirrors of C structs shared with BPF programs.

A mirror (a ``ctypes.Structure``) is the single Python statement of a kernel layout;
decoders derive their ``struct`` formats from it with :func:`struct_of`, and the layout
tests compare :func:`field_offsets` with the BTF of the compiled object.
"""

from __future__ import annotations

import ctypes
import struct
from typing import Any

_CHARS: dict[Any, str] = {
    ctypes.c_uint8: "B", ctypes.c_uint16: "H", ctypes.c_uint32: "I", ctypes.c_uint64: "Q",
    ctypes.c_int32: "i", ctypes.c_int64: "q", ctypes.c_char: "s",
}


def _fmt(ctype: Any) -> str:
    """struct format for one ctypes field (flattening nested structs and arrays)."""
    if issubclass(ctype, ctypes.Structure):
        return "".join(_fmt(t) for _, t, *_ in ctype._fields_)
    if issubclass(ctype, ctypes.Array):
        elem: Any = ctype._type_
        length: int = ctype._length_
        if elem is ctypes.c_char or elem is ctypes.c_uint8:
            return f"{length}s"
        if issubclass(elem, ctypes.Array) and elem._type_ is ctypes.c_char:
            return f"{elem._length_}s" * length
        return _CHARS[elem] * length
    return _CHARS[ctype]


def struct_of(record: type[ctypes.Structure]) -> struct.Struct:
    """A little-endian ``struct.Struct`` equivalent to a mirror (sizes checked)."""
    st = struct.Struct("<" + _fmt(record))
    if st.size != ctypes.sizeof(record):
        raise AssertionError(f"{record.__name__}: struct size {st.size} != ctypes {ctypes.sizeof(record)}")
    return st


def field_offsets(record: type[ctypes.Structure]) -> list[tuple[str, int]]:
    """(field name, byte offset) of each top-level field, in declaration order."""
    return [(name, getattr(record, name).offset) for name, *_ in record._fields_]
