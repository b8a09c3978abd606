"""runwatch.containers

Real runc containers for tests and the demo, built on a locally cached busybox rootfs:

* ``rootfs``: :func:`build_rootfs` -> :class:`Rootfs` (cached at /var/lib/runwatch/rootfs/base);
* ``oci``: :class:`ContainerOptions`, :class:`Bind` and the pure ``config.json`` generator;
* ``runc``: :class:`RuncContainer` (``run``, ``start``/``exec``/``stop``, ``close``) and
  ``managed_container``;
* ``pytest_plugin``: the ``runc_rootfs`` and ``runc_container`` fixtures.
"""
