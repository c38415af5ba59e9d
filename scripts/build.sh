#!/usr/bin/env bash
# One job: the release build of bertlab, set-up first, saying what it is
# doing and how long it took, so a newcomer's first build does not look hung.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
target="${CARGO_TARGET_DIR:-target}"
if [ ! -x "$target/release/bertlab" ]; then
  # Measured on 2 cores of CI's kind (bench/RESULTS.md, "First build").
  echo "build: first build of bertlab: about 8 minutes on 2 cores (later builds take seconds)"
fi
start=$SECONDS
cargo build --release --bin bertlab
echo "build: $target/release/bertlab ready ($(( SECONDS - start ))s)"
