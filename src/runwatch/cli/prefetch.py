"""Begin loading the sensor while ``run`` and ``watch`` import the rest of themselves.

Verifying the sensor's programs is kernel time (a few hundred ms); importing the command's
modules and reading the rule pack is Python time of about the same. :func:`sensor_for`
looks at the command line before click parses it and, where the command will load the
kernel sensor with the default ring (root, ``run`` or ``watch``, no ``--source``,
``--ring-mb`` or ``--help``), starts that load on a thread (:func:`runwatch.sensors.kernel.
loader.preload`). The sensor adopts it only if its options are the same; otherwise, and at
exit if nothing took it, the load is freed. A guess that misses costs that thread's time only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

#: Options after which the prefetch would guess wrong (or the command will not start).
_UNSURE = ("--source", "--ring-mb", "--help", "-h")


def sensor_for(argv: Sequence[str]) -> None:
    """Preload the sensor for ``runwatch run`` / ``runwatch watch`` with the default ring."""
    args = list(argv)
    if "--" in args:
        args = args[:args.index("--")]
    if not args or args[0] not in ("run", "watch") or os.geteuid() != 0:
        return
    if any(a == opt or a.startswith(opt + "=") for a in args for opt in _UNSURE):
        return
    from runwatch.sensors.kernel import loader

    if not loader.object_path().exists():
        return
    loader.preload(loader.LoadOptions(filter_tracked=args[0] == "run", ring_bytes=1 << 24))
