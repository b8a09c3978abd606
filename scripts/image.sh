#!/usr/bin/env bash
# Build the runwatch container image with buildah, from a Debian base made here (no registry).
#
#   bash scripts/image.sh [TAG]        # default TAG: localhost/runwatch:<version>
#
# 1. The base image localhost/runwatch-base:bookworm is made once with debootstrap (Debian's
#    minimal variant plus python3, libbpf1 and CA certificates) and imported into the local
#    image store; later builds reuse it (RUNWATCH_REBUILD_BASE=1 makes it again).
# 2. The project and its pinned dependencies become wheels (the BPF objects built by
#    scripts/install.sh ride inside the runwatch wheel), and deploy/Containerfile installs them
#    offline into /opt/runwatch.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/install.sh" >/dev/null

for p in debootstrap buildah; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    echo "[image] apt package: $p"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "$p" >/dev/null
  fi
done

VERSION="$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("runwatch"))')"
TAG="${1:-localhost/runwatch:$VERSION}"
BASE="localhost/runwatch-base:bookworm"
MIRROR="${RUNWATCH_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
WORK="$(mktemp -d /var/tmp/runwatch-image.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

if [[ "${RUNWATCH_REBUILD_BASE:-0}" == 1 ]] || ! podman image exists "$BASE"; then
  echo "[image] base $BASE (debootstrap bookworm, a few minutes the first time)"
  debootstrap --variant=minbase --include=python3,python3-venv,libbpf1,ca-certificates \
    bookworm "$WORK/root" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { echo "[image] debootstrap failed; see the last lines:" >&2; tail -5 "$WORK/debootstrap.log" >&2; exit 1; }
  rm -rf "$WORK/root/var/cache/apt/archives/"*.deb "$WORK/root/var/lib/apt/lists/"*
  tar -C "$WORK/root" --numeric-owner -cf "$WORK/base.tar" .
  podman import --change 'CMD ["/bin/sh"]' "$WORK/base.tar" "$BASE" >"$WORK/import.log" 2>&1 \
    || { echo "[image] podman import failed:" >&2; tail -5 "$WORK/import.log" >&2; exit 1; }
  rm -rf "$WORK/root" "$WORK/base.tar"
fi

echo "[image] wheels"
mkdir -p "$WORK/context/wheels"
.venv/bin/pip wheel -q --wheel-dir "$WORK/context/wheels" . >"$WORK/wheel.log" 2>&1 \
  || { echo "[image] building wheels failed:" >&2; tail -5 "$WORK/wheel.log" >&2; exit 1; }
cp deploy/Containerfile "$WORK/context/Containerfile"

echo "[image] buildah build $TAG"
buildah build --quiet --layers=false --build-arg "BASE=$BASE" --build-arg "VERSION=$VERSION" \
  -t "$TAG" -f "$WORK/context/Containerfile" "$WORK/context" >/dev/null
echo "[image] ok: $TAG"
