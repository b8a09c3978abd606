"""What runwatch reads from the host it runs on: procfs, the cgroup v2 hierarchy, the mount table.

Every other package asks here instead of opening ``/proc`` or ``/sys/fs/cgroup`` itself:

- :mod:`runwatch.host.mounts`: ``/proc/self/mountinfo`` parsed, with shadowed mounts dropped;
- :mod:`runwatch.host.cgroups`: the cgroup v2 root, detected once (``/sys/fs/cgroup`` on a
  pure v2 host, ``/sys/fs/cgroup/unified`` on a hybrid one) and passed down as a
  :class:`~runwatch.host.cgroups.CgroupV2`;
- :mod:`runwatch.host.procfs`: one process's cgroup, status (``NSpid``, credentials) and
  namespaces;
- :mod:`runwatch.host.runtimes`: container runtimes' records (runc's ``state.json``, the
  bundle's ``config.json``, Docker's and containers/storage's names).

Nothing here opens a file a policy may protect except :mod:`~runwatch.host.runtimes`, which
reads runtimes' own records; :mod:`~runwatch.host.procfs`, :mod:`~runwatch.host.cgroups` and
:mod:`~runwatch.host.mounts` read only procfs, the cgroup filesystem and the mount table (the
enforcers rely on it).
"""

from runwatch.host.cgroups import CgroupV2, CgroupV2Missing, cgroup_v2, cgroup_v2_if_any, find_cgroup_v2, use_cgroup_v2

__all__ = ["CgroupV2", "CgroupV2Missing", "cgroup_v2", "cgroup_v2_if_any", "find_cgroup_v2", "use_cgroup_v2"]
