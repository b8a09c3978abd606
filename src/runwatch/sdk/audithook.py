"""The PEP 578 audit-hook sensor: what the Python process itself asks the OS to do.

Stdlib only, like the rest of :mod:`runwatch.sdk`. :func:`install` adds one audit hook
(``sys.addaudithook``; audit hooks cannot be removed, so :func:`uninstall` only turns it
off). It reports, as ``audit`` messages over the SDK transport, carrying the enclosing
tool call of the calling context (so in-process activity is attributed with no kernel
sensor running):

==========================  ===================================================  ==================
audit event                 what is sent                                         runwatch kind
==========================  ===================================================  ==================
``subprocess.Popen``        executable, argv                                     ``process.exec``
``os.system``               ``/bin/sh -c CMD``                                   ``process.exec``
``os.exec`` / ``os.spawn``  path, argv                                           ``process.exec``
``os.posix_spawn``          path, argv (not when subprocess already reported it)  ``process.exec``
``socket.connect``          family, protocol, address (not the SDK's own socket)  ``net.connect``
``socket.getaddrinfo``      host, port, family (IP literals are not look-ups)     ``dns.query``
``open``                    path, intent, flags, only under watched prefixes      ``file.open``
``ctypes.dlopen``           library name                                         ``plugin.load``
``exec`` / ``import``       module executed from / extension loaded from a        ``plugin.load``
                            writable path (temp dirs, cwd, anything writable
                            outside the interpreter's installation), sha256
==========================  ===================================================  ==================

Watched paths are the kernel sensor's default prefixes (secrets, tokens, keys; binary
directories for writes only), credential files under every home directory, the prefixes in
``RUNWATCH_WATCH_PATHS`` (``os.pathsep`` separated) and those passed to :func:`install` or
:func:`watch_paths`.

Contract: the hook never raises, never blocks (one bounded deque append per report),
never recurses (a per-thread guard covers the hook's own opens and imports; the SDK
socket's connect is skipped) and costs one frozenset lookup for events it does not watch.
libc calls made through ctypes bypass audit hooks: this complements the kernel sensor.
Thread safety: the hook runs in whichever thread raised the event; configuration
functions may be called from any thread (tuples are swapped whole).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import pwd
import socket
import sys
import threading
from collections.abc import Iterable
from types import CodeType, FrameType
from typing import Any

from runwatch import sdk
from runwatch.sdk.transport import get_transport
from runwatch.sdk.wire import MAX_ARGV, MAX_FIELD

ENV_WATCH = "RUNWATCH_WATCH_PATHS"

#: Prefixes watched for reads and writes: secrets, tokens, keys, GPU devices, container runtime
#: sockets. Kept equal to the kernel sensor's list (a test compares them); this module cannot
#: import that one, which loads libbpf.
RW_PREFIXES: tuple[str, ...] = (
    "/run/secrets/", "/var/run/secrets/", "/etc/shadow", "/etc/gshadow", "/etc/ssl/private/",
    "/etc/pki/tls/private/", "/etc/kubernetes/pki/", "/var/lib/kubelet/pki/",
    "/dev/nvidia", "/dev/dri/", "/dev/kfd", "/dev/mem", "/dev/kmem", "/dev/port", "/dev/sd", "/dev/nvme",
    "/dev/vd",
    "/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock", "/run/crio/crio.sock", "/run/podman/podman.sock",
)
#: Prefixes watched for writes only: account files, binary and library directories, cgroup files.
WRITE_PREFIXES: tuple[str, ...] = (
    "/etc/sudoers", "/etc/passwd", "/etc/group", "/etc/ld.so.preload", "/bin/", "/sbin/", "/usr/bin/",
    "/usr/sbin/", "/usr/local/bin/", "/usr/local/sbin/", "/usr/lib/", "/sys/fs/cgroup/",
    "/etc/", "/etc/bash.bashrc", "/etc/cron", "/etc/environment", "/etc/pam.d/", "/etc/profile", "/etc/rc",
    "/lib/", "/lib64/", "/root/", "/usr/lib64/", "/usr/libexec/", "/var/log/", "/var/spool/cron/",
)
#: Credential files and directories under each home directory (read and write).
HOME_SECRETS: tuple[str, ...] = (".aws/", ".ssh/", ".kube/", ".docker/config.json", ".config/gcloud/", ".azure/")

#: Directories whose modules count as loaded from a writable path whatever the permissions.
WRITABLE_DIRS: tuple[str, ...] = ("/tmp/", "/var/tmp/", "/dev/shm/")

_EXEC = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn"})
_EVENTS = frozenset({*_EXEC, "socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "open",
                     "ctypes.dlopen", "exec", "import"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def home_prefixes() -> tuple[str, ...]:
    """Credential prefixes under /root and every /home user (as the kernel sensor expands them)."""
    homes = {"/root"}
    try:
        for entry in pwd.getpwall():
            if entry.pw_dir.startswith("/home/") or entry.pw_dir == "/root":
                homes.add(entry.pw_dir.rstrip("/"))
    except Exception:
        pass
    return tuple(f"{home}/{rel}" for home in sorted(homes) for rel in HOME_SECRETS)


def env_prefixes() -> tuple[str, ...]:
    """Absolute prefixes from ``RUNWATCH_WATCH_PATHS`` (others are ignored)."""
    raw = os.environ.get(ENV_WATCH, "")
    return tuple(p for p in raw.split(os.pathsep) if p.startswith("/"))


class _State:
    """What the hook reads. Tuples and frozensets are replaced whole, never mutated."""

    def __init__(self) -> None:
        self.active = False
        self.installed = False
        self.imports = True
        self.rw: tuple[str, ...] = ()
        self.wo: tuple[str, ...] = ()
        self.every: tuple[str, ...] = ()
        self.by_top: dict[str, tuple[str, ...]] | None = {}  # first path component -> prefixes under it
        self.ignored: frozenset[str] = frozenset()
        self.installed_dirs: tuple[str, ...] = ()
        self.cwd = "/"
        self.writable: dict[str, bool] = {}
        self.last_import: dict[int, str] = {}
        self.busy: set[int] = set()
        self.reported = itertools.count()
        self.errors = itertools.count()


_st = _State()


def _installed_dirs() -> tuple[str, ...]:
    """The interpreter's own directories (stdlib, site-packages) and runwatch's package."""
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    dirs.add(os.path.dirname(os.__file__))  # the stdlib (sysconfig costs milliseconds at start-up)
    dirs.update(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    dirs.add(os.path.dirname(os.path.dirname(os.path.abspath(sdk.__file__))))
    return tuple(sorted(d.rstrip("/") + "/" for d in dirs if d))


def install(watch: Iterable[str] = (), *, imports: bool = True, ignore: Iterable[str] = ()) -> None:
    """Add the audit hook (once per process) and turn it on.

    ``watch``: extra absolute path prefixes to report opens under (read and write).
    ``imports``: report modules executed from writable paths. ``ignore``: module files not
    to report (the main script). Calling again adds to the configuration.
    """
    st = _st
    extra = tuple(os.path.abspath(p) + ("/" if p.endswith("/") else "") for p in watch)
    rw = tuple(dict.fromkeys(st.rw + RW_PREFIXES + home_prefixes() + env_prefixes() + extra))
    st.rw, st.wo = rw, WRITE_PREFIXES
    _set_every(rw + WRITE_PREFIXES)
    st.ignored = st.ignored | frozenset(os.path.abspath(p) for p in ignore)
    st.installed_dirs = _installed_dirs()
    st.cwd = os.getcwd().rstrip("/") + "/"
    st.imports = imports
    if not st.installed:
        sys.addaudithook(_hook)
        st.installed = True
    st.active = True


def uninstall() -> None:
    """Turn the hook off (it stays registered, as every audit hook does, and returns at once)."""
    _st.active = False


def is_active() -> bool:
    """True while the hook reports."""
    return _st.active


def watch_paths(*prefixes: str) -> None:
    """Report opens under these absolute prefixes too (a trailing ``/`` watches a directory)."""
    extra = tuple(os.path.abspath(p) + ("/" if p.endswith("/") else "") for p in prefixes)
    _st.rw = tuple(dict.fromkeys(_st.rw + extra))
    _set_every(_st.rw + _st.wo)


def _top(path: str) -> str:
    end = path.find("/", 1)
    return path[1:end] if end > 0 else path[1:]


def _set_every(every: tuple[str, ...]) -> None:
    """Install the prefix list and its index by first path component (None: a prefix is ``/``)."""
    by_top: dict[str, tuple[str, ...]] | None = {}
    for prefix in every:
        top = _top(prefix)
        if not top or by_top is None:
            by_top = None
            continue
        by_top[top] = (*by_top.get(top, ()), prefix)
    _st.every, _st.by_top = every, by_top


def ignore_origin(path: str) -> None:
    """Do not report ``path`` as a module executed from a writable location (the main script)."""
    _st.ignored = _st.ignored | {os.path.abspath(path)}


def watched() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The (read-and-write, write-only) prefixes the hook reports opens under."""
    return _st.rw, _st.wo


