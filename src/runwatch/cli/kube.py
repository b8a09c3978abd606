"""Options of ``run`` and ``watch`` for Kubernetes metadata and SPIFFE identity (off by default)."""

from __future__ import annotations

import os
import socket
from typing import Any

import click

from runwatch.enrich.workload import DEFAULT_SPIFFE_TEMPLATE, DEFAULT_TRUST_DOMAIN, SpiffeTemplate
from runwatch.session import KubeOptions, SessionOptions
from runwatch.svid.bundles import trust_bundles

KUBE_PARAMS: tuple[str, ...] = ("kube_api", "kubeconfig", "in_cluster", "kube_token_file", "node",
                                "trust_domain", "spiffe_template", "spiffe_bundle", "spiffe_socket")


def kube_options(f: Any) -> Any:
    """Adds the options named in :data:`KUBE_PARAMS`."""
    f = click.option("--kube-api", metavar="URL", help="Watch this node's pods on the Kubernetes API at URL "
                     "(list + watch, field selector spec.nodeName) for pod labels, service account, owner, image.")(f)
    f = click.option("--kubeconfig", metavar="FILE", help="Reach the Kubernetes API as kubeconfig FILE says.")(f)
    f = click.option("--in-cluster", is_flag=True, help="Reach the Kubernetes API with the pod's service account "
                     "(runwatch running as a DaemonSet).")(f)
    f = click.option("--kube-token-file", metavar="FILE", help="Bearer token for --kube-api.")(f)
    f = click.option("--node", metavar="NAME", help="The node whose pods to watch (default: $NODE_NAME, "
                     "else this host's name).")(f)
    f = click.option("--trust-domain", metavar="DOMAIN", default=DEFAULT_TRUST_DOMAIN, show_default=True,
                     help="Trust domain of the SPIFFE ids derived from Kubernetes facts.")(f)
    f = click.option("--spiffe-template", metavar="TEMPLATE", default=DEFAULT_SPIFFE_TEMPLATE, show_default=True,
                     help="How a SPIFFE id is derived; fields: {trust_domain}, {namespace}, {service_account}, "
                     "{pod}, {pod_uid}, {name}, {node}, {owner_kind}, {owner_name}.")(f)
    f = click.option("--spiffe-bundle", metavar="FILE", help="Verify the X.509-SVIDs agents report against the "
                     "PEM roots in FILE (the --trust-domain's bundle).")(f)
    f = click.option("--spiffe-socket", metavar="ENDPOINT", help="Else fetch the trust bundles from the SPIFFE "
                     "Workload API at ENDPOINT (unix:///path; default: $SPIFFE_ENDPOINT_SOCKET).")(f)
    return f


def with_kube(opts: SessionOptions, values: dict[str, Any]) -> None:
    """Fill the Kubernetes and SPIFFE fields of ``opts`` from the option ``values``."""
    try:
        SpiffeTemplate(values["trust_domain"], values["spiffe_template"])
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    opts.trust_domain, opts.spiffe_template = values["trust_domain"], values["spiffe_template"]
    if values.get("spiffe_bundle") and values.get("spiffe_socket"):
        raise click.UsageError("--spiffe-bundle and --spiffe-socket exclude each other")
    try:
        trust_bundles(values.get("spiffe_bundle"), opts.trust_domain, None)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    opts.spiffe_bundle, opts.spiffe_socket = values.get("spiffe_bundle"), values.get("spiffe_socket")
    chosen = [n for n in ("kube_api", "kubeconfig", "in_cluster") if values.get(n)]
    if len(chosen) > 1:
        raise click.UsageError("--kube-api, --kubeconfig and --in-cluster exclude each other")
    if not chosen:
        if values.get("node") or values.get("kube_token_file"):
            raise click.UsageError("--node and --kube-token-file need --kube-api, --kubeconfig or --in-cluster")
        return
    node = values.get("node") or os.environ.get("NODE_NAME") or socket.gethostname()
    opts.kube = KubeOptions(node=node, url=values.get("kube_api"), kubeconfig=values.get("kubeconfig"),
                            in_cluster=bool(values.get("in_cluster")), token_file=values.get("kube_token_file"))
