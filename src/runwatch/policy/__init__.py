"""Policy: what a workload may do, decided at request time and enforced in the kernel.

This package imports without the CLI, the store or any sink. Public API::

    load_policies(paths) -> PolicySet          # raises PolicyLoadError listing every located error
    lint_policies(paths) -> (errors, warnings) # warnings: ConfigWarning, path:line:col
    PolicySet.select(workload) / for_container(container) / for_process(exe) -> Policy | None
    Policy.tool_verdict / exec_verdict / egress_verdict / file_verdict -> (verdict, rule)

The model (:mod:`runwatch.policy.model`) documents what enforcers read. Request-time
decisions live in :mod:`runwatch.policy.decide`, the HTTP endpoint in
:mod:`runwatch.policy.server`, challenges in :mod:`runwatch.policy.challenges`, decision
events in :mod:`runwatch.policy.source` and ``policy suggest`` in :mod:`runwatch.policy.suggest`.
Kernel enforcers are in :mod:`runwatch.policy.enforce`.
"""

from runwatch.policy.loader import (
    PolicyError,
    PolicyLoadError,
    check_policies,
    lint_policies,
    load_policies,
    load_policy_texts,
)
from runwatch.policy.model import (
    VERDICTS,
    EgressRule,
    EgressRules,
    ExecRules,
    FileRules,
    Policy,
    PolicySet,
    ProtectedFile,
    Selector,
    ToolRules,
    Workload,
)

__all__ = [
    "VERDICTS",
    "EgressRule",
    "EgressRules",
    "ExecRules",
    "FileRules",
    "Policy",
    "PolicyError",
    "PolicyLoadError",
    "PolicySet",
    "ProtectedFile",
    "Selector",
    "ToolRules",
    "Workload",
    "check_policies",
    "lint_policies",
    "load_policies",
    "load_policy_texts",
]