def stats() -> dict[str, int]:
    """Observations reported and errors swallowed since start-up."""
    return {"reported": _peek(_st.reported), "errors": _peek(_st.errors)}


def _peek(counter: itertools.count[int]) -> int:
    return int(repr(counter)[6:-1])


# -- the hook ------------------------------------------------------------------------------------


def _hook(event: str, args: tuple[Any, ...]) -> None:
    """The audit hook. Hot path: one frozenset lookup for the events it ignores."""
    if event not in _EVENTS:
        return
    st = _st
    if not st.active:
        return
    if event == "open":
        path = args[0]
        if path.__class__ is str and path[:1] == "/":
            by_top = st.by_top
            if by_top is not None:
                end = path.find("/", 1)
                group = by_top.get(path[1:end] if end > 0 else path[1:])
                if group is None or not path.startswith(group):
                    return
            elif not path.startswith(st.every):
                return
        elif path.__class__ is int:
            return
    tid = threading.get_ident()
    busy = st.busy
    if tid in busy:
        return
    busy.add(tid)
    try:
        _HANDLERS[event](args)
    except Exception:
        next(st.errors)
    finally:
        busy.discard(tid)


def _emit(extra: dict[str, Any]) -> None:
    sdk._submit("audit", sdk._with_context(extra))
    next(_st.reported)


