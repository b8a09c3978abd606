"""``runwatch console``: the web console over an event store.

Server-rendered pages (Starlette + Jinja2, autoescaped), one small script for the live alert
stream (server-sent events) and the acknowledge/approve buttons, and a strict
Content-Security-Policy. Reads the store (or the lake) read-only through :mod:`runwatch.store.source`
and the investigation report through :mod:`runwatch.report`; acknowledgements live in a small
file of the console's own (:mod:`runwatch.console.acks`); challenges are answered over the
control socket exactly as ``runwatch approve`` does (:mod:`runwatch.policy.cli`).
"""
