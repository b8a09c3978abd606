"""A small ctypes layer over Debian's ``libbpf.so.1``: only the calls runwatch uses.

Shared by the kernel sensor and the enforcers (through :mod:`runwatch.bpf.object`).

Each binding is declared once in ``_SIGNATURES`` with its result and argument types, so a
wrong call fails in ctypes rather than in the kernel. Functions returning pointers give
``None`` on failure with ``errno`` set (libbpf 1.x "strict" behaviour).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Any

vp = ctypes.c_void_p
c_int = ctypes.c_int
c_uint32 = ctypes.c_uint32

_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "bpf_object__open_file": (vp, [ctypes.c_char_p, vp]),
    "bpf_object__load": (c_int, [vp]),
    "bpf_object__close": (None, [vp]),
    "bpf_object__next_program": (vp, [vp, vp]),
    "bpf_object__next_map": (vp, [vp, vp]),
    "bpf_object__find_map_by_name": (vp, [vp, ctypes.c_char_p]),
    "bpf_program__name": (ctypes.c_char_p, [vp]),
    "bpf_program__section_name": (ctypes.c_char_p, [vp]),
    "bpf_program__set_autoload": (c_int, [vp, ctypes.c_bool]),
    "bpf_program__type": (c_int, [vp]),
    "bpf_program__expected_attach_type": (c_int, [vp]),
    "bpf_program__attach": (vp, [vp]),
    "bpf_program__attach_cgroup": (vp, [vp, c_int]),
    "bpf_program__fd": (c_int, [vp]),
    "bpf_link__destroy": (c_int, [vp]),
    "bpf_link__fd": (c_int, [vp]),
    "bpf_link__pin": (c_int, [vp, ctypes.c_char_p]),
    "bpf_link__unpin": (c_int, [vp]),
    "bpf_map__fd": (c_int, [vp]),
    "bpf_map__name": (ctypes.c_char_p, [vp]),
    "bpf_map__type": (c_int, [vp]),
    "bpf_map__key_size": (c_uint32, [vp]),
    "bpf_map__value_size": (c_uint32, [vp]),
    "bpf_map__set_max_entries": (c_int, [vp, c_uint32]),
    "bpf_map__max_entries": (c_uint32, [vp]),
    "bpf_map__set_initial_value": (c_int, [vp, vp, ctypes.c_size_t]),
    "bpf_map_update_elem": (c_int, [c_int, vp, vp, ctypes.c_uint64]),
    "bpf_map_lookup_elem": (c_int, [c_int, vp, vp]),
    "bpf_map_delete_elem": (c_int, [c_int, vp]),
    "bpf_map_get_next_key": (c_int, [c_int, vp, vp]),
    "libbpf_set_print": (vp, [vp]),
    "libbpf_num_possible_cpus": (c_int, []),
    "libbpf_bpf_prog_type_str": (ctypes.c_char_p, [c_int]),
    "libbpf_bpf_attach_type_str": (ctypes.c_char_p, [c_int]),
    "libbpf_bpf_map_type_str": (ctypes.c_char_p, [c_int]),
}

PRINT_FN = ctypes.CFUNCTYPE(c_int, c_int, ctypes.c_char_p, vp)


class LibbpfError(OSError):
    """A libbpf call failed; carries errno and a message naming the call."""


def _load() -> ctypes.CDLL:
    name = os.environ.get("RUNWATCH_LIBBPF") or ctypes.util.find_library("bpf") or "libbpf.so.1"
    lib = ctypes.CDLL(name, use_errno=True)
    for fn, (res, args) in _SIGNATURES.items():
        f = getattr(lib, fn)
        f.restype = res
        f.argtypes = args
    return lib


_lib: ctypes.CDLL | None = None


def lib() -> ctypes.CDLL:
    """The loaded libbpf (loaded on first use, so importing this module never fails)."""
    global _lib
    if _lib is None:
        _lib = _load()
    return _lib


def check_ptr(ptr: int | None, what: str) -> int:
    """Raise LibbpfError with errno if a pointer-returning call failed."""
    if not ptr:
        err = ctypes.get_errno() or 1
        raise LibbpfError(err, f"{what}: {os.strerror(err)}")
    return ptr


def check_rc(rc: int, what: str) -> None:
    """Raise LibbpfError if an int-returning call failed (libbpf returns -errno)."""
    if rc < 0:
        err = -rc if rc != -1 else (ctypes.get_errno() or 1)
        raise LibbpfError(err, f"{what}: {os.strerror(err)}")


def possible_cpus() -> int:
    """Number of possible CPUs: the number of values a per-CPU map lookup returns."""
    n: int = lib().libbpf_num_possible_cpus()
    return n if n > 0 else os.cpu_count() or 1


def type_name(kind: str, value: int) -> str:
    """libbpf's name for a program type, attach type or map type (``kind``: prog, attach, map).

    For example ``type_name("map", 27) == "ringbuf"``; unknown values give ``"unknown(N)"``.
    """
    fn = {"prog": "libbpf_bpf_prog_type_str", "attach": "libbpf_bpf_attach_type_str",
          "map": "libbpf_bpf_map_type_str"}[kind]
    name: bytes | None = getattr(lib(), fn)(value)
    return name.decode() if name else f"unknown({value})"


class LogCapture:
    """Collects libbpf's log lines (verifier output, warnings) instead of printing them.

    libbpf hands a printf format and a va_list; we render it with libc's vsnprintf.
    Not thread safe: use around one load at a time.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        libc = ctypes.CDLL(None)
        self._vsnprintf = libc.vsnprintf
        self._vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, vp]
        self._vsnprintf.restype = c_int
        self._cb = PRINT_FN(self._on_print)
        self._old: int | None = None

    def _on_print(self, level: int, fmt: bytes, args: int | None) -> int:
        buf = ctypes.create_string_buffer(2048)
        self._vsnprintf(buf, len(buf), fmt, args)
        self.lines.append(buf.value.decode(errors="replace").rstrip())
        return 0

    def __enter__(self) -> LogCapture:
        self._old = lib().libbpf_set_print(ctypes.cast(self._cb, vp))
        return self

    def __exit__(self, *exc: object) -> None:
        lib().libbpf_set_print(self._old)

    def tail(self, n: int = 6) -> str:
        """The last meaningful lines, joined for a one-line error."""
        useful = [ln for ln in self.lines if ln.strip()]
        return " | ".join(useful[-n:])
