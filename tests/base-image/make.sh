#!/usr/bin/env bash
# Makes the base images the tests and examples use, on a machine that can
# reach Debian's package mirror but no container registry.
#
# The image tagged python:3.11-slim-bookworm is a Debian bookworm root file
# system built with debootstrap, with Debian's Python 3.11, pip and venv.
# It replaces the Docker Hub image of that name: `python` and `pip` are on
# PATH and pip may install into the system Python.
#
# The root file system tarball is cached in $IMGSCRIPT_BASE_CACHE (default
# /var/cache/imgscript-base), so a second run only imports it again.
set -euo pipefail

cache_dir=${IMGSCRIPT_BASE_CACHE:-/var/cache/imgscript-base}
tag=python:3.11-slim-bookworm
rootfs_tar=$cache_dir/bookworm-python3.11.tar

# The host's own Debian mirror, so the script names no host itself.
mirror() {
  local uri
  uri=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  if [ -z "$uri" ]; then
    uri=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
  fi
  if [ -z "$uri" ]; then
    echo "make.sh: no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list" >&2
    exit 1
  fi
  echo "$uri"
}

build_rootfs() {
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN

  command -v debootstrap >/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
  }

  echo "make.sh: building a bookworm root file system with Python (a few minutes)" >&2
  debootstrap --variant=minbase \
    --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates \
    bookworm "$work/rootfs" "$(mirror)" >"$work/debootstrap.log" 2>&1 || {
      tail -n 30 "$work/debootstrap.log" >&2
      exit 1
    }

  # The Docker Hub python images let pip install into the system Python.
  rm -f "$work"/rootfs/usr/lib/python3*/EXTERNALLY-MANAGED
  # Keep the image small, as the slim images are.
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*

  mkdir -p "$cache_dir"
  tar -C "$work/rootfs" --numeric-owner -cf "$rootfs_tar.partial" .
  mv "$rootfs_tar.partial" "$rootfs_tar"
}

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "make.sh: $tag is already in the local image store" >&2
  exit 0
fi

[ -f "$rootfs_tar" ] || build_rootfs

echo "make.sh: importing $rootfs_tar as $tag" >&2
docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PYTHON_VERSION=3.11' \
  --change 'CMD ["python3"]' \
  "$rootfs_tar" "$tag" >/dev/null
echo "make.sh: $tag is ready" >&2
