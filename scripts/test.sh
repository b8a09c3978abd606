#!/usr/bin/env bash
# The test suite: install what is missing, lint and type-check, then every test
# (kernel tests load the real BPF programs and start real runc containers: run as root).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/install.sh"
cd "$ROOT"
echo "[test] ruff"
.venv/bin/ruff check src tests bench
echo "[test] mypy"
.venv/bin/mypy
echo "[test] pytest"
# Two workers, each test file on one worker (module fixtures stay whole); kernel tests only
# look at what they started themselves, so two files run side by side.
exec .venv/bin/pytest -q -n 2 --dist loadfile "$@"
