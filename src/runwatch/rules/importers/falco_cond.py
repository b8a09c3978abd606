"""Falco conditions: parse to a small AST, translate to runwatch condition text.

:func:`parse` reads Falco's condition syntax (``and or not``, parentheses, ``field op value``,
``field in (a, b, LIST)``, macros by bare name). :class:`Translator` resolves macros and lists
recursively and maps fields and operators to runwatch's; a term that runwatch can decide
without looking (``evt.dir = <``, a syscall runwatch never reports) becomes a constant and is
simplified away. Anything without a runwatch counterpart raises :class:`Unsupported` with a
one-line reason naming the field or operator (and the macro it came through).

Pure functions plus per-import caches; not thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runwatch import eventkinds

# -- AST -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cmp:
    """``field op values`` (``values`` is None for ``exists``); ``in`` lists may name Falco lists."""

    field: str
    op: str
    values: tuple[str, ...] | None
    listy: bool = False  # the values were written in parentheses (a set)


@dataclass(frozen=True, slots=True)
class Bool:
    """``and``/``or`` over two or more nodes."""

    op: str
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """``not x``."""

    arg: Any


@dataclass(frozen=True, slots=True)
class Ref:
    """A bare name: a macro."""

    name: str


@dataclass(frozen=True, slots=True)
class Const:
    """A term decided at translation time."""

    value: bool


@dataclass(frozen=True, slots=True)
class Term:
    """Translated runwatch condition text (an atom that needs no parentheses)."""

    text: str


class FalcoSyntaxError(ValueError):
    """A Falco condition that does not parse."""


class Unsupported(Exception):
    """A condition piece runwatch cannot express; the message is the one-line reason."""


BINARY_OPS = ("=", "==", "!=", "<", "<=", ">", ">=", "in", "intersects", "contains", "icontains", "bcontains",
              "startswith", "bstartswith", "endswith", "glob", "iglob", "pmatch", "regex")
_WORD_OPS = frozenset(o for o in BINARY_OPS if o[0].isalpha()) | {"exists"}
_STOP = set(" \t\r\n(),'\"=!<>")


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "(),":
            out.append((ch, ch))
            i += 1
        elif ch in "'\"":
            j, buf = i + 1, []
            while j < n and text[j] != ch:
                if text[j] == "\\" and j + 1 < n and text[j + 1] in "'\"\\":
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise FalcoSyntaxError(f"unterminated string at offset {i}")
            out.append(("str", "".join(buf)))
            i = j + 1
        elif ch in "=!<>":
            two = text[i:i + 2]
            op = two if two in ("==", "!=", "<=", ">=") else ch
            out.append(("op", op))
            i += len(op)
        else:
            j = i
            depth = 0
            while j < n and (text[j] not in _STOP or (depth and text[j] not in " \t\r\n")):
                depth += {"[": 1, "]": -1}.get(text[j], 0)
                j += 1
            out.append(("word", text[i:j]))
            i = j
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        t = self.peek()
        if t is None:
            raise FalcoSyntaxError("unexpected end of condition")
        self.i += 1
        return t

    def expr(self) -> Any:
        args = [self.conj()]
        while self.peek() == ("word", "or"):
            self.i += 1
            args.append(self.conj())
        return args[0] if len(args) == 1 else Bool("or", tuple(args))

    def conj(self) -> Any:
        args = [self.unary()]
        while self.peek() == ("word", "and"):
            self.i += 1
            args.append(self.unary())
        return args[0] if len(args) == 1 else Bool("and", tuple(args))

    def unary(self) -> Any:
        if self.peek() == ("word", "not"):
            self.i += 1
            return Not(self.unary())
        return self.primary()

    def primary(self) -> Any:
        kind, text = self.take()
        if kind == "(":
            node = self.expr()
            if self.take()[0] != ")":
                raise FalcoSyntaxError("expected )")
            return node
        if kind != "word":
            raise FalcoSyntaxError(f"unexpected {text!r}")
        nxt = self.peek()
        if nxt is not None and nxt[0] == "(":
            raise Unsupported(f"field transformer {text}() is not supported")
        if nxt is not None and nxt[0] == "op":
            self.i += 1
            return Cmp(text, "=" if nxt[1] == "==" else nxt[1], self.values(nxt[1]))
        if nxt is not None and nxt[0] == "word" and nxt[1] in _WORD_OPS:
            self.i += 1
            if nxt[1] == "exists":
                return Cmp(text, "exists", None)
            nxt2 = self.peek()
            listy = nxt2 is not None and nxt2[0] == "("
            return Cmp(text, nxt[1], self.values(nxt[1]), listy)
        return Ref(text)

    def values(self, op: str) -> tuple[str, ...]:
        t = self.take()
        if t[0] == "(":
            out: list[str] = []
            while True:
                t = self.take()
                if t[0] == ")":
                    return tuple(out)
                if t[0] == ",":
                    continue
                if t[0] not in ("word", "str"):
                    raise FalcoSyntaxError(f"bad value {t[1]!r} in list after {op}")
                out.append(t[1])
        if t[0] in ("word", "str", "op"):  # "evt.dir = <": an operator character as the value
            if t[0] == "word" and t[1].startswith("val("):
                raise Unsupported("field comparison val() is not supported")
            return (t[1],)
        raise FalcoSyntaxError(f"expected a value after {op}, found {t[1]!r}")


def parse(text: str) -> Any:
    """The AST of one Falco condition; raises :class:`FalcoSyntaxError`."""
    p = _Parser(text)
    node = p.expr()
    if p.peek() is not None:
        raise FalcoSyntaxError(f"unexpected {p.peek()[1]!r} after the condition")  # type: ignore[index]
    return node


# -- translation -----------------------------------------------------------------------------

#: Syscall (``evt.type`` value) -> runwatch event kind. Syscalls not listed are never reported.
SYSCALL_KINDS: dict[str, str] = eventkinds.syscall_kinds()

#: Falco field -> runwatch field, where the meaning carries over directly.
FIELD_MAP: dict[str, str] = {
    "proc.name": "proc.name", "proc.exe": "proc.exe", "proc.exepath": "proc.exe",
    "proc.cmdline": "proc.cmdline", "proc.args": "proc.args", "proc.pname": "proc.pname",
    "proc.pexe": "proc.pexe", "proc.pexepath": "proc.pexe", "proc.cwd": "proc.cwd",
    "proc.pid": "proc.pid", "proc.ppid": "proc.ppid", "proc.vpid": "proc.vpid", "thread.tid": "proc.tid",
    "proc.aname": "proc.anames", "user.uid": "proc.uid", "group.gid": "proc.gid",
    "container.id": "container.id", "container.name": "container.name", "k8s.ns.name": "container.namespace",
    "k8s.pod.name": "container.pod",
    "k8s.pod.uid": "container.pod_uid",
    "fd.name": "file.path", "fd.directory": "file.dir", "fd.filename": "file.name",
    "fd.sip": "net.dst.ip", "fd.rip": "net.dst.ip", "fd.ip": "net.dst.ip", "fd.sport": "net.dst.port",
    "fd.rport": "net.dst.port", "fd.port": "net.dst.port", "fd.cip": "net.src.ip", "fd.cport": "net.src.port",
    "fd.l4proto": "net.proto", "evt.arg.oldpath": "file.path",
    "evt.arg.path": "file.path", "evt.arg.name": "file.path", "evt.arg.pathname": "file.path",
    "evt.arg.newpath": "file.new_path", "fd.sip.name": "net.dst.name", "fd.rip.name": "net.dst.name",
    "evt.arg.target": "file.path", "evt.arg.linkpath": "file.new_path",
    "proc.pcmdline": "proc.pcmdline", "proc.duration": "proc.duration", "proc.tty": "proc.tty", "proc.env": "proc.env",
    "user.loginuid": "proc.loginuid", "user.loginname": "proc.login_user",
    "thread.cap_effective": "proc.cap_effective_names", "thread.cap_permitted": "proc.cap_permitted_names",
    "container.image": "container.image", "container.image.repository": "container.image_repository",
    "container.image.tag": "container.image_tag", "container.image.digest": "container.image_digest",
    "evt.arg.flags": "file.flag_names", "evt.arg.mode": "file.mode_names", "evt.arg.filename": "file.path",
}
#: Why a Falco field that looks mappable is not, for the skip reason.
_WHY = {"fd.nameraw": "runwatch reports the canonical path, never the path as passed"}
_INDEXED = {"proc.aname": "proc.aname", "proc.aexe": "proc.aexe", "proc.aexepath": "proc.aexe"}
_NETS = {"fd.net": "net.dst.ip", "fd.snet": "net.dst.ip", "fd.rnet": "net.dst.ip", "fd.cnet": "net.src.ip"}
_SUCCESS = "not (net.result < 0) and not (priv.result < 0) and not (file.result < 0)"


def quote(value: str) -> str:
    """A runwatch quoted string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _join(vals: list[str]) -> str:
    return "(" + ", ".join(quote(v) for v in vals) + ")"


