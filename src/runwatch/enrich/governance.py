"""Workload governance: who answers for a workload, whom to escalate to, and when it is reviewed.

Declared, never guessed, in this order for each of the three facts:

1. the container's ``runwatch.io/owner``, ``runwatch.io/escalation`` and ``runwatch.io/review-by``
   OCI annotation or runtime label (read where ``runwatch.io/role`` is, by the resolver),
2. the same keys among the pod's labels, then its annotations (the Kubernetes API, podman's record),
3. the ``owner:``, ``escalation:`` and ``review_by:`` metadata of the policy that selects the
   container (asked through :data:`GovernanceOf`).

``review_by`` is an ISO date (``YYYY-MM-DD``); a label whose value is no such date is ignored (the
workload then has no review date and :func:`review_status` calls it ``missing``), while a policy
file with a bad value fails to load with its ``file:line``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import NamedTuple

import msgspec

from runwatch.events import Container

OWNER_LABEL = "runwatch.io/owner"
ESCALATION_LABEL = "runwatch.io/escalation"
REVIEW_BY_LABEL = "runwatch.io/review-by"
LABELS: tuple[str, str, str] = (OWNER_LABEL, ESCALATION_LABEL, REVIEW_BY_LABEL)
"""The label (or annotation) of each :class:`Governance` field, in field order."""

REVIEW_STATES: tuple[str, ...] = ("ok", "overdue", "missing")


class Governance(NamedTuple):
    """A workload's owner, escalation contact and review date (each None when undeclared)."""

    owner: str | None = None
    escalation: str | None = None
    review_by: str | None = None


GovernanceOf = Callable[[Container], Governance | None]
"""Asked for the governance metadata of the policy selecting a container (None: no policy)."""


def parse_review_by(value: object) -> str:
    """``value`` as an ISO date string ``YYYY-MM-DD``; raises ValueError with a one-line reason."""
    if isinstance(value, datetime.datetime):
        raise ValueError(f"review_by must be a date (YYYY-MM-DD), not a time {value.isoformat()!r}")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            if len(value) == 10:
                return datetime.date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise ValueError(f"review_by must be a date (YYYY-MM-DD), not {value!r}")


def from_labels(*sources: Mapping[str, str] | None) -> Governance:
    """The governance the first of ``sources`` declaring each key gives (labels, then annotations)."""
    values: list[str | None] = []
    for key in LABELS:
        found: str | None = None
        for labels in sources:
            v = labels.get(key) if labels else None
            if not isinstance(v, str) or not v.strip():
                continue
            if key == REVIEW_BY_LABEL:
                try:
                    v = parse_review_by(v.strip())
                except ValueError:
                    continue
            found = v.strip()
            break
        values.append(found)
    return Governance(*values)


def apply(c: Container, policy_of: GovernanceOf | None = None) -> Container:
    """``c`` with each governance fact it lacks from its labels and annotations, then its policy."""
    have = Governance(c.owner, c.escalation, c.review_by)
    if None not in have:
        return c
    merged = _fill(have, from_labels(c.labels, c.annotations))
    if None in merged and policy_of is not None:
        declared = policy_of(c)
        if declared is not None:
            merged = _fill(merged, declared)
    if merged == have:
        return c
    return msgspec.structs.replace(c, **{k: v for k, v in merged._asdict().items() if v is not None})


def _fill(have: Governance, more: Governance) -> Governance:
    return Governance(*(a if a is not None else b for a, b in zip(have, more, strict=True)))


def review_status(review_by: str | None, today: datetime.date) -> str:
    """``ok``, ``overdue`` (the date is before ``today``) or ``missing`` (no valid date)."""
    if not review_by:
        return "missing"
    try:
        day = datetime.date.fromisoformat(review_by)
    except ValueError:
        return "missing"
    return "overdue" if day < today else "ok"
