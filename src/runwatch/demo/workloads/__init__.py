"""Programs that run inside the demo's runc containers (stdlib and ``runwatch.sdk`` only).

Each is started as ``python3 -m runwatch.demo.workloads.<name>`` inside a container whose
``PYTHONPATH`` holds the project's ``src`` and whose ``RUNWATCH_SOCKET`` points at the
bind-mounted SDK socket. None of them loads a model: a deterministic scripted planner picks
the tool calls, so every run does exactly the same thing.
"""
