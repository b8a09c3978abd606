"""The Kubernetes manifests, the Helm chart and the systemd unit, checked against the real things:
the official client's object models, runwatch's own command line, and systemd's verifier."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from kubernetes.client import ApiClient

from runwatch.cli import cli as cli_main
from runwatch.testing.chart import ChartError, plain_manifests, render_chart, render_template

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "runwatch"
PLAIN = ROOT / "deploy" / "kubernetes" / "runwatch.yaml"
UNIT = ROOT / "deploy" / "systemd" / "runwatch.service"

MODELS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("apps/v1", "DaemonSet"): "V1DaemonSet",
    ("apps/v1", "Deployment"): "V1Deployment",
}


def as_model(obj: dict[str, Any]) -> Any:
    """``obj`` as the client's model of its kind; a key the model does not know fails the round trip."""
    client = ApiClient()
    model = client.deserialize(json.dumps(obj), MODELS[(obj["apiVersion"], obj["kind"])], "application/json")
    assert client.sanitize_for_serialization(model) == obj, f"{obj['kind']}: a key the API does not have"
    return model


def parse_cli(args: list[str]) -> click.Context:
    """Parse ``runwatch ARGS`` with the real command line, without running it."""
    ctx = click.Context(cli_main, info_name="runwatch")
    cmd = cli_main.get_command(ctx, args[0])
    assert cmd is not None, f"no command {args[0]!r}"
    return cmd.make_context(args[0], list(args[1:]), parent=ctx)


def test_the_plain_manifests_are_the_charts_default_render() -> None:
    assert PLAIN.read_text() == plain_manifests(CHART)


def test_every_object_is_a_valid_kubernetes_object() -> None:
    objects = list(yaml.safe_load_all(PLAIN.read_text()))
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "DaemonSet", "Deployment", "Namespace", "ServiceAccount"]
    for obj in objects:
        as_model(obj)


def test_the_agent_daemonset_has_what_the_sensor_needs() -> None:
    ds = next(as_model(o) for o in render_chart(CHART) if o["kind"] == "DaemonSet")
    pod = ds.spec.template.spec
    assert pod.host_pid is True
    assert ds.spec.selector.match_labels.items() <= ds.spec.template.metadata.labels.items()
    (agent,) = pod.containers
    assert agent.security_context.privileged is True
    env = {e.name: e.value_from.field_ref.field_path for e in agent.env}
    assert env == {"NODE_NAME": "spec.nodeName"}  # the node whose pods --in-cluster watches
    mounts = {m.mount_path: m for m in agent.volume_mounts}
    assert mounts["/sys/fs/bpf"].mount_propagation == "Bidirectional"  # pins outlive the pod
    assert mounts["/sys/fs/cgroup"].read_only is True
    host_paths = {v.name: v.host_path.path for v in pod.volumes}
    assert {m.name for m in agent.volume_mounts} == set(host_paths)
    assert host_paths["bpffs"] == "/sys/fs/bpf" and host_paths["data"] == "/var/lib/runwatch"
    ctx = parse_cli(agent.args)
    assert ctx.info_name == "watch"
    assert ctx.params["in_cluster"] is True and ctx.params["db"] == "/var/lib/runwatch/runwatch.db"
    assert ctx.params["trust_domain"] == "cluster.local"