def _text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bytes | os.PathLike):
        text = os.fsdecode(value)
    else:
        text = str(value)
    return text if len(text) <= MAX_FIELD else text[:MAX_FIELD]


def _argv(args: Any) -> list[str]:
    if isinstance(args, str | bytes | os.PathLike):
        return [_text(args)]
    try:
        return [_text(a) for a in list(args)[:MAX_ARGV]]
    except TypeError:
        return [_text(args)]


def resolve_program(program: str, *, cwd: str | None = None, path: str | None = None) -> str | None:
    """The executable a caller asking for ``program`` gets, as the kernel would name it.

    A name without a slash is searched in ``path`` (default ``PATH``), like ``execvp``; a
    relative name is taken from ``cwd`` (default the current directory); symlinks are resolved
    (``/proc/self/exe`` is this interpreter). ``None`` when no such executable exists: the
    report then claims no executable. A few ``stat`` calls; never raises.
    """
    try:
        if "/" in program:
            return _executable(program, cwd)
        dirs = (path if path is not None else os.environ.get("PATH", os.defpath)).split(os.pathsep)
        for d in dirs:
            found = _executable(os.path.join(d or ".", program), cwd)
            if found is not None:
                return found
    except (OSError, ValueError, TypeError):
        pass
    return None


def _executable(name: str, cwd: str | None) -> str | None:
    full = os.path.join(cwd if cwd is not None else os.getcwd(), name)  # join keeps an absolute name
    real = os.path.realpath(full)
    return real if os.path.isfile(real) and os.access(real, os.X_OK) else None


