"""Kernel enforcement of policies on containers: egress (cgroup BPF), files and exec
(fanotify permission events) and kill at exec (BPF ``bpf_send_signal``).

Public API::

    enf = Enforcers(on_decision=callback)   # callback(Enforcement), called on one thread
    enf.start()                             # load BPF, start the responder and dispatcher
    notices = enf.apply(container, policy)  # container: Target (RuncContainer fits); policy: model.Policy
    enf.remove(container.id)
    enf.stop()                              # detach everything (a crash does the same)

``decision_event(decision)`` turns an :class:`Enforcement` into a ``policy.decision`` Event.
See docs/enforcement.md.
"""

from runwatch.policy.enforce.facade import Enforcers
from runwatch.policy.enforce.spec import Enforcement, EnforcementError, Hold, Target, decision_event

__all__ = ["Enforcement", "EnforcementError", "Enforcers", "Hold", "Target", "decision_event"]
