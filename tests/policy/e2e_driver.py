"""Workload driver for the end-to-end policy tests, run as CMD under ``runwatch run --policy``.

``python e2e_driver.py CONFIG_JSON``. Starts one long-lived runc container
(:class:`runwatch.containers.RuncContainer`) with the configured name, secrets, binds and
environment, waits until runwatch's stderr log (``wait_log``) says the policy is applied to
it (``wait_for``: ``applied`` or ``egress``; nothing when absent), then runs each step with
``runc exec`` and prints one JSON line: container id and, per step, rc, stdout and stderr.
``{python}`` in a step or an env value is the host Python as the container sees it. The
container is always removed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def wait_for_line(log: Path, needle: str, timeout: float = 15.0) -> bool:
    """Poll ``log`` until it contains ``needle``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if needle in log.read_text(errors="replace"):
                return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


def main(argv: list[str]) -> int:
    """Run the configured container and steps; print the result as JSON."""
    from runwatch.containers.oci import Bind
    from runwatch.containers.rootfs import build_rootfs
    from runwatch.containers.runc import RuncContainer

    cfg = json.loads(argv[0])
    rootfs = build_rootfs()
    binds = [Bind(Path(src), dst, bool(ro)) for src, dst, ro in cfg.get("binds", [])]
    secrets = {k: v.encode() for k, v in cfg.get("secrets", {}).items()}
    env = {k: v.replace("{python}", str(rootfs.python)) for k, v in cfg.get("env", {}).items()}
    out: dict[str, object] = {"steps": []}
    with RuncContainer(rootfs, name=cfg["name"], secrets=secrets, binds=binds, env=env) as c:
        out["id"] = c.id
        c.start()
        if cfg.get("wait_log"):
            out["applied"] = wait_for_line(Path(cfg["wait_log"]), f"applied to container {cfg['name']} ({c.id})")
        steps: list[dict[str, object]] = []
        for argv_step in cfg.get("steps", []):
            args = [str(rootfs.python) if a == "{python}" else a for a in argv_step]
            res = c.exec(args, timeout=60)
            steps.append({"rc": res.returncode, "out": res.stdout.decode(errors="replace"),
                          "err": res.stderr.decode(errors="replace")})
        out["steps"] = steps
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
