#!/usr/bin/env bash
# One job: make this checkout buildable. Creates the Python virtual environment
# that carries libtorch (the PyPI wheel torch==2.11.0) and points cargo at it by
# writing .cargo/config.toml. Idempotent: a second run only checks.
#
#   VENV   where the environment lives (default .venv); CI keeps it outside the
#          clone so a re-run neither re-downloads nor rebuilds torch-sys.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${VENV:-.venv}"
requirements=python/requirements.txt
stamp="$venv/.bertlab-requirements"
# uv installs the same pinned wheels as pip, from PyPI too, in a fraction of
# the time: one parallel download, no byte-compiling (bench/RESULTS.md,
# "First build": 18 s against pip's 3 minutes for these 5.7 GB).
uv_version=0.13.9

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

if ! cmp -s "$requirements" "$stamp"; then
  echo "setup: installing $(grep -v '^#' "$requirements" | xargs) into $venv (first time: a few GB, under a minute)"
  start=$SECONDS
  "$venv/bin/pip" install --quiet --disable-pip-version-check "uv==$uv_version"
  if ! "$venv/bin/uv" pip install --quiet --python "$venv/bin/python" -r "$requirements"; then
    echo "setup: uv could not install the requirements (above); trying pip (about 3 minutes)" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  fi
  cp "$requirements" "$stamp"
  echo "setup: Python environment ready ($(( SECONDS - start ))s)"
fi

# Found without importing torch: importing it is slow and warns about numpy.
torch_dir=$("$venv/bin/python" -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("torch").origin))')
python=$(cd "$venv/bin" && pwd)/python
mkdir -p .cargo
# BERTLAB_PYTHON: the interpreter the interop tests run transformers with.
config=$(cat <<TOML
# Written by scripts/setup.sh (make setup); not tracked, paths are this machine's.
[env]
LIBTORCH = "$torch_dir"
BERTLAB_PYTHON = "$python"
TOML
)
if [ "$(cat .cargo/config.toml 2>/dev/null)" != "$config" ]; then
  printf '%s\n' "$config" > .cargo/config.toml
  echo "setup: wrote .cargo/config.toml (LIBTORCH=$torch_dir)"
fi
