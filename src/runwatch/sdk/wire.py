"""The SDK wire format, shared by the agent side (:mod:`runwatch.sdk`) and the collector.

Stdlib only, so agents can vendor the SDK without runwatch's dependencies.

One datagram on the unix socket carries one or more messages, each a compact JSON object
terminated by ``\\n``. Every message has:

``v``   wire version (:data:`WIRE_VERSION`)
``k``   message kind (:data:`MESSAGE_KINDS`)
``m``   CLOCK_MONOTONIC time in ns when it happened (the clock the kernel sensor uses;
        the collector maps it to epoch ns with its own offset, so SDK and kernel times agree)
``pid`` the sender's pid and ``tid`` its thread id, both as seen inside its own pid namespace
``ns``  the inode of the sender's pid namespace (``/proc/self/ns/pid``)

and kind-specific keys (see :data:`STRING_KEYS` / :data:`INT_KEYS`). Secrets' values and,
unless the operator opts in, tool arguments never appear: ``ah`` is an HMAC-SHA256 of the
canonical JSON of the arguments.
"""

from __future__ import annotations

import hashlib

WIRE_VERSION = 1

ENV_SOCKET = "RUNWATCH_SOCKET"
ENV_ARGS_KEY = "RUNWATCH_ARGS_KEY"
ENV_STORE_ARGS = "RUNWATCH_STORE_ARGS"
DEFAULT_SOCKET = "/run/runwatch/sdk/sdk.sock"
"""In a directory of its own: bind-mount the directory (not the file) into containers."""

MAX_DATAGRAM = 32768
"""Largest datagram the SDK sends (bytes); the collector reads up to twice that."""

MAX_FIELD = 1024
"""Longest string (characters) the collector accepts in one field (``args`` excepted)."""

MAX_ARGS = 4096
"""Longest opt-in argument text (characters) the SDK sends."""

MESSAGE_KINDS: tuple[str, ...] = (
    "hello",  # the SDK attached to a process (announce())
    "tool.start",
    "tool.end",
    "model.call",
    "prompt.route",
    "plugin.load",
    "secret.access",
    "audit",  # an in-process observation of the PEP 578 audit-hook sensor (runwatch.sdk.audithook)
    "svid",  # the process's X.509-SVID from the SPIFFE Workload API, with proof of its key (runwatch.sdk.identity)
)

AUDIT_EVENTS: tuple[str, ...] = (
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "socket.connect",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "open",
    "ctypes.dlopen",
    "import",
)
"""Values of ``ev`` in an ``audit`` message: the Python audit event it reports (``import``:
a module executed from a writable path, seen through the ``exec``/``import`` audit events)."""

MAX_CERT = 8192
"""Longest base64 DER certificate (characters) an ``svid`` message's ``x5c`` carries."""

MAX_CHAIN = 8
"""Most certificates an ``svid`` message's ``x5c`` carries (leaf first)."""

SVID_PROOF = "runwatch-svid/1"
"""First member of the text an ``svid`` message's ``sig`` signs (see :func:`svid_proof`)."""

MAX_ARGV = 256
"""Most argv items an ``audit`` message carries (the collector refuses more)."""

STRING_KEYS: dict[str, str] = {
    "k": "message kind",
    "name": "tool, plugin or secret name",
    "cid": "tool call id",
    "agent": "agent name",
    "ah": "HMAC-SHA256 (hex) of the canonical JSON of the tool arguments",
    "args": "canonical JSON of the tool arguments (only with RUNWATCH_STORE_ARGS=1)",
    "st": "tool.end status: ok | error",
    "err": "exception type name on error",
    "prov": "model provider",
    "model": "model name",
    "route": "prompt route",
    "src": "plugin source (path, URL, package)",
    "sha": "plugin sha256 (hex)",
    "sk": "secret kind (env, file, vault, keyring, ...)",
    "pname": "enclosing tool call's name (non-tool messages inside a call)",
    "pcid": "enclosing tool call's call id",
    "pagent": "enclosing tool call's agent",
    "ev": "audit: the audit event name (AUDIT_EVENTS)",
    "exe": "audit exec: the program asked for (the execve name, not resolved)",
    "xe": "audit exec: the executable that program resolves to here (PATH searched, cwd applied, "
          "symlinks resolved); absent when none exists",
    "path": "audit open: the file path; audit connect to a unix socket: its path",
    "intent": "audit open: read | write | rw",
    "host": "audit getaddrinfo/gethostbyname: the name looked up; audit connect: the peer address",
    "fam": "audit connect/getaddrinfo: ipv4 | ipv6 | unix",
    "proto": "audit connect: tcp | udp | raw | unix",
    "ver": "plugin.load: plugin version (MCP server version)",
    "spiffe": "svid: the SPIFFE ID the SVID names (a claim; the collector's verification decides)",
    "sig": "svid: base64 signature, by the SVID's private key, of svid_proof(pid, ns, m, leaf)",
}

LIST_KEYS: dict[str, str] = {
    "argv": "audit exec: the argument vector (at most MAX_ARGV items of MAX_FIELD characters)",
    "x5c": "svid: the certificate chain, leaf first, each base64 DER (at most MAX_CHAIN of MAX_CERT characters)",
}

INT_KEYS: dict[str, str] = {
    "v": "wire version",
    "m": "CLOCK_MONOTONIC ns",
    "pid": "pid inside the sender's pid namespace",
    "tid": "thread id inside the sender's pid namespace",
    "ns": "pid namespace inode",
    "sid": "span id of a tool call, unique per process",
    "psid": "enclosing tool call's span id (for tool.start: the parent call)",
    "sm": "tool.end: monotonic ns of the matching start",
    "dur": "tool.end: duration in ns",
    "port": "audit connect/getaddrinfo: the port (0-65535)",
    "fl": "audit open: the open(2) flags",
    "spid": "tool.start: pid, inside the sender's pid namespace, of a process doing the call's work for the "
            "sender (the MCP stdio server it started); the join attributes that process's events to the call",
}

SERVER_PID_ATTR = "server_pid"
"""``Event.attrs`` key of a ``tool.start`` event carrying the wire's ``spid``."""

REQUIRED_KEYS: tuple[str, ...] = ("v", "k", "m", "pid", "tid", "ns")


def svid_proof(pid: int, ns: int, m: int, leaf_der: bytes) -> bytes:
    """What an ``svid`` message's key signs: the sender's pid and pid namespace, the message time
    and the leaf's SHA-256, so the proof holds only for the process the kernel names as sender."""
    return f"{SVID_PROOF}|{pid}|{ns}|{m}|{hashlib.sha256(leaf_der).hexdigest()}".encode()