def simplify(op: str, args: list[Any]) -> Any:
    """``and``/``or`` of translated nodes with constants folded and nesting flattened."""
    absorb, neutral = (False, True) if op == "and" else (True, False)
    out: list[Any] = []
    for a in args:
        if isinstance(a, Const):
            if a.value == absorb:
                return Const(absorb)
            continue
        out.extend(a.args if isinstance(a, Bool) and a.op == op else [a])
    if not out:
        return Const(neutral)
    return out[0] if len(out) == 1 else Bool(op, tuple(out))


def negate(node: Any) -> Any:
    """``not node`` with constants folded."""
    if isinstance(node, Const):
        return Const(not node.value)
    if isinstance(node, Not):
        return node.arg
    return Not(node)


def emit(node: Any) -> str:
    """Runwatch condition text of a translated node (``and`` binds tighter than ``or``)."""
    if isinstance(node, Term):
        return node.text
    if isinstance(node, Not):
        inner = emit(node.arg)
        return f"not ({inner})" if isinstance(node.arg, Bool) or " and " in inner or " or " in inner else \
            f"not {inner}"
    if isinstance(node, Bool):
        parts = [f"({emit(a)})" if isinstance(a, Bool) or (isinstance(a, Term) and " or " in a.text)
                 else emit(a) for a in node.args]
        return f" {node.op} ".join(parts)
    raise ValueError(f"cannot emit {node!r}")


