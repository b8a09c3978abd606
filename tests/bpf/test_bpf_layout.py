"""Both BPF objects match their declarations: structs (BTF), program sections and types, map types and sizes."""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from runwatch.bpf.layout import field_offsets, struct_of
from runwatch.bpf.libbpf import lib, possible_cpus, type_name
from runwatch.bpf.object import BpfObject
from runwatch.bpf.spec import ObjectSpec
from runwatch.policy.enforce import bpfobj
from runwatch.sensors.kernel import layout as L
from runwatch.sensors.kernel import loader

SPECS: dict[str, ObjectSpec] = {"sensor": loader.SPEC, "enforce": bpfobj.SPEC}
STRUCTS = [(obj, name) for obj, spec in SPECS.items() for name in sorted(spec.structs)]


def _btf_structs(spec: ObjectSpec) -> dict[str, dict]:  # type: ignore[type-arg]
    path = spec.path()
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/install.sh")
    bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    out = subprocess.run([bpftool, "-j", "btf", "dump", "file", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return {t["name"]: t for t in json.loads(out)["types"]
            if t["kind"] == "STRUCT" and t["name"].startswith(spec.struct_prefix)}


@pytest.fixture(scope="module")
def btf() -> dict[str, dict[str, dict]]:  # type: ignore[type-arg]
    return {obj: _btf_structs(spec) for obj, spec in SPECS.items()}


@pytest.fixture(scope="module", params=sorted(SPECS))
def opened(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    spec = SPECS[request.param]
    obj = BpfObject(spec.path())
    yield spec, obj
    obj.close()


@pytest.mark.parametrize(("obj", "name"), STRUCTS, ids=[f"{o}-{n}" for o, n in STRUCTS])
def test_struct_mirror_matches_btf(btf, obj, name):  # type: ignore[no-untyped-def]
    mirror = SPECS[obj].structs[name]
    assert name in btf[obj], f"struct {name} is not in the BTF of {SPECS[obj].name}"
    struct = btf[obj][name]
    assert struct["size"] == ctypes.sizeof(mirror)
    assert field_offsets(mirror) == [(m["name"], m["bits_offset"] // 8) for m in struct["members"]]


def test_sensor_decoder_formats_have_the_record_sizes(btf):  # type: ignore[no-untyped-def]
    for name, mirror in L.RECORDS.items():
        if name != "rw_config":
            assert struct_of(mirror).size == btf["sensor"][name]["size"], name


@pytest.mark.parametrize("obj", sorted(SPECS))
def test_every_header_struct_has_a_mirror(btf, obj):  # type: ignore[no-untyped-def]
    spec = SPECS[obj]
    header = spec.header_path().read_text()
    declared = set(re.findall(rf"^struct ({spec.struct_prefix}[a-z0-9_]+) \{{", header, re.M))
    assert declared == set(spec.structs)
    assert declared <= set(btf[obj])


def test_programs_match_their_declarations(opened):  # type: ignore[no-untyped-def]
    spec, obj = opened
    assert set(obj.programs) == {p.name for p in spec.programs}
    for name, prog in obj.programs.items():
        decl = spec.program(name)
        assert lib().bpf_program__section_name(prog).decode() == decl.section, name
        assert type_name("prog", lib().bpf_program__type(prog)) == decl.prog_type, name
        attach = lib().bpf_program__expected_attach_type(prog)
        if decl.attach_type is None:
            assert attach == 0, name
        else:
            assert type_name("attach", attach) == decl.attach_type, name


def test_maps_match_their_declarations(opened):  # type: ignore[no-untyped-def]
    spec, obj = opened
    found = {}
    for name, m in obj.maps.items():
        # libbpf names the read-only globals map after the object ("runwatc.rodata").
        key = name[name.index("."):] if "." in name else name
        found[key] = (type_name("map", lib().bpf_map__type(m)), lib().bpf_map__key_size(m),
                      lib().bpf_map__value_size(m), lib().bpf_map__max_entries(m))
    assert found == {d.name: (d.map_type, d.key_size, d.value_size, d.max_entries) for d in spec.maps}


def test_sensor_program_table_is_the_object_spec():
    assert [(p.name, p.hook) for p in loader.PROGRAMS] == [(p.name, p.section) for p in loader.SPEC.programs]


def test_enforcer_program_names_are_declared():
    assert bpfobj.EGRESS_PROGRAMS == ("enf_connect4", "enf_connect6", "enf_sendmsg4", "enf_sendmsg6",
                                      "enf_sock_create")
    assert bpfobj.SYSCALL_PROGRAMS == ("enf_sys_enter", "enf_uring_socket")
    assert {*bpfobj.EGRESS_PROGRAMS, *bpfobj.SYSCALL_PROGRAMS, bpfobj.EXEC_PROGRAM, bpfobj.HOLD_PROGRAM} == {
        p.name for p in bpfobj.SPEC.programs}


def test_kind_enum_matches_header():
    header = loader.SPEC.header_path().read_text()
    for kind in L.Kind:
        assert f"RW_{kind.name} = {kind.value}," in header


def test_per_cpu_values_are_one_per_possible_cpu():
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()  # e.g. "0-1" or "0,2-5"
    expected = sum(int(hi or lo) - int(lo) + 1 for lo, _, hi in (part.partition("-") for part in text.split(",")))
    assert possible_cpus() == expected
