"""The Python decoder's record layouts match the BTF of the built BPF object."""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess

import pytest

from runwatch.sensors.kernel import layout as L
from runwatch.sensors.kernel.loader import PROGRAMS, object_path


@pytest.fixture(scope="module")
def btf_structs() -> dict[str, dict]:
    obj = object_path()
    if not obj.exists():
        pytest.fail(f"{obj} is missing: run scripts/install.sh")
    bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    out = subprocess.run([bpftool, "-j", "btf", "dump", "file", str(obj)], capture_output=True, text=True,
                         check=True).stdout
    types = json.loads(out)["types"]
    return {t["name"]: t for t in types if t["kind"] == "STRUCT" and t["name"].startswith("rw_")}


@pytest.mark.parametrize("name", sorted(L.RECORDS))
def test_record_layout_matches_btf(btf_structs, name):
    mirror = L.RECORDS[name]
    assert name in btf_structs, f"struct {name} is not in the object's BTF"
    btf = btf_structs[name]
    assert btf["size"] == ctypes.sizeof(mirror)
    btf_fields = [(m["name"], m["bits_offset"] // 8) for m in btf["members"]]
    py_fields = [(f, getattr(mirror, f).offset) for f, *_ in mirror._fields_]
    assert py_fields == btf_fields
    assert L.struct_of(mirror).size == btf["size"] or name == "rw_config"


def test_every_struct_in_the_header_has_a_mirror(btf_structs):
    header = (object_path().parent.parent / "runwatch.h").read_text()
    declared = set(re.findall(r"^struct (rw_[a-z0-9_]+) \{", header, re.M))
    assert declared == set(L.RECORDS)
    assert declared <= set(btf_structs)


def test_program_table_matches_the_object():
    from runwatch.sensors.kernel.loader import BpfObject

    obj = BpfObject(object_path())
    try:
        assert set(obj.programs) == {p.name for p in PROGRAMS}
    finally:
        obj.close()


def test_kind_enum_matches_header():
    header = (object_path().parent.parent / "runwatch.h").read_text()
    for kind in L.Kind:
        assert f"RW_{kind.name} = {kind.value}," in header
