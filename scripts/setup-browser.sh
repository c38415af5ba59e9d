#!/usr/bin/env bash
# Installs Debian's chromium for the report tests, which render report.html
# headless (runner/tests/report.rs). Idempotent; needs root or sudo for
# apt-get the first time. BERTLAB_CHROMIUM names another browser binary.
set -euo pipefail
browser="${BERTLAB_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$browser" ]; then
    exit 0
fi
bash "$(dirname "$0")/apt-install.sh" setup-browser "the report tests render the page in it" chromium
echo "setup-browser: $("$browser" --version 2>/dev/null)"
