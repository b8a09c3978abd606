"""The event table: every event kind, declared once.

Each :class:`KindSpec` says everything the rest of runwatch needs to know about one kind:
its public name, its group, its OCSF class and default activity, which :class:`Event`
attributes it carries (so which rule fields it can match), and, for kernel kinds, the ring
buffer record it comes from, the decoder family that reads that record, the BPF programs
that emit it and the syscalls (Falco ``evt.type`` names) it stands for.

Every other table is derived from :data:`TABLE`: ``events.KINDS``, the kernel loader's
program list, the kernel decoder's dispatch, the OCSF class mapping, rule-field
availability per kind, the Falco ``evt.type`` mapping and the AI-context join's activity
kinds. Adding a kind means adding one entry here, plus its decoder and tests.

Contract (add-only, like falcosecurity/libs ``event_table.c``): a kind is never renamed
or removed and its meaning never changes; a changed meaning is a new kind. This module
imports nothing from runwatch, so every layer can read it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Kind groups, in display order.
GROUPS: tuple[str, ...] = ("process", "network", "file", "privilege", "ai", "policy", "sensor")


OCSF_VERSION = "1.7.0"
"""The OCSF schema version the ``ocsf`` tuples below (and every OCSF record) follow."""

@dataclass(frozen=True, slots=True)
class Probe:
    """One BPF program of the kernel sensor: its function name and the hook it attaches to."""

    program: str
    hook: str


@dataclass(frozen=True, slots=True)
class KindSpec:
    """One event kind.

    ``ocsf`` is (class_uid, activity_id, activity_name); class 0 is OCSF's Base Event and an
    activity name of ``None`` means "the kind itself". ``carries`` lists the :class:`Event`
    attributes the kind fills beyond the common process fields (``file``, ``net``, ``ai``,
    ``exit_code``, ...). ``record`` is the member of ``enum rw_kind`` (``layout.Kind``) the
    kernel writes for it and ``decoder`` the decoder family in ``sensors/kernel/decode.py``
    that reads that record. ``activity`` marks kinds that count as workload activity for the
    tool-call join (they get ``tool_call``/``unattested``). ``stored`` is False for internal
    kinds that are consumed by enrichment and never reach a sink.
    """

    name: str
    group: str
    ocsf: tuple[int, int, str | None]
    carries: tuple[str, ...] = ()
    record: str | None = None
    decoder: str | None = None
    programs: tuple[Probe, ...] = ()
    syscalls: tuple[str, ...] = ()
    activity: bool = False
    stored: bool = True


def _tp(*names: str) -> tuple[Probe, ...]:
    """Syscall-entry tracepoint probes: ``rw_NAME`` on ``sys_enter_NAME``."""
    return tuple(Probe(f"rw_{n}", f"tracepoint/syscalls/sys_enter_{n}") for n in names)


def _tp_exit(*names: str) -> tuple[Probe, ...]:
    """Syscall-exit tracepoint probes: ``rw_NAME_exit`` on ``sys_exit_NAME``."""
    return tuple(Probe(f"rw_{n}_exit", f"tracepoint/syscalls/sys_exit_{n}") for n in names)


def _enter_exit(name: str) -> tuple[Probe, ...]:
    """A syscall watched on entry (arguments) and exit (result)."""
    return (Probe(f"rw_{name}_enter", f"tracepoint/syscalls/sys_enter_{name}"),
            Probe(f"rw_{name}_exit", f"tracepoint/syscalls/sys_exit_{name}"))


_OTHER = 99
_BASE = (0, _OTHER, None)

#: The event table. Order is the public order of ``events.KINDS`` (only ever append within
#: a group's run; readers must not depend on positions).
TABLE: tuple[KindSpec, ...] = (
    KindSpec("process.exec", "process", (1007, 1, "Launch"), record="EXEC", decoder="exec",
             programs=(Probe("rw_exec", "tp_btf/sched_process_exec"),), syscalls=("execve", "execveat"),
             activity=True),
    KindSpec("process.fork", "process", (1007, 1, "Launch"), ("child_pid",), record="FORK", decoder="fork",
             programs=(Probe("rw_fork", "tp_btf/sched_process_fork"),),
             syscalls=("clone", "clone3", "fork", "vfork")),
    KindSpec("process.exit", "process", (1007, 2, "Terminate"), ("exit_code", "signal"), record="EXIT",
             decoder="exit", programs=(Probe("rw_exit", "tp_btf/sched_process_exit"),), syscalls=("procexit",)),
    KindSpec("net.connect", "network", (4001, 1, "Open"), ("net",), record="CONNECT", decoder="net",
             programs=(*_enter_exit("connect"), Probe("rw_uring_connect", "tp_btf/io_uring_submit_req")),
             syscalls=("connect",), activity=True),
    KindSpec("net.accept", "network", (4001, 1, "Open"), ("net",), record="ACCEPT", decoder="net",
             programs=_tp_exit("accept4", "accept"), syscalls=("accept", "accept4"), activity=True),
    KindSpec("net.listen", "network", (4001, 7, "Listen"), ("net",), record="LISTEN", decoder="net",
             programs=_tp("listen"), syscalls=("listen",), activity=True),
    KindSpec("net.bind", "network", (4001, _OTHER, "Bind"), ("net",), record="BIND", decoder="net",
             programs=_enter_exit("bind"), syscalls=("bind",), activity=True),
    # dns.query: UDP questions sent to port 53 with any send call or write(), and DNS over TCP
    # (rw_connect_dns marks TCP sockets connecting to port 53).
    KindSpec("dns.query", "network", (4003, 1, "Query"), ("dns",), record="DNS", decoder="dns",
             programs=(*_tp("sendto", "sendmsg", "sendmmsg"),
                       Probe("rw_connect_dns", "tracepoint/syscalls/sys_enter_connect"),
                       Probe("rw_write_dns", "tracepoint/syscalls/sys_enter_write"),
                       Probe("rw_send_dns", "tracepoint/syscalls/sys_enter_sendto")), activity=True),
    KindSpec("file.open", "file", (1001, 14, "Open"), ("file",), record="OPEN", decoder="file",
             # exits only: the arguments are read from the saved registers there
             programs=(*_tp_exit("openat", "open", "openat2", "creat", "open_by_handle_at"),
                       Probe("rw_uring_open", "tp_btf/io_uring_complete")),
             syscalls=("open", "openat", "openat2", "creat", "open_by_handle_at"),
             activity=True),
    KindSpec("file.unlink", "file", (1001, 4, "Delete"), ("file",), record="UNLINK", decoder="file",
             programs=_tp("unlinkat", "unlink"), syscalls=("unlink", "unlinkat"), activity=True),
    KindSpec("file.rename", "file", (1001, 5, "Rename"), ("file",), record="RENAME", decoder="file",
             programs=_tp("renameat2", "renameat", "rename"), syscalls=("rename", "renameat", "renameat2"),
             activity=True),
    KindSpec("file.memfd", "file", (1001, 1, "Create"), ("file",), record="MEMFD", decoder="file",
             programs=(Probe("rw_memfd", "tracepoint/syscalls/sys_enter_memfd_create"),),
             syscalls=("memfd_create",), activity=True),
    KindSpec("priv.setuid", "privilege", (1007, 5, "Set User ID"), ("priv",), record="SETUID", decoder="priv",
             programs=_tp("setuid", "setreuid", "setresuid"), syscalls=("setuid", "setresuid", "setreuid"),
             activity=True),
    KindSpec("priv.setgid", "privilege", (1007, _OTHER, "Set Group ID"), ("priv",), record="SETGID",
             decoder="priv", programs=_tp("setgid", "setregid", "setresgid"),
             syscalls=("setgid", "setresgid", "setregid"), activity=True),
    KindSpec("priv.capset", "privilege", (1007, _OTHER, "Set Capabilities"), ("priv",), record="CAPSET",
             decoder="priv", programs=_tp("capset"), syscalls=("capset",), activity=True),
    # mount is a file-system operation: OCSF File System Activity has 12 Mount.
    KindSpec("priv.mount", "privilege", (1001, 12, "Mount"), ("priv",), record="MOUNT", decoder="priv",
             programs=_tp("mount"), syscalls=("mount",), activity=True),
    # ptrace gives the caller a handle on another process: Process Activity 3 Open.
    KindSpec("priv.ptrace", "privilege", (1007, 3, "Open"), ("priv",), record="PTRACE", decoder="priv",
             programs=_tp("ptrace"), syscalls=("ptrace",), activity=True),
    KindSpec("priv.unshare", "privilege", (1007, _OTHER, "Unshare Namespaces"), ("priv",), record="UNSHARE",
             decoder="priv", programs=_tp("unshare"), syscalls=("unshare",), activity=True),
    KindSpec("priv.setns", "privilege", (1007, _OTHER, "Enter Namespace"), ("priv",), record="SETNS",
             decoder="priv", programs=_tp("setns"), syscalls=("setns",), activity=True),
    # The AI layer (OCSF 1.7 has no AI profile): a tool call, a model call and a secret read are
    # API Activity (6003) of the agent, a plugin load Module Activity (1005) 1 Load.
    KindSpec("tool.start", "ai", (6003, _OTHER, "Tool Call Start"), ("tool_call", "ai", "decision")),
    KindSpec("tool.end", "ai", (6003, _OTHER, "Tool Call End"), ("tool_call", "ai")),
    KindSpec("model.call", "ai", (6003, _OTHER, "Model Call"), ("ai",)),
    KindSpec("plugin.load", "ai", (1005, 1, "Load"), ("ai",)),
    KindSpec("secret.access", "ai", (6003, 2, "Read"), ("ai",)),
    # API Activity (6003) for a tool call; the decision's layer refines it to the activity it
    # decided on (egress 4001, file 1001, exec 1007: outputs/ocsf.py).
    KindSpec("policy.decision", "policy", (6003, _OTHER, "Other"), ("decision", "tool_call", "ai")),
    KindSpec("sensor.notice", "sensor", _BASE),
    KindSpec("cgroup.mkdir", "sensor", _BASE, record="CGROUP_MKDIR", decoder="cgroup",
             programs=(Probe("rw_cgroup_mkdir", "tp_btf/cgroup_mkdir"),), stored=False),
    # file.link: path is the existing file, new_path the new name.
    KindSpec("file.link", "file", (1001, 1, "Create"), ("file",), record="LINK", decoder="file",
             programs=_tp("link", "linkat"), syscalls=("link", "linkat"), activity=True),
    # file.symlink: path is the target as written, new_path the link.
    KindSpec("file.symlink", "file", (1001, 1, "Create"), ("file",), record="SYMLINK", decoder="file",
             programs=_tp("symlink", "symlinkat"), syscalls=("symlink", "symlinkat"), activity=True),
    # chmod changes who may do what with the file: File System Activity 7 Set Security.
    KindSpec("file.chmod", "file", (1001, 7, "Set Security"), ("file",), record="CHMOD", decoder="file",
             programs=_tp("chmod", "fchmodat", "fchmodat2", "fchmod"),
             syscalls=("chmod", "fchmod", "fchmodat", "fchmodat2"), activity=True),
    KindSpec("file.mkdir", "file", (1001, 1, "Create"), ("file",), record="MKDIR", decoder="file",
             programs=_tp("mkdir", "mkdirat"), syscalls=("mkdir", "mkdirat"), activity=True),
    KindSpec("file.rmdir", "file", (1001, 4, "Delete"), ("file",), record="RMDIR", decoder="file",
             programs=_tp("rmdir"), syscalls=("rmdir",), activity=True),
    # net.socket: raw, packet and other unusual sockets (ordinary TCP/UDP show at connect/bind/send).
    KindSpec("net.socket", "network", (4001, _OTHER, "Create Socket"), ("net",), record="SOCKET",
             decoder="sock", programs=_tp_exit("socket"), syscalls=("socket",), activity=True),
    # net.redirect: a socket duplicated onto fd 0, 1 or 2 (a shell on a connection); from dup the
    # socket's own descriptor is not known (attrs socket_fd -1).
    KindSpec("net.redirect", "network", (4001, _OTHER, "Redirect Standard Stream"), ("net",),
             record="REDIRECT", decoder="sock", programs=_tp("dup2", "dup3") + _tp_exit("dup"),
             syscalls=("dup2", "dup3", "dup"), activity=True),
    # Kernel Extension Activity (1002) 1 Load: modules and BPF programs run in the kernel.
    KindSpec("priv.module_load", "privilege", (1002, 1, "Load"), ("priv",), record="MODULE_LOAD",
             decoder="priv", programs=_tp("init_module", "finit_module"),
             syscalls=("init_module", "finit_module"), activity=True),
    KindSpec("priv.bpf_load", "privilege", (1002, 1, "Load"), ("priv",), record="BPF_LOAD", decoder="priv",
             programs=_tp("bpf"), syscalls=("bpf",), activity=True),
    # Kernel Activity (1003) 1 Create: a kernel object with exploit uses.
    KindSpec("priv.userfaultfd", "privilege", (1003, 1, "Create"), ("priv",), record="USERFAULTFD",
             decoder="priv", programs=_tp("userfaultfd"), syscalls=("userfaultfd",), activity=True),
    KindSpec("priv.io_uring_setup", "privilege", (1003, 1, "Create"), ("priv",), record="IO_URING_SETUP",
             decoder="priv", programs=_tp("io_uring_setup"), syscalls=("io_uring_setup",), activity=True),
    # process.exec_failed: an execve/execveat that returned an error (exec_name, attrs errno).
    KindSpec("process.exec_failed", "process", (1007, 1, "Launch"), ("exec_name",), record="EXEC_FAILED",
             decoder="exec_failed", programs=_enter_exit("execve") + _enter_exit("execveat"), activity=True),
    # net.send: the first datagram a socket sends to an address given with the send (sendto, sendmsg,
    # each message of sendmmsg). The same programs report TCP Fast Open (MSG_FASTOPEN) as net.connect.
    KindSpec("net.send", "network", (4001, 6, "Traffic"), ("net",), record="SEND", decoder="net",
             programs=_enter_exit("sendto") + _enter_exit("sendmsg")
             + (Probe("rw_sendmmsg_each", "tracepoint/syscalls/sys_enter_sendmmsg"),),
             syscalls=("sendto", "sendmsg", "sendmmsg"), activity=True),
    # dns.answer: what recvfrom/recvmsg read on a socket that sent a DNS question; attrs answers
    # (addresses) and rcode. The kernel source names later connections to those addresses.
    # process.env: the allow-listed environment of an exec; the decoder puts it on the exec that
    # follows (attrs env) and the kernel source drops the record.
    KindSpec("process.env", "process", _BASE, record="EXEC_ENV", decoder="exec_env",
             programs=(Probe("rw_env_exec", "tp_btf/sched_process_exec"),), stored=False),
    KindSpec("dns.answer", "network", (4003, 2, "Response"), ("dns",), record="DNS_ANSWER",
             decoder="dns_answer", programs=_enter_exit("recvfrom") + _enter_exit("recvmsg") + _enter_exit("read")),
)

#: Each spec by kind name.
BY_NAME: dict[str, KindSpec] = {k.name: k for k in TABLE}

#: Attributes every kind may carry whatever its entry says (set by the tool-call join on activity kinds).
JOINED: tuple[str, ...] = ("tool_call", "unattested")


def spec(kind: str) -> KindSpec | None:
    """The table entry of ``kind``, or ``None`` for a kind this runwatch does not know."""
    return BY_NAME.get(kind)


def names() -> tuple[str, ...]:
    """Every kind name, in table order."""
    return tuple(k.name for k in TABLE)


def kernel_kinds() -> tuple[KindSpec, ...]:
    """The kinds the kernel sensor emits (those with a ring-buffer record)."""
    return tuple(k for k in TABLE if k.record is not None)


def carried(kind: KindSpec) -> frozenset[str]:
    """The :class:`Event` attributes ``kind`` can have set beyond the common fields."""
    return frozenset(kind.carries + (JOINED if kind.activity else ()))


def activity_kinds() -> frozenset[str]:
    """Kinds that count as workload activity for the tool-call join (not fork/exit bookkeeping)."""
    return frozenset(k.name for k in TABLE if k.activity)


def syscall_kinds() -> dict[str, str]:
    """Syscall name (Falco ``evt.type``) -> kind, for every kind that stands for syscalls."""
    return {s: k.name for k in TABLE for s in k.syscalls}


def _check(table: tuple[KindSpec, ...]) -> None:
    seen: set[str] = set()
    programs: set[str] = set()
    for k in table:
        if k.name in seen:
            raise ValueError(f"event kind {k.name!r} is declared twice")
        seen.add(k.name)
        if k.group not in GROUPS:
            raise ValueError(f"event kind {k.name!r}: unknown group {k.group!r}")
        if (k.record is None) != (k.decoder is None):
            raise ValueError(f"event kind {k.name!r}: a kernel record needs a decoder and a decoder a record")
        for p in k.programs:
            if p.program in programs:
                raise ValueError(f"BPF program {p.program!r} is declared for two kinds")
            programs.add(p.program)


_check(TABLE)
