#!/usr/bin/env bash
# Installs everything `make demo` and `make test` need, idempotently:
# Debian packages (tool chains, static checkers), then a venv with the
# project and its extras. Safe to run again; does nothing when up to date.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="gcc g++ make gcc-mingw-w64-x86-64 clang lld llvm cppcheck libhivex-bin"
missing=""
for p in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "bootstrap: installing Debian packages:$missing"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.hvlab-installed
want=$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev,lab,dump]'
  echo "$want" > "$stamp"
fi