class Translator:
    """Translates Falco ASTs given the (flattened) lists and the macros' parsed conditions.

    ``kinds_seen`` collects the runwatch kinds the rule mentions; ``dropped`` the syscalls
    runwatch does not report (for the reason of a rule that can never match).
    """

    def __init__(self, lists: dict[str, list[str]], macros: dict[str, Callable[[], Any]]) -> None:
        self.lists = lists
        self.macros = macros  # name -> thunk returning the macro's Falco AST (may raise)
        self.cache: dict[str, Any] = {}
        self.failed: dict[str, str] = {}
        self.active: list[str] = []
        self.dropped: set[str] = set()
        self.empty_lists: set[str] = set()  # empty Falco lists used (templates left to customise)

    def macro(self, name: str) -> Any:
        if name in self.cache:
            return self.cache[name]
        if name in self.failed:
            raise Unsupported(self.failed[name])
        if name not in self.macros:
            raise Unsupported(f"undefined macro or unknown term {name!r}")
        if name in self.active:
            raise Unsupported(f"macro cycle through {name!r}")
        self.active.append(name)
        try:
            out = self.node(self.macros[name]())
        except Unsupported as exc:
            msg = str(exc) if " (via macro " in str(exc) else f"{exc} (via macro {name})"
            self.failed[name] = msg
            raise Unsupported(msg) from None
        except FalcoSyntaxError as exc:
            self.failed[name] = f"macro {name} does not parse: {exc}"
            raise Unsupported(self.failed[name]) from None
        finally:
            self.active.pop()
        self.cache[name] = out
        return out

    def node(self, n: Any) -> Any:
        """Translate one Falco AST node."""
        if isinstance(n, Bool):
            # An argument that decides the whole (false under and, true under or) wins over an
            # unsupported sibling: the result is exact without the sibling.
            parts: list[Any] = []
            first: Unsupported | None = None
            for a in n.args:
                try:
                    parts.append(self.node(a))
                except Unsupported as exc:
                    first = first or exc
            decided = Const(n.op == "or")
            if first is not None and decided not in parts:
                raise first
            return simplify(n.op, parts) if first is None else decided
        if isinstance(n, Not):
            return negate(self.node(n.arg))
        if isinstance(n, Ref):
            return self.macro(n.name)
        if isinstance(n, Cmp):
            return self.cmp(n)
        if isinstance(n, Const | Term):
            return n
        raise Unsupported(f"unexpected condition element {n!r}")

    def values(self, c: Cmp) -> list[str]:
        """The comparison's values with list names expanded (recursively, by the loader)."""
        out: list[str] = []
        for v in c.values or ():
            if c.listy and v in self.lists:
                out.extend(self.lists[v])
                if not self.lists[v]:
                    self.empty_lists.add(v)
            else:
                out.append(v)
        return out

    def cmp(self, c: Cmp) -> Any:
        f, op = c.field, c.op
        if op in ("bcontains", "bstartswith", "iglob", "regex"):
            raise Unsupported(f"operator {op} (on {f}) is not supported")
        if c.values is None:
            return self.plain(f, "exists", [])
        vals = self.values(c)
        special = _SPECIAL.get(f)
        if special is not None:
            return special(self, op, vals)
        return self.plain(f, op, vals)

    def plain_as(self, target: str, f: str, op: str, vals: list[str]) -> Any:
        """A comparison on Falco field ``f`` as on the runwatch field ``target``."""
        return self.plain(f, op, vals, target)

    def plain(self, f: str, op: str, vals: list[str], target: str | None = None) -> Any:
        """A comparison on a directly mapped field."""
        target = target or FIELD_MAP.get(f)
        if target is None and "[" in f:
            base, _, idx = f.partition("[")
            if base in _INDEXED and idx.rstrip("]").isdigit():
                target = f"{_INDEXED[base]}[{idx}"
        if target is None and f in _NETS and op in ("=", "in", "!="):
            if not vals:
                return Const(op == "!=")
            term = Term(f"{_NETS[f]} cidr {_join(vals)}")
            return Not(term) if op == "!=" else term
        if target is None and f in _WHY:
            raise Unsupported(f"field {f} has no runwatch counterpart ({_WHY[f]})")
        if target is None:
            raise Unsupported(f"field {f} has no runwatch counterpart")
        if op == "exists":
            return Term(f"{target} exists")
        if op in ("in", "intersects"):
            if not vals:
                return Const(False)
            return Term(f"{target} in {_join(vals)}")
        if op == "pmatch":
            if not vals:
                return Const(False)
            heads = [v.rstrip("/") or "/" for v in vals]
            return Bool("or", (Term(f"{target} in {_join(heads)}"),
                               Term(f"{target} startswith {_join([h.rstrip('/') + '/' for h in heads])}")))
        if len(vals) != 1 and op not in ("contains", "icontains", "startswith", "endswith", "glob"):
            raise Unsupported(f"operator {op} on {f} takes one value, found {len(vals)}")
        if not vals:
            return Const(False)
        rhs = quote(vals[0]) if len(vals) == 1 else _join(vals)
        return Term(f"{target} {op} {rhs}")


