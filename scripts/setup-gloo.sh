#!/usr/bin/env bash
# Installs Debian's libgloo-dev, whose headers torch-ops compiles c10d's
# Gloo process group against (train.devices > 1; libtorch ships Gloo's code
# but not its headers). Idempotent; needs root or sudo for apt-get the
# first time. Run before the build: torch-ops picks the headers up then.
set -euo pipefail
if [ -f /usr/include/gloo/config.h ] || [ -f /usr/local/include/gloo/config.h ]; then
    exit 0
fi
bash "$(dirname "$0")/apt-install.sh" setup-gloo "train.devices > 1 trains over c10d's Gloo process groups" --no-install-recommends libgloo-dev
