"""A BPF object declared as data: its programs, its maps and the structs it shares with C.

Each object runwatch ships has one :class:`ObjectSpec` next to the code that uses it (the
kernel sensor's in :mod:`runwatch.sensors.kernel.loader`, the enforcers' in
:mod:`runwatch.policy.enforce.bpfobj`). The layout tests check every field of it against
the compiled ``.o``: program sections and types, map types, key and value sizes and
maximum entries, and the struct mirrors against the object's BTF.

Type names are libbpf's (``libbpf_bpf_prog_type_str`` and friends): ``"tracing"``,
``"tracepoint"``, ``"cgroup_sock_addr"``; ``"trace_raw_tp"``, ``"cgroup_inet4_connect"``;
``"ringbuf"``, ``"hash"``, ``"lpm_trie"``. Everything here is immutable.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ProgramDecl:
    """One program: function name, ELF section, program type and expected attach type.

    ``attach_type`` is None for program types that have none (tracepoint programs).
    """

    name: str
    section: str
    prog_type: str
    attach_type: str | None = None


@dataclass(frozen=True)
class MapDecl:
    """One map: name, type, key and value sizes (bytes) and maximum entries as compiled.

    Ring buffers have key and value size 0 and ``max_entries`` in bytes.
    """

    name: str
    map_type: str
    key_size: int
    value_size: int
    max_entries: int


@dataclass(frozen=True)
class ObjectSpec:
    """A compiled BPF object: where it is, and what it must contain.

    ``locate`` returns the path of the built object (it may read the environment);
    ``header`` is the C header that declares the shared structs whose names start with
    ``struct_prefix``; ``structs`` maps each such BTF struct name to its ctypes mirror.
    """

    name: str
    locate: Callable[[], Path]
    header: str
    struct_prefix: str
    programs: tuple[ProgramDecl, ...]
    maps: tuple[MapDecl, ...]
    structs: Mapping[str, type[ctypes.Structure]] = field(default_factory=dict)

    def path(self) -> Path:
        """The built object's path."""
        return self.locate()

    def header_path(self) -> Path:
        """The C header next to the sources (the object is built into ``build/`` beside it)."""
        return self.locate().parent.parent / self.header

    def program(self, name: str) -> ProgramDecl:
        """The declaration of program ``name`` (KeyError if it is not declared)."""
        for prog in self.programs:
            if prog.name == name:
                return prog
        raise KeyError(name)
