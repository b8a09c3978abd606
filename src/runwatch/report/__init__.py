"""The investigation report: what one workload did in a time window, what secrets it touched,
and whether data left afterwards.

:func:`~runwatch.report.build.build_report` turns the store into a typed
:class:`~runwatch.report.model.Report`; ``render_md``, ``render_json`` and ``render_html``
each turn a report into one document. ``runwatch report`` is the command line over them.
"""
