"""Render the project's Helm chart without Helm, for tests and for the plain manifests.

The chart under ``deploy/helm/runwatch`` is kept to a small subset of Helm's template
language so that it can be checked here, where no Helm binary exists: value references
(``{{ .Values.a.b }}``, ``{{ .Release.Name }}``, ``{{ .Release.Namespace }}``,
``{{ .Chart.AppVersion }}``, ``{{ .Chart.Version }}``) and ``{{- toYaml .Values.x | nindent N }}``.
For that subset Helm's output is the plain substitution done here; any other action is refused
with the template's file:line, so the chart cannot grow a construct the tests do not render.

``python -m runwatch.testing.chart CHART OUT`` writes the default render (with a Namespace
object first) to OUT: ``deploy/kubernetes/runwatch.yaml`` is that file.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

_REF = re.compile(r"\.(Values|Release|Chart)((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
_TO_YAML = re.compile(r"toYaml\s+(?P<ref>\S+)\s*\|\s*nindent\s+(?P<n>\d+)")


class ChartError(ValueError):
    """A template uses a construct outside the supported subset, or names a missing value."""


def _lookup(ref: str, scope: dict[str, Any], where: str) -> Any:
    m = _REF.fullmatch(ref)
    if not m:
        raise ChartError(f"{where}: unsupported reference {ref!r}")
    node: Any = scope[m.group(1)]
    for key in m.group(2).split(".")[1:]:
        if not isinstance(node, dict) or key not in node:
            raise ChartError(f"{where}: {ref} is not set")
        node = node[key]
    return node


def render_template(text: str, scope: dict[str, Any], name: str) -> str:
    """Render one template file's text; ``name`` is used in error messages."""
    out: list[str] = []
    pos = 0
    for m in re.finditer(r"\{\{(-)?\s*(.*?)\s*(-)?\}\}", text):
        where = f"{name}:{text.count(chr(10), 0, m.start()) + 1}"
        chunk = text[pos:m.start()]
        if m.group(1):
            chunk = chunk.rstrip(" \t\n")
        out.append(chunk)
        body = m.group(2)
        if (ty := _TO_YAML.fullmatch(body)) is not None:
            value = _lookup(ty.group("ref"), scope, where)
            pad = " " * int(ty.group("n"))
            dumped = yaml.safe_dump(value, sort_keys=False, default_flow_style=False).rstrip("\n")
            out.append("\n" + "\n".join(pad + line for line in dumped.splitlines()))
        else:
            value = _lookup(body, scope, where)
            if isinstance(value, (dict, list)):
                raise ChartError(f"{where}: {body} is a {type(value).__name__}; use toYaml")
            out.append(str(value))
        pos = m.end()
        if m.group(3):
            rest = text[pos:]
            pos += len(rest) - len(rest.lstrip(" \t\n"))
    out.append(text[pos:])
    return "".join(out)


def render_chart(chart: Path, release: str = "runwatch", namespace: str = "runwatch",
                 values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every object of the chart's templates (sorted by file name), rendered with ``values``
    (default: the chart's values.yaml)."""
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    scope = {
        "Values": values if values is not None else yaml.safe_load((chart / "values.yaml").read_text()),
        "Release": {"Name": release, "Namespace": namespace},
        "Chart": {"Name": meta["name"], "Version": meta["version"], "AppVersion": meta["appVersion"]},
    }
    objects: list[dict[str, Any]] = []
    for tpl in sorted((chart / "templates").glob("*.yaml")):
        rendered = render_template(tpl.read_text(), scope, f"{tpl.parent.name}/{tpl.name}")
        objects.extend(doc for doc in yaml.safe_load_all(rendered) if doc)
    return objects


def plain_manifests(chart: Path, namespace: str = "runwatch") -> str:
    """The default render as one multi-document YAML file, a Namespace object first."""
    docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}]
    docs.extend(render_chart(chart, namespace=namespace))
    head = ("# Generated from deploy/helm/runwatch with its default values:\n"
            "#   python -m runwatch.testing.chart deploy/helm/runwatch deploy/kubernetes/runwatch.yaml\n")
    return head + yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)


def main(argv: list[str]) -> int:
    """``python -m runwatch.testing.chart CHART OUT``."""
    if len(argv) != 2:
        print("usage: python -m runwatch.testing.chart CHART OUT", file=sys.stderr)
        return 2
    try:
        text = plain_manifests(Path(argv[0]))
    except (ChartError, OSError, yaml.YAMLError) as exc:
        print(f"chart: {exc}", file=sys.stderr)
        return 1
    Path(argv[1]).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
