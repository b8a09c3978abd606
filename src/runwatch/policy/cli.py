"""Helpers behind ``runwatch approve|reject|challenges`` and ``runwatch policy suggest|check``.

Each returns what to print and raises :class:`PolicyCliError` with one line on failure, so
the command wrappers stay thin. Approve / reject / list go to the running runwatch over its
control socket (root only), never over the decide socket workloads can reach. runwatch
records who answered from the connection itself; ``by`` only travels as a note.
"""

from __future__ import annotations

import getpass
import os
from typing import TYPE_CHECKING, Any

from runwatch.policy.server import DEFAULT_CONTROL_SOCKET
from runwatch.policy.suggest import SuggestError
from runwatch.policy.suggest import cli_suggest as _suggest

if TYPE_CHECKING:
    from runwatch.config.errors import ConfigWarning
    from runwatch.policy.loader import PolicyError


class PolicyCliError(Exception):
    """A policy command failed (one-line message)."""


def _client_request(socket_path: str, method: str, target: str, body: Any = None) -> tuple[int, Any]:
    from runwatch.sdk.policy import PolicyClient

    if not os.path.exists(socket_path):
        raise PolicyCliError(f"{socket_path}: no runwatch is serving policy decisions here "
                             "(start `runwatch run --policy ...` or `runwatch watch --policy ...`)")
    try:
        return PolicyClient(socket_path, timeout_s=5.0).request(method, target, body)
    except Exception as exc:
        raise PolicyCliError(f"{socket_path}: runwatch did not answer: {exc}") from None


def _operator() -> str:
    user = os.environ.get("SUDO_USER")
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:
        return f"uid {os.getuid()}"


def _answer(verb: str, challenge_id: str, socket_path: str, by: str | None) -> str:
    cid = challenge_id.strip()
    if not cid or "/" in cid or "?" in cid:
        raise PolicyCliError(f"not a challenge id: {challenge_id!r}")
    status, ans = _client_request(socket_path, "POST", f"/v1/challenges/{cid}/{verb}",
                                  {"note": by or _operator()})
    if status != 200:
        err = ans.get("error") if isinstance(ans, dict) else ans
        raise PolicyCliError(str(err or f"HTTP {status}"))
    return (f"challenge {cid} {'approved' if verb == 'approve' else 'rejected'}: tool {ans.get('tool')!r} "
            f"of {ans.get('container') or ans.get('exe') or 'pid ' + str(ans.get('pid'))} -> {ans.get('outcome')}")


def cli_approve(challenge_id: str, socket_path: str = DEFAULT_CONTROL_SOCKET, by: str | None = None) -> str:
    """Approve a pending challenge; returns the line to print."""
    return _answer("approve", challenge_id, socket_path, by)


def cli_reject(challenge_id: str, socket_path: str = DEFAULT_CONTROL_SOCKET, by: str | None = None) -> str:
    """Reject a pending challenge; returns the line to print."""
    return _answer("reject", challenge_id, socket_path, by)


def cli_challenges(socket_path: str = DEFAULT_CONTROL_SOCKET) -> list[dict[str, Any]]:
    """The pending challenges (dicts: id, policy, tool, rule, agent, pid, exe, container, expires_in_s, ...)."""
    status, ans = _client_request(socket_path, "GET", "/v1/challenges")
    if status != 200 or not isinstance(ans, dict):
        raise PolicyCliError(str(ans.get("error") if isinstance(ans, dict) else f"HTTP {status}"))
    out: list[dict[str, Any]] = ans.get("challenges", [])
    return out


def format_challenges(items: list[dict[str, Any]]) -> str:
    """One line per pending challenge (or a line saying there are none)."""
    if not items:
        return "no pending challenges"
    lines = []
    for c in items:
        who = c.get("container") or c.get("exe") or f"pid {c.get('pid')}"
        agent = f" agent {c['agent']}" if c.get("agent") else ""
        lines.append(f"{c['id']}  {c['tool']}  policy {c['policy']}  {who}{agent}  "
                     f"{c.get('expires_in_s', 0):.0f}s left (then fail {c.get('fail')})")
    return "\n".join(lines)


def cli_suggest(db: str, container: str, output: str | None = None) -> str:
    """``runwatch policy suggest``: the YAML text (also written to ``output`` when given)."""
    try:
        return _suggest(db, container, output)
    except SuggestError as exc:
        raise PolicyCliError(str(exc)) from None


def cli_check(paths: list[str]) -> tuple[list[PolicyError], list[ConfigWarning]]:
    """``runwatch policy check PATH...``: every located error and warning (no errors: valid)."""
    from runwatch.policy.loader import lint_policies

    return lint_policies(paths)
