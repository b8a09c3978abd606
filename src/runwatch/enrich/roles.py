"""Workload roles: what a workload is, from what is known about it, never from process names.

A role is declared, not guessed: a container's ``runwatch.io/role`` label or annotation
(``model-server``, ``agent``, ``plugin-runner``, ``tool-sandbox``, ``sidecar``, or any
operator's own word), else the ``role`` of the policy that selects the container (asked through
``ContainerResolver.role_of`` when the container is first resolved), and an instrumented
process (one the agent SDK attached to) together with what it spawns is an ``agent``. Rules
about model servers and agents key on ``workload.role`` (``Event.role``), so host tooling that
is no declared workload is not their subject, and neither is runwatch itself or the command it
was asked to run, unless declared.
"""

from __future__ import annotations

from runwatch.events import Event

ROLE_LABEL = "runwatch.io/role"
"""The label (or OCI annotation) that declares a container's role."""

AGENT = "agent"
"""The role of an SDK-instrumented process and of the processes it spawns."""


def role_from_container(event: Event) -> None:
    """Give ``event`` its container's declared role, unless it already has one."""
    if event.role is None and event.container is not None and event.container.role:
        event.role = event.container.role