def _evt_type(t: Translator, op: str, vals: list[str]) -> Any:
    if op not in ("=", "in", "!="):
        raise Unsupported(f"operator {op} on evt.type is not supported")
    kinds = sorted({SYSCALL_KINDS[v] for v in vals if v in SYSCALL_KINDS})
    t.dropped.update(v for v in vals if v not in SYSCALL_KINDS)
    if op == "!=":
        return Term(f"kind != {kinds[0]}") if kinds else Const(True)
    if not kinds:
        return Const(False)
    return Term(f"kind = {kinds[0]}") if len(kinds) == 1 else Term(f"kind in {_join(kinds)}")


def _bool_field(term: str, negated: str | None = None) -> Callable[[Translator, str, list[str]], Any]:
    """A boolean Falco field as ``term`` (true) or ``negated`` (false; default ``not term``)."""
    def tr(t: Translator, op: str, vals: list[str]) -> Any:
        if op not in ("=", "!=") or len(vals) != 1 or vals[0].lower() not in ("true", "false"):
            raise Unsupported(f"comparison {op} {' '.join(vals)} on a boolean Falco field is not supported")
        positive = (vals[0].lower() == "true") == (op == "=")
        if positive:
            return Term(term)
        return Term(negated) if negated is not None else Not(Term(term))
    return tr


