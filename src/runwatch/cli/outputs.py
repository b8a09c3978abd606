"""Options of ``run`` and ``watch`` for the alert and event outputs (webhook, Slack, syslog, OCSF, OTLP).

``--outputs FILE`` reads the outputs file (:mod:`runwatch.outputs.config`); ``--webhook``,
``--syslog`` and ``--ocsf-out`` are shortcuts for one output each; the ``--otlp-*`` options
shape the ``--otlp-export`` output. Every problem is reported before anything starts: the
file's as ``file:line:col: message`` lines, the options' as one usage line.
"""

from __future__ import annotations

import os
from typing import Any

import click

from runwatch.cli.common import config_problems, fail
from runwatch.outputs.config import (
    DEFAULT_SPOOL,
    OutputsLoadError,
    default_spool_root,
    load_outputs,
    shortcut_specs,
)
from runwatch.outputs.http import TlsOptions, read_headers
from runwatch.session import SessionOptions

OUTPUT_PARAMS: tuple[str, ...] = ("outputs_file", "webhook", "webhook_secret_file", "syslog", "ocsf_out",
                                  "otlp_compression", "otlp_header", "otlp_headers_file", "otlp_ca_file",
                                  "otlp_client_cert", "otlp_client_key", "otlp_insecure")


def output_options(f: Any) -> Any:
    """Adds the options named in :data:`OUTPUT_PARAMS`."""
    f = click.option("--outputs", "outputs_file", metavar="FILE", help="Send alerts and events to the outputs "
                     "FILE declares (webhook, slack, syslog, ocsf, otlp; routes by severity, tags, owner); see "
                     "docs/outputs.md.")(f)
    f = click.option("--webhook", metavar="URL", help="POST every alert as JSON to URL (retried, spooled to "
                     "disk while the endpoint is down).")(f)
    f = click.option("--webhook-secret-file", metavar="FILE", help="Sign --webhook bodies with HMAC-SHA256 "
                     "under the secret in FILE (header X-Runwatch-Signature: sha256=<hex>).")(f)
    f = click.option("--syslog", metavar="URL", help="Send every alert as an RFC 5424 message to "
                     "udp://HOST:PORT or tcp://HOST:PORT (octet counting).")(f)
    f = click.option("--ocsf-out", metavar="FILE", help="Append every event and alert as OCSF JSON lines to "
                     "FILE while running ('-' for stdout).")(f)
    f = click.option("--otlp-compression", type=click.Choice(["gzip", "none"]), default="gzip",
                     show_default=True, help="Compression of --otlp-export requests.")(f)
    f = click.option("--otlp-header", multiple=True, metavar="'NAME: VALUE'",
                     help="Header on every --otlp-export request (e.g. authorization); repeatable.")(f)
    f = click.option("--otlp-headers-file", metavar="FILE", help="Headers for --otlp-export, one "
                     "'Name: value' per line (keeps tokens off the command line).")(f)
    f = click.option("--otlp-ca-file", metavar="FILE", help="CA certificates trusted for an https "
                     "--otlp-export.")(f)
    f = click.option("--otlp-client-cert", metavar="FILE", help="Client certificate (PEM) for an https "
                     "--otlp-export.")(f)
    f = click.option("--otlp-client-key", metavar="FILE", help="Key of --otlp-client-cert (when not in "
                     "the same file).")(f)
    f = click.option("--otlp-insecure", is_flag=True, help="Do not verify the certificate of an https "
                     "--otlp-export endpoint.")(f)
    return f


def _otlp(opts: SessionOptions, values: dict[str, Any], spool_root: str) -> None:
    header_opts = ("otlp_header", "otlp_headers_file", "otlp_ca_file", "otlp_client_cert", "otlp_client_key",
                   "otlp_insecure")
    if opts.otlp_export is None:
        given = [n for n in header_opts if values.get(n)] + (
            ["otlp_compression"] if values.get("otlp_compression", "gzip") != "gzip" else [])
        if given:
            raise click.UsageError(f"--{given[0].replace('_', '-')} needs --otlp-export")
        return
    headers: dict[str, str] = {}
    if values.get("otlp_headers_file"):
        try:
            headers.update(read_headers(values["otlp_headers_file"]))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    for text in values.get("otlp_header") or ():
        name, sep, value = text.partition(":")
        if not sep or not name.strip():
            raise click.UsageError(f"--otlp-header expects 'NAME: VALUE', got {text[:60]!r}")
        headers[name.strip()] = value.strip()
    for key in ("otlp_ca_file", "otlp_client_cert", "otlp_client_key"):
        path = values.get(key)
        if path and not os.path.isfile(path):
            raise click.UsageError(f"--{key.replace('_', '-')}: no such file {path}")
    if values.get("otlp_client_key") and not values.get("otlp_client_cert"):
        raise click.UsageError("--otlp-client-key needs --otlp-client-cert")
    tls = TlsOptions(values.get("otlp_ca_file"), values.get("otlp_client_cert"), values.get("otlp_client_key"),
                     bool(values.get("otlp_insecure")))
    try:
        tls.context()
    except ValueError as exc:
        raise click.UsageError(f"--otlp-export: {exc}") from None
    opts.otlp_options = {
        "compression": values.get("otlp_compression") or "gzip", "headers": headers or None, "tls": tls,
        "spool_dir": os.path.join(spool_root, "otlp"), "spool_limits": DEFAULT_SPOOL,
    }


def with_outputs(opts: SessionOptions, values: dict[str, Any]) -> None:
    """Fill the outputs of ``opts`` from the option ``values`` (file errors: located lines, then exit 1)."""
    spool_root = default_spool_root(opts.db)
    _otlp(opts, values, spool_root)
    path = values.get("outputs_file")
    if path:
        try:
            opts.outputs.extend(load_outputs(path, spool_root))
        except OutputsLoadError as exc:
            config_problems(exc.errors)
            fail(f"{len(exc.errors)} error(s) in the outputs file {path}; nothing was started")
    try:
        shortcuts = shortcut_specs(spool_root, webhook=values.get("webhook"),
                                   secret_file=values.get("webhook_secret_file"), syslog=values.get("syslog"),
                                   ocsf_out=values.get("ocsf_out"))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    taken = {s.name for s in opts.outputs}
    for spec in shortcuts:
        if spec.name in taken:
            raise click.UsageError(f"--{spec.type if spec.type != 'ocsf' else 'ocsf-out'}: the outputs file "
                                   f"already has an output named {spec.name!r}")
    opts.outputs.extend(shortcuts)


def output_lines(summary: dict[str, Any]) -> list[str]:
    """One line per network output for the run summary: what it sent, retried, spooled and dropped."""
    lines = []
    for name, st in sorted((summary.get("outputs") or {}).items()):
        parts = [f"sent {st.get('sent', 0)}", f"retried {st.get('retried', 0)}", f"spooled {st.get('spooled', 0)}",
                 f"dropped {st.get('dropped', 0)}"]
        if st.get("filtered"):
            parts.append(f"filtered {st['filtered']}")
        if st.get("recovered"):
            parts.append(f"{st['recovered']} from the last run's spool")
        if st.get("pending"):
            parts.append(f"{st['pending']} left in the spool {st.get('spool')} for the next run")
        line = f"output {name}: {', '.join(parts)}"
        if st.get("failures"):
            line += f"; {st['failures']} failed attempt(s), last: {st.get('last_error')}"
        lines.append(line)
    return lines
