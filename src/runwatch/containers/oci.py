"""Container options and the OCI runtime ``config.json`` generated from them, as plain data.

Nothing here touches the machine: :func:`build_oci_config` is a pure function from
:class:`ContainerOptions` (plus the bundle's runtime facts) to the dict ``runc`` reads, so
the shape of a container can be checked without root.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runwatch.containers.rootfs import Rootfs

ANNOTATION_NAME = "runwatch.container.name"
ANNOTATION_ID = "runwatch.container.id"
ANNOTATION_POD_NAME = "io.kubernetes.pod.name"
ANNOTATION_POD_NAMESPACE = "io.kubernetes.pod.namespace"
ANNOTATION_OWNER = "runwatch.owner"
"""``<pid>:<start ticks>`` of the process that made the container (to find stale ones)."""
SECRETS_DIR = "/run/secrets"

DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
"""The capability set Docker gives a container by default."""

ALL_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
"""Every capability of Linux 5.9+ in bit order (index = capability number)."""

SECCOMP_DENIED_SYSCALLS: tuple[str, ...] = (
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "delete_module",
    "finit_module",
    "init_module",
    "iopl",
    "ioperm",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "open_by_handle_at",
    "perf_event_open",
    "quotactl",
    "reboot",
    "request_key",
    "settimeofday",
    "swapoff",
    "swapon",
    "uselib",
    "userfaultfd",
    "ustat",
)
"""Syscalls the default seccomp profile refuses with EPERM (a subset of Docker's denials).

Privilege syscalls that capabilities already gate (mount, setns, unshare, ptrace, setuid)
stay allowed so that ``sys_admin=True`` or added capabilities make them work.
"""

_SECRET_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
_CONTAINER_PATH_NOT_ABSOLUTE = "must be an absolute path inside the container"


@dataclass(frozen=True)
class Bind:
    """A host path bind-mounted into the container (read-only unless ``readonly`` is False)."""

    source: Path
    destination: str
    readonly: bool = True


@dataclass(frozen=True, kw_only=True)
class ContainerOptions:
    """Everything that shapes one container; validated by :meth:`validate`.

    Network: by default the container shares the host network namespace (host loopback
    listeners are reachable); ``netns`` joins an existing namespace by path (for example
    ``/run/netns/NAME``); ``isolated_network`` gives a fresh namespace with only loopback.
    Capabilities: ``capabilities`` replaces :data:`DEFAULT_CAPABILITIES`, ``add_capabilities``
    extends it, ``sys_admin`` adds CAP_SYS_ADMIN; ``privileged`` grants every capability,
    turns seccomp off and unmasks /proc paths.
    """

    name: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    pod_name: str | None = None
    pod_namespace: str | None = None
    secrets: Mapping[str, bytes] = field(default_factory=dict)
    binds: Sequence[Bind] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "/"
    uid: int = 0
    gid: int | None = None
    capabilities: Sequence[str] | None = None
    add_capabilities: Sequence[str] = ()
    sys_admin: bool = False
    privileged: bool = False
    seccomp: bool = True
    no_new_privileges: bool = False
    netns: str | Path | None = None
    isolated_network: bool = False
    hostname: str | None = None
    readonly_rootfs: bool = True
    host_binds: bool = True

    def validate(self) -> None:
        """Raise ValueError with a one-line reason if any option is unusable."""
        for key, secret in self.secrets.items():
            if not _SECRET_NAME.match(key) or key in (".", ".."):
                raise ValueError(f"secret name {key!r} must match [A-Za-z0-9._-]+ (it becomes a file name)")
            if not isinstance(secret, bytes | bytearray):
                raise ValueError(f"secret {key!r} must be bytes, got {type(secret).__name__}")
        for bind in self.binds:
            if not isinstance(bind, Bind):
                raise ValueError(f"bind {bind!r} must be a runwatch.containers.oci.Bind")
            if not bind.destination.startswith("/"):
                raise ValueError(f"bind destination {bind.destination!r} {_CONTAINER_PATH_NOT_ABSOLUTE}")
            if not Path(bind.source).exists():
                raise ValueError(f"bind source {bind.source} does not exist")
        if not self.cwd.startswith("/"):
            raise ValueError(f"cwd {self.cwd!r} {_CONTAINER_PATH_NOT_ABSOLUTE}")
        for label, ident in (("uid", self.uid), ("gid", self.gid)):
            if ident is not None and not 0 <= ident < 2**32 - 1:
                raise ValueError(f"{label} {ident} is out of range")
        for cap in (*(self.capabilities or ()), *self.add_capabilities):
            if cap not in ALL_CAPABILITIES:
                raise ValueError(f"unknown capability {cap!r} (expected a name such as CAP_SYS_ADMIN)")
        for key in self.env:
            if not key or "=" in key or "\0" in key:
                raise ValueError(f"environment variable name {key!r} is invalid")
        if self.netns is not None and self.isolated_network:
            raise ValueError("netns and isolated_network are mutually exclusive")
        if self.netns is not None and not Path(self.netns).exists():
            raise ValueError(f"network namespace {self.netns} does not exist")

    def effective_capabilities(self, available: Sequence[str] | None = None) -> list[str]:
        """The capability names the container process gets, in a stable order.

        ``available`` is the caller's own bounding set: a privileged container gets every
        capability in it (a capability the runtime lacks cannot be granted; root here lacks
        CAP_SYS_RESOURCE, for example). Explicitly requested capabilities are not filtered.
        """
        if self.privileged:
            return [c for c in ALL_CAPABILITIES if available is None or c in available]
        caps = list(self.capabilities if self.capabilities is not None else DEFAULT_CAPABILITIES)
        extra = [*self.add_capabilities, *(["CAP_SYS_ADMIN"] if self.sys_admin else [])]
        caps.extend(c for c in extra if c not in caps)
        return caps


def build_oci_config(
    options: ContainerOptions,
    *,
    rootfs: Rootfs,
    args: Sequence[str],
    container_id: str,
    cgroups_path: str,
    secret_files: Mapping[str, Path],
    available_capabilities: Sequence[str] | None = None,
    owner: str | None = None,
) -> dict[str, Any]:
    """The OCI runtime config (``config.json`` content) for one container run.

    ``secret_files`` maps each secret name to the host file holding its bytes; each is
    bound read-only at ``/run/secrets/<name>``. ``available_capabilities`` bounds what a
    privileged container gets (see :meth:`ContainerOptions.effective_capabilities`).
    ``owner`` is recorded as the :data:`ANNOTATION_OWNER` annotation.
    Mount order is the list order: later mounts land on top of earlier ones.
    """
    if not args:
        raise ValueError("container command must not be empty")
    gid = options.gid if options.gid is not None else options.uid
    caps = options.effective_capabilities(available_capabilities)
    process: dict[str, Any] = {
        "terminal": False,
        "user": {"uid": options.uid, "gid": gid},
        "args": [str(a) for a in args],
        "env": [f"{k}={v}" for k, v in _environment(options, rootfs).items()],
        "cwd": options.cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": []},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": options.no_new_privileges and not options.privileged,
    }
    namespaces: list[dict[str, str]] = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if options.isolated_network:
        namespaces.append({"type": "network"})
    elif options.netns is not None:
        namespaces.append({"type": "network", "path": str(options.netns)})

    linux: dict[str, Any] = {
        "cgroupsPath": cgroups_path,
        "namespaces": namespaces,
        "resources": {"devices": [{"allow": options.privileged, "access": "rwm"}]},
    }
    if not options.privileged:
        linux["maskedPaths"] = [
            "/proc/acpi",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware",
        ]
        linux["readonlyPaths"] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
    if options.seccomp and not options.privileged:
        linux["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": list(SECCOMP_DENIED_SYSCALLS), "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            ],
        }

    return {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": str(rootfs.path), "readonly": options.readonly_rootfs},
        "hostname": options.hostname or options.name or container_id,
        "mounts": _mounts(options, rootfs, secret_files),
        "annotations": _annotations(options, container_id, owner),
        "linux": linux,
    }


def _environment(options: ContainerOptions, rootfs: Rootfs) -> dict[str, str]:
    """Default environment (PATH, HOME, PYTHONPATH, ...) overlaid with ``options.env``."""
    env = {
        "PATH": rootfs.default_path_env(),
        "HOME": "/root" if options.uid == 0 else "/home/user",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if options.host_binds and rootfs.src_dir is not None:
        env["PYTHONPATH"] = str(rootfs.src_dir)
    env.update(options.env)
    return env


def _annotations(options: ContainerOptions, container_id: str, owner: str | None) -> dict[str, str]:
    annotations = {ANNOTATION_ID: container_id}
    if owner is not None:
        annotations[ANNOTATION_OWNER] = owner
    if options.name is not None:
        annotations[ANNOTATION_NAME] = options.name
    if options.pod_name is not None:
        annotations[ANNOTATION_POD_NAME] = options.pod_name
    if options.pod_namespace is not None:
        annotations[ANNOTATION_POD_NAMESPACE] = options.pod_namespace
    annotations.update(options.annotations)
    return annotations


def _bind(source: Path | str, destination: str, readonly: bool) -> dict[str, Any]:
    # No nosuid: a setuid binary on a bound host path must behave as it does on the host.
    opts = ["rbind", "ro" if readonly else "rw"]
    return {"destination": destination, "type": "bind", "source": str(source), "options": opts}


def _mounts(
    options: ContainerOptions, rootfs: Rootfs, secret_files: Mapping[str, Path]
) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
        {
            "destination": "/tmp",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777"],
        },
        {
            "destination": "/run",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=755"],
        },
    ]
    if options.host_binds:
        # /usr first: the prefix, src and venv binds may sit anywhere, including under /usr.
        mounts.extend(_bind(p, str(p), True) for p in rootfs.host_binds)
    for name, host_file in sorted(secret_files.items()):
        mounts.append(_bind(host_file, f"{SECRETS_DIR}/{name}", True))
    mounts.extend(_bind(b.source, b.destination, b.readonly) for b in options.binds)
    return mounts


def capabilities_from_mask(mask: int) -> list[str]:
    """Capability names for the bits set in ``mask`` (as in /proc/<pid>/status ``CapBnd``)."""
    return [name for bit, name in enumerate(ALL_CAPABILITIES) if mask >> bit & 1]
