#!/usr/bin/env bash
# The main job: install what is missing, then run the self-demonstration under the sensor.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/install.sh"
cd "$ROOT"
exec .venv/bin/runwatch demo "$@"
