#!/usr/bin/env bash
# Sets up a Debian machine, as root, for imgscript's examples and tests:
# installs Docker Engine from Debian's docker.io package when missing and
# starts dockerd when none runs, installs the packages the tests use, makes
# the Python base image locally (no container registry is needed),
# downloads the wheels of uv and poetry and the Debian packages of Node.js
# that the tests install, installs moto's AWS emulator, Vim and the VS Code
# extension's npm packages. Each step is skipped when its result is
# already there, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive

if ! command -v dockerd >/dev/null 2>&1; then
  echo "setup.sh: installing Docker Engine from Debian's docker.io package" >&2
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
fi

# The tests make Python wheels with the host's python3.
if ! command -v python3 >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq python3 >/dev/null
fi

# debootstrap makes the base image; the registry tests start Debian's
# docker-registry themselves, with a password file made by htpasswd.
missing=""
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
command -v docker-registry >/dev/null 2>&1 || missing="$missing docker-registry"
command -v htpasswd >/dev/null 2>&1 || missing="$missing apache2-utils"
if [ -n "$missing" ]; then
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq $missing >/dev/null
fi

# Debian's client, for tests that compare with `docker build`; dockerd
# alone is enough for imgscript itself.
if ! /usr/bin/docker version >/dev/null 2>&1 && ! docker version >/dev/null 2>&1; then
  echo "setup.sh: starting dockerd" >&2
  nohup dockerd >/var/log/imgscript-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    if [ -S /var/run/docker.sock ] && docker version >/dev/null 2>&1; then
      break
    fi
    sleep 1
  done
  docker version >/dev/null 2>&1 || {
    echo "setup.sh: dockerd did not start; its log:" >&2
    tail -n 50 /var/log/imgscript-dockerd.log >&2
    exit 1
  }
fi

# The root file system is cached across runs in /var/cache/imgscript-base.
tests/base-image/make.sh

# The uv_sync and poetry tests install uv and poetry from wheels, since
# the tests reach no package index; they are downloaded here once and kept.
wheels=${IMGSCRIPT_TEST_WHEELS:-/var/cache/imgscript-wheels}
download_wheels() {
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq python3-pip >/dev/null
  fi
  python3 -m pip download --quiet --only-binary=:all: \
    --python-version 3.11 --platform manylinux2014_x86_64 "$@"
}
if ! ls "$wheels"/uv-*.whl >/dev/null 2>&1; then
  mkdir -p "$wheels"
  download_wheels --no-deps uv -d "$wheels"
fi
if ! ls "$wheels"/poetry/poetry-*.whl >/dev/null 2>&1; then
  mkdir -p "$wheels/poetry.partial"
  download_wheels poetry -d "$wheels/poetry.partial"
  rm -rf "$wheels/poetry"
  mv "$wheels/poetry.partial" "$wheels/poetry"
fi

# The ECR test gets its registry token from moto's AWS emulator, installed
# here into a virtual environment from PyPI.
tools=${IMGSCRIPT_TEST_TOOLS:-/var/cache/imgscript-tools}
if [ ! -x "$tools/moto/bin/moto_server" ]; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    apt-get update -qq
    apt-get install -y -qq python3-venv >/dev/null
  fi
  rm -rf "$tools/moto"
  python3 -m venv "$tools/moto"
  "$tools/moto/bin/pip" install --quiet "moto[server]"
fi

# The node module's test installs Node.js and npm with apt from a local
# repository of Debian's packages, downloaded here once in a container of
# the base image so that it contains just what that image lacks.
debs=${IMGSCRIPT_TEST_DEBS:-/var/cache/imgscript-debs}
if [ ! -f "$debs/node/Packages" ]; then
  rm -rf "$debs/node"
  mkdir -p "$debs/node"
  docker run --rm -v "$debs/node:/out" python:3.11-slim-bookworm sh -c '
    set -e
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install --download-only -y -qq --no-install-recommends nodejs npm >/dev/null
    cp /var/cache/apt/archives/*.deb /out/
    apt-get install -y -qq --no-install-recommends dpkg-dev >/dev/null
    cd /out && dpkg-scanpackages --multiversion . > Packages.partial 2>/dev/null
    mv Packages.partial Packages'
fi

# The editor tests run Vim, and the VS Code extension's grammar tests and
# packaging need its npm packages, which need Node.js 20 or later.
if ! command -v vim >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq vim >/dev/null
fi
if ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq nodejs npm >/dev/null
fi
vscode=editors/vscode
if [ ! -f "$vscode/node_modules/.package-lock.json" ] ||
  [ "$vscode/package-lock.json" -nt "$vscode/node_modules/.package-lock.json" ]; then
  (cd "$vscode" && npm ci --no-audit --no-fund --loglevel=error)
fi

# tests/long.sh fuzzes with cargo-fuzz, built once into the tools folder.
if [ ! -x "$tools/cargo-fuzz/bin/cargo-fuzz" ]; then
  cargo install --quiet --locked cargo-fuzz --root "$tools/cargo-fuzz"
fi
