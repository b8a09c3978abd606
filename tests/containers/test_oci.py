"""The OCI config generated from ContainerOptions (pure data, no runc needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runwatch.containers.oci import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    Bind,
    ContainerOptions,
    build_oci_config,
    capabilities_from_mask,
)
from runwatch.containers.rootfs import Rootfs

ROOTFS = Rootfs(
    path=Path("/var/lib/runwatch/rootfs/base"),
    python_prefix=Path("/opt/py"),
    src_dir=Path("/src"),
    host_binds=(Path("/usr"), Path("/opt/py"), Path("/src")),
)


def config(options: ContainerOptions, secret_files: dict[str, Path] | None = None) -> dict[str, object]:
    return build_oci_config(
        options,
        rootfs=ROOTFS,
        args=["/bin/sh", "-c", "true"],
        container_id="rw-0123456789ab",
        cgroups_path="/runwatch/rw-0123456789ab",
        secret_files=secret_files or {},
        available_capabilities=["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_KILL"],
    )


def test_defaults_share_host_network_and_use_docker_caps() -> None:
    cfg = config(ContainerOptions(name="web"))
    linux = cfg["linux"]
    assert isinstance(linux, dict)
    assert [ns["type"] for ns in linux["namespaces"]] == ["pid", "ipc", "uts", "mount"]
    assert linux["cgroupsPath"] == "/runwatch/rw-0123456789ab"
    assert linux["seccomp"]["syscalls"][0]["action"] == "SCMP_ACT_ERRNO"
    process = cfg["process"]
    assert isinstance(process, dict)
    assert process["capabilities"]["bounding"] == list(DEFAULT_CAPABILITIES)
    assert "PATH=/opt/py/bin:/usr/local/bin:/usr/bin:/bin" in process["env"]
    assert "PYTHONPATH=/src" in process["env"]
    assert cfg["annotations"] == {
        "runwatch.container.id": "rw-0123456789ab",
        "runwatch.container.name": "web",
    }
    assert cfg["hostname"] == "web"


def test_netns_path_secrets_binds_and_privileged() -> None:
    options = ContainerOptions(
        netns="/proc/self/ns/net",
        privileged=True,
        binds=[Bind(Path("/tmp"), "/data", readonly=False)],
        annotations={"io.kubernetes.pod.name": "p"},
    )
    cfg = config(options, {"token": Path("/b/secrets/token")})
    linux = cfg["linux"]
    assert isinstance(linux, dict)
    assert linux["namespaces"][-1] == {"type": "network", "path": "/proc/self/ns/net"}
    assert "seccomp" not in linux and "maskedPaths" not in linux
    assert cfg["process"]["capabilities"]["effective"] == ["CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"]  # type: ignore[index]
    mounts = cfg["mounts"]
    assert isinstance(mounts, list)
    by_dest = {m["destination"]: m for m in mounts}
    assert by_dest["/run/secrets/token"] == {
        "destination": "/run/secrets/token",
        "type": "bind",
        "source": "/b/secrets/token",
        "options": ["rbind", "ro"],
    }
    assert by_dest["/data"]["options"] == ["rbind", "rw"]
    assert [m["destination"] for m in mounts].index("/usr") < [m["destination"] for m in mounts].index(
        "/opt/py"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ContainerOptions(secrets={"a/b": b""}), "secret name 'a/b'"),
        (ContainerOptions(cwd="tmp"), "cwd 'tmp' must be an absolute path"),
        (ContainerOptions(add_capabilities=["SYS_ADMIN"]), "unknown capability 'SYS_ADMIN'"),
        (ContainerOptions(netns="/nope/ns"), "network namespace /nope/ns does not exist"),
        (ContainerOptions(env={"A=B": "c"}), "environment variable name 'A=B' is invalid"),
    ],
)
def test_validation_messages(options: ContainerOptions, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        options.validate()


def test_capability_mask_decoding() -> None:
    assert capabilities_from_mask(0x200001) == ["CAP_CHOWN", "CAP_SYS_ADMIN"]
    assert capabilities_from_mask((1 << 41) - 1) == list(ALL_CAPABILITIES)
    assert ALL_CAPABILITIES[21] == "CAP_SYS_ADMIN"
