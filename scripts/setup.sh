#!/usr/bin/env bash
# One job: make this checkout buildable. Creates the Python virtual environment
# that carries libtorch (the PyPI wheel torch==2.11.0) and points cargo at it by
# writing .cargo/config.toml. Idempotent: a second run only checks.
#
# Usage: scripts/setup.sh [config|install]   (default: both, in that order)
#   config   the environment and .cargo/config.toml, in seconds: where pip
#            will put libtorch is known before it is installed, so cargo can
#            start compiling (scripts/build.sh overlaps the two)
#   install  pip installs python/requirements.txt (minutes the first time)
#
#   VENV   where the environment lives (default .venv); CI keeps it outside the
#          clone so a re-run neither re-downloads nor rebuilds torch-sys.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${VENV:-.venv}"
requirements=python/requirements.txt
stamp="$venv/.bertlab-requirements"
phase="${1:-all}"

config() {
  if ! command -v python3 >/dev/null; then
    echo "setup: python3 is required (Debian: apt-get install python3 python3-venv)" >&2
    exit 1
  fi
  if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating virtual environment $venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" || {
      echo "setup: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2
      exit 1
    }
  fi
  # Where torch is (found without importing it: importing is slow and warns
  # about numpy), else where pip will install it.
  local torch_dir
  torch_dir=$("$venv/bin/python" -c 'import importlib.util, os, sysconfig
spec = importlib.util.find_spec("torch")
print(os.path.dirname(spec.origin) if spec else os.path.join(sysconfig.get_paths()["purelib"], "torch"))')
  local python
  python=$(cd "$venv/bin" && pwd)/python
  mkdir -p .cargo
  # BERTLAB_PYTHON: the interpreter the interop tests run transformers with.
  local text
  text=$(cat <<TOML
# Written by scripts/setup.sh (make setup); not tracked, paths are this machine's.
[env]
LIBTORCH = "$torch_dir"
BERTLAB_PYTHON = "$python"
TOML
)
  if [ "$(cat .cargo/config.toml 2>/dev/null)" != "$text" ]; then
    printf '%s\n' "$text" > .cargo/config.toml
    echo "setup: wrote .cargo/config.toml (LIBTORCH=$torch_dir)"
  fi
}

install() {
  if ! cmp -s "$requirements" "$stamp"; then
    echo "setup: installing $(grep -v '^#' "$requirements" | xargs) into $venv (first time: a few GB, about 3 minutes)"
    local start=$SECONDS
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$stamp"
    echo "setup: Python environment ready in $(( SECONDS - start ))s"
  fi
}

case $phase in
  config) config ;;
  install) install ;;
  all) config; install ;;
  *) echo "usage: scripts/setup.sh [config|install]" >&2; exit 2 ;;
esac