_FD_KIND = {"f": "file.path exists", "file": "file.path exists", "4": 'net.family = "ipv4"',
            "ipv4": 'net.family = "ipv4"', "6": 'net.family = "ipv6"', "ipv6": 'net.family = "ipv6"',
            "u": 'net.proto = "unix"', "unix": 'net.proto = "unix"'}


def _fd_type(t: Translator, op: str, vals: list[str]) -> Any:
    if op not in ("=", "in", "!=") or any(v not in _FD_KIND for v in vals):
        raise Unsupported(f"fd.type/fd.typechar {op} {' '.join(vals)} is not supported")
    node = simplify("or", [Term(_FD_KIND[v]) for v in vals])
    return negate(node) if op == "!=" else node


def _fd_num(t: Translator, op: str, vals: list[str]) -> Any:
    # a failed open (reported for watched paths) has file.result -errno and no descriptor
    failed = Term("file.result < 0")
    if op in (">=", ">") and len(vals) == 1 and vals[0] in ("0", "-1"):
        return Not(failed)
    if op == "=" and vals == ["-1"]:
        return failed
    raise Unsupported(f"fd.num {op} {' '.join(vals)} is not supported")


def _result(t: Translator, op: str, vals: list[str]) -> Any:
    v = " ".join(vals)
    if op == "startswith" and v == "E":  # an errno name: the call failed
        return Not(Term(_SUCCESS))
    if op == "in" and vals and all(x.isdigit() for x in vals):
        # a returned descriptor: the new one of net.redirect (dup2/dup3) and net.socket
        return Term(f"evt.attr[fd] in {_join(vals)}")
    ok = {("=", "SUCCESS"), (">=", "0"), ("=", "0")}
    bad = {("!=", "SUCCESS"), ("<", "0"), ("!=", "0")}
    if (op, v) in ok:
        return Term(_SUCCESS)
    if (op, v) in bad:
        return Not(Term(_SUCCESS))
    raise Unsupported(f"evt.res/evt.rawres {op} {v} is not supported")


def _container_id(t: Translator, op: str, vals: list[str]) -> Any:
    if op in ("=", "!=") and vals in (["host"], [""]):
        inside = Term("container exists")
        return inside if (op == "!=") else Not(inside)
    return _container_plain(op, vals)


