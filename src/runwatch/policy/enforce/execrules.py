"""A policy's ``exec`` rules judged for one executable, by inode and by path.

Shared by the fanotify exec check (every exec in a policed container) and the check of a
held container's entrypoint (which ran its exec before the policy was bound). Literal
rules are resolved to (st_dev, st_ino) in the container's view once, when the policy is
applied, so a symlink, hard link or ``./x`` matches them; globs match the path as the
container sees it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from runwatch.policy.enforce.paths import resolve_in_root
from runwatch.policy.model import ExecRules, first_match, is_glob

Key = tuple[int, int]

LOADERS: tuple[str, ...] = (
    "/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1",
    "/lib/ld-musl-x86_64.so.1", "/lib/ld-musl-aarch64.so.1",
)
"""ELF interpreters: execve opens them with exec intent too, so an exec allow list admits them."""


def stopped_loaders(rules: ExecRules) -> tuple[str, ...]:
    """The ELF loaders an exec policy stops when one is run as a program (``ld.so PROG``):
    every one, unless ``exec.allow`` names it."""
    return tuple(p for p in LOADERS if rules.allow is None or first_match(rules.allow, p) is None)


def literal_keys(root: str, patterns: tuple[str, ...], notices: list[str], what: str) -> set[Key]:
    """Inodes of the literal (non-glob, non-``dir/``) patterns in the view of ``root``
    (``/proc/<pid>/root``); a missing one is a notice ``"<what> <pattern>: not found ..."``."""
    keys: set[Key] = set()
    for pattern in patterns:
        if is_glob(pattern) or pattern.endswith("/"):
            continue
        try:
            st = os.stat(resolve_in_root(root, pattern))
        except OSError as exc:
            notices.append(f"{what} {pattern}: not found in the container ({exc.strerror})")
            continue
        keys.add((st.st_dev, st.st_ino))
    return keys


@dataclass
class ExecIndex:
    """The literal rules of one policy resolved to inodes in one container."""

    rules: ExecRules
    deny: dict[Key, str] = field(default_factory=dict)
    allow: dict[Key, str] = field(default_factory=dict)

    @classmethod
    def build(cls, rules: ExecRules, root: str, notices: list[str]) -> ExecIndex:
        """Resolve ``rules`` in the view of ``root``; under an allow list the ELF loaders
        are admitted (a dynamic program's exec opens its loader with exec intent)."""
        index = cls(rules)
        for pattern in rules.deny:
            for key in literal_keys(root, (pattern,), notices, "exec.deny"):
                index.deny[key] = pattern
        for pattern in rules.allow or ():
            for key in literal_keys(root, (pattern,), notices, "exec.allow"):
                index.allow[key] = pattern
        if rules.allow is not None:
            for key in literal_keys(root, LOADERS, [], "loader"):
                index.allow.setdefault(key, "(ELF interpreter)")
        return index

    def verdict(self, path: str, key: Key) -> tuple[str, str]:
        """``("allow" | "deny", rule)`` for the executable ``key`` seen at ``path``."""
        rules = self.rules
        if key in self.deny:
            return "deny", f"exec.deny:{self.deny[key]}"
        hit = first_match(rules.deny, path)
        if hit is not None:
            return "deny", f"exec.deny:{hit}"
        if rules.allow is None:
            return "allow", "exec.unlisted"
        if key in self.allow:
            return "allow", f"exec.allow:{self.allow[key]}"
        hit = first_match(rules.allow, path)
        return ("allow", f"exec.allow:{hit}") if hit is not None else ("deny", "exec.default")