def test_agents_and_workers_meet_on_one_stream() -> None:
    objects = {o["kind"]: as_model(o) for o in render_chart(CHART)}
    (agent,) = objects["DaemonSet"].spec.template.spec.containers
    worker_pod = objects["Deployment"].spec.template.spec
    (worker,) = worker_pod.containers
    a, w = parse_cli(agent.args), parse_cli(worker.args)
    assert (a.info_name, w.info_name) == ("watch", "worker")
    assert a.params["nats"] == w.params["url"] == "nats://nats.runwatch.svc:4222"
    assert a.params["partitions"] == w.params["partitions"] == 16  # subjects and consumers must agree
    assert a.params["cluster"] == "default" and a.params["nats_spool"] == "/var/lib/runwatch/nats-spool"
    assert objects["Deployment"].spec.replicas == 2
    # the workers need nothing of the host: no privileges, no host paths, no API token
    assert worker.security_context.privileged is None and worker.security_context.capabilities.drop == ["ALL"]
    assert worker_pod.security_context.run_as_non_root is True and worker_pod.host_pid is None
    assert worker_pod.automount_service_account_token is False
    assert [v.host_path for v in worker_pod.volumes] == [None, None]
    assert w.params["db"] == "/var/lib/runwatch/worker.db"
    assert {m.mount_path for m in worker.volume_mounts} == {"/var/lib/runwatch", "/tmp"}  # the root is read-only


def test_the_agents_role_grants_exactly_what_the_pod_watcher_uses() -> None:
    objects = {o["kind"]: as_model(o) for o in render_chart(CHART, release="rw", namespace="sec")}
    (rule,) = objects["ClusterRole"].rules
    assert (rule.api_groups, rule.resources, sorted(rule.verbs)) == ([""], ["pods"], ["get", "list", "watch"])
    binding = objects["ClusterRoleBinding"]
    assert binding.role_ref.name == objects["ClusterRole"].metadata.name == "rw-agent"
    (subject,) = binding.subjects
    assert (subject.kind, subject.name, subject.namespace) == ("ServiceAccount", "rw-agent", "sec")
    # the pod watcher (enrich/k8s.py) lists and watches pods of all namespaces, nothing else
    assert objects["DaemonSet"].spec.template.spec.service_account_name == "rw-agent"


def test_values_flow_into_the_render() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    values["image"]["tag"] = "9.9.9"
    values["agent"]["resources"] = {"limits": {"memory": "777Mi"}}
    ds = next(as_model(o) for o in render_chart(CHART, values=values) if o["kind"] == "DaemonSet")
    (agent,) = ds.spec.template.spec.containers
    assert agent.image == "localhost/runwatch:9.9.9"
    assert agent.resources.limits == {"memory": "777Mi"} and agent.resources.requests is None


@pytest.mark.parametrize(("template", "message"), [
    ("a: 1\nb: {{ if .Values.x }}\n", "t.yaml:2: unsupported reference 'if .Values.x'"),
    ("a: {{ .Values.nope }}\n", "t.yaml:1: .Values.nope is not set"),
    ("a:\n\n  b: {{ .Values.image }}\n", "t.yaml:3: .Values.image is a dict; use toYaml"),
])
def test_constructs_outside_the_subset_are_refused_with_file_and_line(template: str, message: str) -> None:
    scope = {"Values": {"image": {"tag": "1"}}, "Release": {}, "Chart": {}}
    with pytest.raises(ChartError) as err:
        render_template(template, scope, "t.yaml")
    assert str(err.value) == message


def _unit_values() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def test_the_systemd_unit_runs_a_watch_that_parses() -> None:
    argv = shlex.split(_unit_values()["ExecStart"])
    assert argv[0] == "/opt/runwatch/bin/runwatch"
    ctx = parse_cli(argv[1:])
    assert ctx.info_name == "watch" and ctx.params["db"] == "/var/lib/runwatch/runwatch.db"
    assert _unit_values()["KillSignal"] == "SIGTERM"  # what watch drains and flushes on


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_verifies_the_unit_without_a_complaint(tmp_path: Path) -> None:
    runwatch = shutil.which("runwatch") or str(Path(__file__).resolve().parents[2] / ".venv/bin/runwatch")
    unit = tmp_path / "runwatch.service"
    unit.write_text(UNIT.read_text().replace("/opt/runwatch/bin/runwatch", runwatch))
    res = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stderr.strip()) == (0, "")
    unit.write_text(unit.read_text().replace("KillSignal=", "KilSignal="))
    res = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert "Unknown key 'KilSignal'" in res.stderr  # the check can fail
