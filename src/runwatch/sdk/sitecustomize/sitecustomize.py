"""runwatch's sitecustomize switch: put this directory on ``PYTHONPATH`` to instrument a Python program.

    PYTHONPATH=/path/to/runwatch/sdk/sitecustomize python agent.py

installs what ``python -m runwatch.sdk.run agent.py`` installs (audit-hook sensor, library
wrappers, announce with ``RUNWATCH_AGENT``), unless ``RUNWATCH_AUTOINSTRUMENT=0``. If
``runwatch`` is not importable (a container's own interpreter with only this source tree
mounted) the tree this file lives in is used. Another ``sitecustomize`` further down
``sys.path`` (a distribution's) still runs afterwards. Never raises.
"""

from __future__ import annotations

import os
import sys


def _start() -> None:
    if os.environ.get("RUNWATCH_AUTOINSTRUMENT", "1") == "0":
        return
    try:
        import runwatch.sdk.run as run
    except ImportError:
        sys.path.append(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
        try:
            import runwatch.sdk.run as run
        except ImportError as exc:
            print(f"runwatch: instrumentation not installed: {exc}", file=sys.stderr)
            return
    run.install_from_env()


def _chain() -> None:
    """Run the next ``sitecustomize.py`` on ``sys.path`` (this one shadows it)."""
    here = os.path.dirname(os.path.abspath(__file__))
    seen_self = False
    for entry in sys.path:
        directory = os.path.abspath(entry or os.getcwd())
        if directory == here:
            seen_self = True
            continue
        candidate = os.path.join(directory, "sitecustomize.py")
        if seen_self and os.path.isfile(candidate):
            import importlib.util

            spec = importlib.util.spec_from_file_location("_runwatch_chained_sitecustomize", candidate)
            if spec is not None and spec.loader is not None:
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            return


try:
    _start()
except Exception as _exc:  # never stop the interpreter from starting
    print(f"runwatch: instrumentation not installed: {_exc}", file=sys.stderr)
try:  # noqa: SIM105 (keeps start-up imports to the minimum)
    _chain()
except Exception:
    pass