def _container_plain(op: str, vals: list[str]) -> Any:
    if op in ("in", "intersects"):
        return Term(f"container.id in {_join(vals)}") if vals else Const(False)
    if len(vals) != 1:
        raise Unsupported(f"operator {op} on container.id takes one value")
    return Term(f"container.id {op} {quote(vals[0])}")


_NO_NAME = ("<NA>", "N/A", "")


def _user_name(t: Translator, op: str, vals: list[str]) -> Any:
    # root is uid 0 wherever the passwd is; other names are the uid's in the process's own root
    if op in ("=", "!=") and vals == ["root"]:
        return Term("proc.uid = 0") if op == "=" else Term("proc.uid != 0")
    if op in ("=", "!=", "in") and vals:
        others = [v for v in vals if v not in ("root", *_NO_NAME)]
        parts: list[Any] = [Term("proc.uid = 0")] if "root" in vals else []
        if any(v in _NO_NAME for v in vals):  # Falco's placeholders of a name it could not find
            parts.append(Not(Term("proc.user exists")))
        if others:
            parts.append(Term(f"proc.user in {_join(others)}" if len(others) > 1 or op == "in"
                              else f"proc.user = {quote(others[0])}"))
        node = simplify("or", parts)
        return negate(node) if op == "!=" else node
    return t.plain_as("proc.user", "user.name", op, vals)


def _arg_uid(t: Translator, op: str, vals: list[str]) -> Any:
    # setuid's uid argument, which Falco prints as the user's name: numbers are priv.uid, root is
    # uid 0, other names priv.user (the uid's name in the process's own passwd)
    if all(v.lstrip("-").isdigit() or v == "root" for v in vals):
        return t.plain_as("priv.uid", "evt.arg.uid", op, ["0" if v == "root" else v for v in vals])
    if any(v.lstrip("-").isdigit() or v == "root" for v in vals):
        raise Unsupported(f"evt.arg.uid {op} {' '.join(vals)[:40]} mixes names and numbers")
    return t.plain_as("priv.user", "evt.arg.uid", op, vals)


def _bpf_cmd(t: Translator, op: str, vals: list[str]) -> Any:
    # priv.bpf_load is bpf(BPF_PROG_LOAD): that command is the kind, every other one is never reported
    load = [v in ("5", "BPF_PROG_LOAD") for v in vals]
    if op in ("=", "in") and vals:
        return Term("kind = priv.bpf_load") if any(load) else Const(False)
    if op == "!=" and len(vals) == 1:
        return Term("kind != priv.bpf_load") if load[0] else Const(True)
    raise Unsupported(f"evt.arg.cmd {op} {' '.join(vals)[:40]} is not supported")


def _sockfamily(t: Translator, op: str, vals: list[str]) -> Any:
    fams = {"ip": ("ipv4", "ipv6"), "unix": ("unix",)}
    if op in ("=", "!=", "in") and vals and all(v in fams for v in vals):
        names = sorted({f for v in vals for f in fams[v]})
        term = Term(f"net.family in {_join(names)}")
        return Not(term) if op == "!=" else term
    raise Unsupported(f"fd.sockfamily {op} {' '.join(vals)[:40]} is not supported")


_FAMILY_NAMES = {"AF_INET": "ipv4", "AF_INET6": "ipv6", "AF_UNIX": "unix", "AF_LOCAL": "unix",
                 "AF_PACKET": "packet", "AF_NETLINK": "netlink"}


def _domain(t: Translator, op: str, vals: list[str]) -> Any:
    # socket(2)'s domain: runwatch's net.family of a net.socket event
    if op in ("=", "!=", "contains", "in") and vals and all(v in _FAMILY_NAMES for v in vals):
        fams = sorted({_FAMILY_NAMES[v] for v in vals})
        term = Term(f"net.family = {quote(fams[0])}" if len(fams) == 1 else f"net.family in {_join(fams)}")
        return Not(term) if op == "!=" else term
    raise Unsupported(f"evt.arg.domain {op} {' '.join(vals)[:40]} is not supported")


