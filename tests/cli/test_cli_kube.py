"""The Kubernetes and SPIFFE options of run/watch: mistakes are one usage line, exit 2, nothing started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))


@pytest.mark.parametrize(("args", "message"), [
    (["--node", "n1"], "--node and --kube-token-file need --kube-api, --kubeconfig or --in-cluster"),
    (["--kube-api", "http://127.0.0.1:1", "--in-cluster"],
     "--kube-api, --kubeconfig and --in-cluster exclude each other"),
    (["--trust-domain", "Corp/x"], "trust domain 'Corp/x': only lower-case letters, digits, '.', '-' and '_'"),
    (["--spiffe-template", "spiffe://{trust_domain}/{image}"],
     "SPIFFE template: unknown field(s) image; known: trust_domain, namespace, service_account, pod, pod_uid, name, "
     "node, owner_kind, owner_name"),
])
def test_kube_option_mistakes_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    res = subprocess.run([RUNWATCH, "watch", "--db", str(tmp_path / "w.db"), "--duration", "1", *args],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"runwatch: error: {message} (see `runwatch watch --help`)"]
    assert not (tmp_path / "w.db").exists()
