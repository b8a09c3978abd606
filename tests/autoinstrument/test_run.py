"""``python -m runwatch.sdk.run``: same output and exit status as a plain run, with or without a collector."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runwatch.events import ToolCall
from runwatch.sensors.inproc.collector import SdkCollector

SCRIPTS = {
    "ok": """
        import sys
        print("argv", sys.argv[1:], __name__, sys.path[0] == __import__("os").path.dirname(__file__))
        print("file", __file__.endswith("ok.py"))
    """,
    "exit23": """
        import subprocess, sys
        subprocess.run(["/usr/bin/true"], check=True)
        print("about to exit", flush=True)
        sys.exit(23)
    """,
    "raises": """
        def inner():
            raise ValueError("boom 23")
        print("before")
        inner()
    """,
    "exit_text": """
        raise SystemExit("fatal: bad config")
    """,
}


def _write(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(SCRIPTS[name]).lstrip())
    return path


@pytest.mark.parametrize("name", sorted(SCRIPTS))
@pytest.mark.parametrize("listening", [False, True])
def test_output_and_exit_status_equal_a_plain_run(tmp_path: Path, sock_dir: Path, name: str, listening: bool,
                                                   helpers: Any) -> None:
    script = _write(tmp_path, name)
    env = helpers.child_env(sock_dir / "sdk.sock")
    col = SdkCollector(sock_dir / "sdk.sock") if listening else None
    if col is not None:
        col.start()
    try:
        plain = helpers.run_py([str(script), "a b", "23"], env, cwd=tmp_path)
        wrapped = helpers.run_py(["-m", "runwatch.sdk.run", str(script), "a b", "23"], env, cwd=tmp_path)
        events = helpers.drain(col) if col is not None else []
    finally:
        if col is not None:
            col.stop()
    assert (wrapped.returncode, wrapped.stdout, wrapped.stderr) == (plain.returncode, plain.stdout, plain.stderr)
    assert plain.returncode == {"ok": 0, "exit23": 23, "raises": 1, "exit_text": 1}[name]
    if listening:
        hello = [e for e in events if e.kind == "sensor.notice"]
        assert len(hello) == 1 and hello[0].ai is not None and hello[0].ai.agent == name
        execs = [e for e in events if e.kind == "process.exec"]
        assert [e.argv for e in execs] == ([["/usr/bin/true"]] if name == "exit23" else [])
        # The main script itself is not reported as a module loaded from a writable path.
        assert not [e for e in events if e.kind == "plugin.load"]


def test_module_mode_and_agent_option(tmp_path: Path, collector: SdkCollector, helpers: Any) -> None:
    pkg = tmp_path / "rwpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(textwrap.dedent("""
        import subprocess, sys
        from runwatch import sdk
        with sdk.tool_call("shell", call_id="c-7"):
            subprocess.run(["/usr/bin/true", *sys.argv[1:]], check=True)
        print(__name__, sys.argv[1:])
        sys.exit(7)
    """))
    env = helpers.child_env(collector.path)
    plain = helpers.run_py(["-m", "rwpkg", "x"], env, cwd=tmp_path)
    wrapped = helpers.run_py(["-m", "runwatch.sdk.run", "--agent", "pkg-agent", "-m", "rwpkg", "x"], env,
                             cwd=tmp_path)
    assert (wrapped.returncode, wrapped.stdout, wrapped.stderr) == (plain.returncode, plain.stdout, plain.stderr)
    assert wrapped.returncode == 7 and wrapped.stdout == "__main__ ['x']\n"
    events = helpers.drain(collector)
    wrapped_pid = {e.pid for e in events if e.kind == "sensor.notice"}
    assert len(wrapped_pid) == 1
    (pid,) = wrapped_pid
    mine = [e for e in events if e.pid == pid]
    assert [e.kind for e in mine if e.source == "sdk"] == ["sensor.notice", "tool.start", "tool.end"]
    assert mine[0].ai is not None and mine[0].ai.agent == "pkg-agent"
    execs = [e for e in mine if e.kind == "process.exec"]
    assert len(execs) == 1 and execs[0].argv == ["/usr/bin/true", "x"]
    assert execs[0].tool_call == ToolCall(name="shell", call_id="c-7")


def test_bad_command_lines_are_one_line_errors(tmp_path: Path, helpers: Any) -> None:
    env = helpers.child_env(None)
    missing = helpers.run_py(["-m", "runwatch.sdk.run", str(tmp_path / "nope.py")], env)
    plain = helpers.run_py([str(tmp_path / "nope.py")], env)
    assert (missing.returncode, missing.stderr) == (plain.returncode, plain.stderr)
    bad = helpers.run_py(["-m", "runwatch.sdk.run", "--frobnicate", "x.py"], env)
    assert bad.returncode == 2 and bad.stderr.splitlines()[0] == "runwatch.sdk.run: unknown option '--frobnicate'"
    none = helpers.run_py(["-m", "runwatch.sdk.run", "--agent", "a"], env)
    assert none.returncode == 2 and none.stderr.splitlines()[0] == "runwatch.sdk.run: no script given"


def test_python_children_of_a_wrapped_agent_are_instrumented(tmp_path: Path, collector: SdkCollector,
                                                             helpers: Any) -> None:
    child = tmp_path / "child.py"
    child.write_text("import subprocess\nsubprocess.run(['/usr/bin/true', 'from-child'], check=True)\n")
    parent = tmp_path / "parent.py"
    parent.write_text(f"import subprocess, sys\nsubprocess.run([sys.executable, {str(child)!r}], check=True)\n")
    env = helpers.child_env(collector.path)
    res = helpers.run_py(["-m", "runwatch.sdk.run", str(parent)], env)
    assert res.returncode == 0, res.stderr
    events = helpers.drain(collector)
    hellos = [e for e in events if e.kind == "sensor.notice"]
    assert len(hellos) == 2 and len({e.pid for e in hellos}) == 2
    execs = {e.pid: e.argv for e in events if e.kind == "process.exec"}
    by_hello = {e.pid for e in hellos}
    assert set(execs) == by_hello
    assert sorted(execs.values()) == sorted([[sys.executable, str(child)], ["/usr/bin/true", "from-child"]])
