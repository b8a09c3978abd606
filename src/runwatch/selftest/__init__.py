"""The coverage self-test (``runwatch selftest``): harmless canaries run in each container in scope
through its runtime's exec, and a report per container and per canary of what the sensor saw,
with the delay, and of what it could not see on this host (sources on, hooks refused, kinds lost).

:mod:`~runwatch.selftest.targets` finds the containers, :mod:`~runwatch.selftest.canaries` says
what is triggered and which event proves it, :mod:`~runwatch.selftest.runner` runs a short sensor
session around the canaries and :mod:`~runwatch.selftest.report` holds and renders the result.
"""