_ERRNO = {"EINPROGRESS": 115, "EACCES": 13, "EPERM": 1, "ENOENT": 2, "ECONNREFUSED": 111, "EAGAIN": 11}
_PTRACE = {"PTRACE_TRACEME": 0, "PTRACE_PEEKTEXT": 1, "PTRACE_PEEKDATA": 2, "PTRACE_PEEKUSR": 3,
           "PTRACE_POKETEXT": 4, "PTRACE_POKEDATA": 5, "PTRACE_POKEUSR": 6, "PTRACE_CONT": 7, "PTRACE_KILL": 8,
           "PTRACE_SINGLESTEP": 9, "PTRACE_GETREGS": 12, "PTRACE_SETREGS": 13, "PTRACE_ATTACH": 16,
           "PTRACE_DETACH": 17, "PTRACE_SETOPTIONS": 0x4200, "PTRACE_SEIZE": 0x4206, "PTRACE_INTERRUPT": 0x4207}


def _errno_result(t: Translator, op: str, vals: list[str]) -> Any:
    if op in ("=", "!=", "in") and vals and all(v in _ERRNO for v in vals):
        codes = ", ".join(str(-_ERRNO[v]) for v in vals)
        term = Term(f"(net.result in ({codes}) or priv.result in ({codes}))")
        return Not(term) if op == "!=" else term
    return _result(t, op, vals)


def _ptrace_request(t: Translator, op: str, vals: list[str]) -> Any:
    if op not in ("=", "!=", "in", "contains") or not vals or any(v not in _PTRACE for v in vals):
        raise Unsupported(f"evt.arg.request {op} {' '.join(vals)} is not supported")
    term = Term(f"priv.request in ({', '.join(str(_PTRACE[v]) for v in vals)})")
    return Not(term) if op == "!=" else term


def _evt_num(t: Translator, op: str, vals: list[str]) -> Any:
    # event numbers start at 1: "evt.num = 0" is Falco's never_true, "evt.num >= 0" its always_true
    if len(vals) == 1 and vals[0] == "0" and op in ("=", ">=", "!=", ">"):
        return Const(op != "=")
    raise Unsupported(f"field evt.num {op} {' '.join(vals)} has no runwatch counterpart")


def _always(t: Translator, op: str, vals: list[str]) -> Any:
    return Const(True)  # runwatch reports each syscall once, on completion


_SPECIAL: dict[str, Callable[[Translator, str, list[str]], Any]] = {
    "evt.type": _evt_type,
    "evt.dir": _always,
    "evt.is_open_write": _bool_field("file.intent in (write, rw)"),
    "evt.is_open_read": _bool_field("file.intent in (read, rw)"),
    "fd.type": _fd_type,
    "fd.typechar": _fd_type,
    # net.send is a datagram socket's first send to an address given with the send: unconnected,
    # and a destination that changed; every other net.* kind is of a connected (or listening) socket.
    "fd.connected": _bool_field("kind != net.send", "kind = net.send"),
    "fd.name_changed": _bool_field("kind = net.send", "kind != net.send"),
    "fd.num": _fd_num,
    "evt.res": _errno_result,
    "evt.num": _evt_num,
    "evt.arg.request": _ptrace_request,
    "evt.rawres": _result,
    "container.id": _container_id,
    "user.name": _user_name,
    "evt.arg.domain": _domain,
    "evt.arg.uid": _arg_uid,
    "evt.arg.cmd": _bpf_cmd,
    "fd.sockfamily": _sockfamily,
    "proc.is_exe_from_memfd": _bool_field("proc.exe_memfd = true", "proc.exe_memfd = false"),
    "proc.is_exe_upper_layer": _bool_field("proc.exe_upper_layer = true", "proc.exe_upper_layer = false"),
    "container.privileged": _bool_field("container.privileged = true", "container.privileged = false"),
}