def _env_path(env: Any) -> str | None:
    """``PATH`` of an ``env`` mapping handed to subprocess (None: this process's)."""
    try:
        value = env.get("PATH", env.get(b"PATH")) if env is not None else None
    except (AttributeError, TypeError):
        return None
    return os.fsdecode(value) if isinstance(value, str | bytes) else None


def _exec(ev: str, exe: Any, argv: Any, *, cwd: Any = None, env: Any = None) -> None:
    items = _argv(argv) if argv is not None else []
    program = _text(exe) if exe is not None else (items[0] if items else "")
    if not program:
        return
    msg: dict[str, Any] = {"ev": ev, "exe": program, "argv": items or [program]}
    where = _text(cwd) if isinstance(cwd, str | bytes | os.PathLike) else None
    resolved = resolve_program(program, cwd=where, path=_env_path(env))
    if resolved is not None:
        msg["xe"] = _text(resolved)
    _emit(msg)


def _on_popen(args: tuple[Any, ...]) -> None:  # subprocess.Popen(executable, args, cwd, env)
    _exec("subprocess.Popen", args[0], args[1], cwd=args[2] if len(args) > 2 else None,
          env=args[3] if len(args) > 3 else None)


def _on_system(args: tuple[Any, ...]) -> None:
    _exec("os.system", "/bin/sh", ["/bin/sh", "-c", _text(args[0])])


def _on_os_exec(args: tuple[Any, ...]) -> None:
    _exec("os.exec", args[0], args[1])


def _on_spawn(args: tuple[Any, ...]) -> None:  # os.spawn(mode, path, args, env)
    _exec("os.spawn", args[1], args[2])


def _on_posix_spawn(args: tuple[Any, ...]) -> None:
    # subprocess may use posix_spawn after raising subprocess.Popen: report the request once.
    frame: FrameType | None = sys._getframe(2)
    for _ in range(4):
        if frame is None:
            break
        if frame.f_code.co_filename.endswith("subprocess.py"):
            return
        frame = frame.f_back
    _exec("os.posix_spawn", args[0], args[1])


_FAMILIES: dict[int, str] = {int(socket.AF_INET): "ipv4", int(socket.AF_INET6): "ipv6", int(socket.AF_UNIX): "unix"}
_PROTOS: dict[int, str] = {int(socket.SOCK_STREAM): "tcp", int(socket.SOCK_DGRAM): "udp", int(socket.SOCK_RAW): "raw"}


def _on_connect(args: tuple[Any, ...]) -> None:
    sock, address = args[0], args[1]
    family = _FAMILIES.get(sock.family)
    if family is None:
        return
    if family == "unix":
        path = _text(address)
        if path == get_transport().path:
            return  # the SDK's own socket
        _emit({"ev": "socket.connect", "fam": "unix", "proto": "unix", "path": path})
        return
    proto = _PROTOS.get(sock.type & 0xF, "tcp")
    _emit({"ev": "socket.connect", "fam": family, "proto": proto, "host": _text(address[0]),
           "port": int(address[1])})


def _is_ip(host: str) -> bool:
    for fam in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(fam, host)
            return True
        except (OSError, ValueError):
            continue
    return False


def _lookup(ev: str, host: Any, port: Any, family: Any) -> None:
    if host is None:
        return
    name = _text(host)
    if not name or _is_ip(name):
        return
    extra: dict[str, Any] = {"ev": ev, "host": name}
    fam = _FAMILIES.get(family) if isinstance(family, int) else None
    if fam in ("ipv4", "ipv6"):
        extra["fam"] = fam
    if isinstance(port, int) and 0 <= port <= 65535:
        extra["port"] = port
    elif isinstance(port, str | bytes) and _text(port).isdigit() and int(_text(port)) <= 65535:
        extra["port"] = int(_text(port))
    _emit(extra)


def _on_getaddrinfo(args: tuple[Any, ...]) -> None:
    _lookup("socket.getaddrinfo", args[0], args[1], args[2])


def _on_gethostbyname(args: tuple[Any, ...]) -> None:
    _lookup("socket.gethostbyname", args[0], None, None)


