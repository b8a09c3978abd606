#!/usr/bin/env bash
# One install step: system packages, the BPF object, and the project's .venv.
# Idempotent: re-running only does what is missing. Needs root for apt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

APT_PKGS=(clang llvm libbpf-dev libbpf1 bpftool runc busybox-static iproute2 auditd strace gcc make util-linux podman catatonit openssl nats-server
  chromium  # headless browser the report's and console's HTML is rendered in by the tests (Playwright, no download)
  debootstrap buildah)  # the container image's Debian base and its build (scripts/image.sh, tests/packaging)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[install] apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  echo "[install] creating .venv"
  "$PY" -m venv .venv
fi
stamp=".venv/.runwatch-deps"
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
  echo "[install] python dependencies"
  .venv/bin/pip install -q -e ".[dev]"
  touch "$stamp"
fi

echo "[install] building BPF objects"
make -s -C src/runwatch/sensors/kernel/bpf
make -s -C src/runwatch/policy/enforce/bpf
echo "[install] ok"
