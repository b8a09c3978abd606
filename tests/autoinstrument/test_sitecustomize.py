"""The sitecustomize switch and the .pth line: a plain ``python script.py`` gets instrumented."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from runwatch.events import ToolCall
from runwatch.sdk.autowrap import SITE_DIR
from runwatch.sdk.run import PTH_LINE
from runwatch.sensors.inproc.collector import SdkCollector

SCRIPT = textwrap.dedent("""
    import subprocess, sys
    from runwatch import sdk
    from runwatch.sdk import audithook
    with sdk.tool_call("shell", call_id="c-23"):
        subprocess.run(["/usr/bin/true", "site"], check=True)
    print("active", audithook.is_active(), sys.argv[1:])
""")


def test_pythonpath_switch_instruments_a_plain_run(tmp_path: Path, collector: SdkCollector, helpers: Any) -> None:
    script = tmp_path / "agent.py"
    script.write_text(SCRIPT)
    env = helpers.child_env(collector.path, PYTHONPATH=SITE_DIR, RUNWATCH_AGENT="site-agent")
    res = helpers.run_py([str(script), "x"], env)
    assert (res.returncode, res.stdout, res.stderr) == (0, "active True ['x']\n", "")
    events = helpers.drain(collector)
    assert [e.kind for e in events if e.source == "sdk"] == ["sensor.notice", "tool.start", "tool.end"]
    assert events[0].ai is not None and events[0].ai.agent == "site-agent"
    execs = [e for e in events if e.source == "audit" and e.kind == "process.exec"]
    assert [(e.argv, e.tool_call) for e in execs] == [(["/usr/bin/true", "site"], ToolCall("shell", "c-23"))]


def test_switch_off_and_chained_sitecustomize(tmp_path: Path, collector: SdkCollector, helpers: Any) -> None:
    script = tmp_path / "agent.py"
    script.write_text(SCRIPT)
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import builtins\nbuiltins.RW_CHAINED = 23\n")
    check = tmp_path / "chained.py"
    check.write_text("import builtins\nprint(getattr(builtins, 'RW_CHAINED', None))\n")
    env = helpers.child_env(collector.path, PYTHONPATH=f"{SITE_DIR}:{other}")
    chained = helpers.run_py([str(check)], env)
    assert (chained.returncode, chained.stdout) == (0, "23\n")
    off = helpers.run_py([str(script)], {**env, "RUNWATCH_AUTOINSTRUMENT": "0"})
    assert (off.returncode, off.stdout) == (0, "active False []\n")
    events = helpers.drain(collector)
    # The chained run announced itself; the switched-off run sent its own tool calls only.
    # A sitecustomize executed from a writable directory is itself a module load worth reporting.
    loads = [e.ai for e in events if e.source == "audit"]
    assert [(a.plugin, a.plugin_source) for a in loads if a] == [
        ("sitecustomize", str(other / "sitecustomize.py"))]
    assert sorted(e.kind for e in events) == ["plugin.load", "sensor.notice", "tool.end", "tool.start"]


def test_pth_line_turns_on_with_the_environment_variable(tmp_path: Path, collector: SdkCollector,
                                                         helpers: Any) -> None:
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "runwatch-autoinstrument.pth").write_text(PTH_LINE)
    code = (f"import site, subprocess; site.addsitedir({str(site_dir)!r}); "
            "subprocess.run(['/usr/bin/true', 'pth'], check=True)")
    env = helpers.child_env(collector.path)
    for value in ("0", "1"):
        res = helpers.run_py(["-c", code], {**env, "RUNWATCH_AUTOINSTRUMENT": value})
        assert res.returncode == 0, res.stderr
    events = helpers.drain(collector)
    assert [(e.kind, e.argv) for e in events] == [("sensor.notice", None), ("process.exec", ["/usr/bin/true", "pth"])]