def _on_open(args: tuple[Any, ...]) -> None:
    raw, mode, flags = args[0], args[1], args[2]
    if isinstance(raw, int) or raw is None:
        return
    path = _text(raw)
    if not path.startswith("/"):
        path = os.path.join(os.getcwd(), path)
    st = _st
    if not path.startswith(st.every):
        return
    flags = flags if isinstance(flags, int) and flags >= 0 else 0
    writes = bool(flags & _WRITE_FLAGS) or (isinstance(mode, str) and any(c in mode for c in "wax+"))
    if not path.startswith(st.rw) and not writes:
        return  # a write-only prefix opened for reading
    reads = (flags & os.O_ACCMODE) != os.O_WRONLY
    intent = "rw" if writes and reads and (flags & os.O_ACCMODE) == os.O_RDWR else ("write" if writes else "read")
    _emit({"ev": "open", "path": path, "intent": intent, "fl": flags & 0xFFFFFFFF})


def _on_dlopen(args: tuple[Any, ...]) -> None:
    name = args[0]
    if name is None:
        return
    text = _text(name)
    _emit({"ev": "ctypes.dlopen", "name": os.path.basename(text), "src": text})


def _writable(path: str) -> bool:
    """True if module file ``path`` lies in a writable place outside the interpreter's installation."""
    st = _st
    directory = os.path.dirname(path) + "/"
    known = st.writable.get(directory)
    if known is not None:
        return known
    if directory.startswith(st.installed_dirs):
        result = False
    elif directory.startswith(WRITABLE_DIRS) or directory.startswith(st.cwd):
        result = True
    else:
        result = os.access(directory, os.W_OK)
    if len(st.writable) > 4096:
        st.writable.clear()
    st.writable[directory] = result
    return result


def _sha256(path: str) -> str | None:
    try:
        if os.stat(path).st_size > 64 << 20:
            return None
        digest = hashlib.sha256()
        with open(path, "rb") as fh:  # the per-thread guard keeps this open out of the hook
            for block in iter(lambda: fh.read(1 << 16), b""):
                digest.update(block)
        return digest.hexdigest()
    except OSError:
        return None


def _module_load(name: str, origin: str) -> None:
    st = _st
    if not st.imports or origin in st.ignored or not _writable(origin):
        return
    main = sys.argv[0] if sys.argv else ""
    if main and os.path.abspath(main) == origin:
        return  # the main script (``python script.py`` executes it like a module)
    extra: dict[str, Any] = {"ev": "import", "name": name, "src": origin}
    sha = _sha256(origin)
    if sha is not None:
        extra["sha"] = sha
    _emit(extra)


def _on_import(args: tuple[Any, ...]) -> None:
    name, filename = args[0], args[1]
    if not isinstance(name, str):
        return
    if filename is None:  # the search starts: remember which module is wanted
        last = _st.last_import
        if len(last) > 256:
            last.clear()
        last[threading.get_ident()] = name
        return
    origin = _text(filename)  # an extension module being loaded from ``filename``
    if origin.startswith("/"):
        _module_load(name, origin)


def _on_exec(args: tuple[Any, ...]) -> None:
    code = args[0]
    if code.__class__ is not CodeType or code.co_name != "<module>":
        return
    origin = code.co_filename
    if not origin.startswith("/") or not _st.imports:
        return
    stem = os.path.splitext(os.path.basename(origin))[0]
    if stem == "__init__":
        stem = os.path.basename(os.path.dirname(origin))
    wanted = _st.last_import.get(threading.get_ident(), "")
    name = wanted if wanted.rpartition(".")[2] == stem else stem
    _module_load(name, origin)


_HANDLERS = {
    "subprocess.Popen": _on_popen,
    "os.system": _on_system,
    "os.exec": _on_os_exec,
    "os.spawn": _on_spawn,
    "os.posix_spawn": _on_posix_spawn,
    "socket.connect": _on_connect,
    "socket.getaddrinfo": _on_getaddrinfo,
    "socket.gethostbyname": _on_gethostbyname,
    "open": _on_open,
    "ctypes.dlopen": _on_dlopen,
    "import": _on_import,
    "exec": _on_exec,
}
