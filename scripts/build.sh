#!/usr/bin/env bash
# One job: the release build of bertlab, set-up included, saying what it is
# doing and how long each phase took. The first time, pip installs the Python
# environment (mostly download) while cargo compiles: only torch-sys needs
# libtorch, and most of the build (polars) does not wait for it.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
log="$target/setup-install.log"
bash scripts/setup.sh config
mkdir -p "$target"
if [ ! -x "$target/release/bertlab" ]; then
  # Measured on 2 cores of CI's kind (bench/RESULTS.md, "First build").
  echo "build: first build of bertlab: about 8 minutes on 2 cores, while the Python environment installs; later builds take seconds"
fi
start=$SECONDS
bash scripts/setup.sh install > "$log" 2>&1 &
installing=$!
# --keep-going: should cargo reach torch-sys before pip has put libtorch in
# place, everything that does not need it still compiles in this pass.
if cargo build --release --bin bertlab --keep-going; then
  built=1
else
  built=0
fi
if ! wait "$installing"; then
  cat "$log" >&2
  echo "build: setting up the Python environment failed (above)" >&2
  exit 1
fi
grep -v '^$' "$log" || true
if [ "$built" = 0 ]; then
  echo "build: finishing the build now that libtorch is installed (what compiled is kept)"
  cargo build --release --bin bertlab
fi
echo "build: $target/release/bertlab ready ($(( SECONDS - start ))s)"
