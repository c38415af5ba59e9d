#!/usr/bin/env bash
# Installs Debian's chromium for the report tests, which render report.html
# headless (runner/tests/report.rs). Idempotent; needs root or sudo for
# apt-get the first time. BERTLAB_CHROMIUM names another browser binary.
set -euo pipefail
browser="${BERTLAB_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$browser" ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "setup-browser: $browser is missing and installing it needs root: run 'sudo apt-get install chromium' (the report tests render the page in it)" >&2
    exit 1
fi
echo "setup-browser: installing Debian's chromium (headless report rendering in the tests)"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get install -y -qq chromium >/dev/null 2>&1 || {
    "${as_root[@]}" apt-get update -qq >/dev/null
    "${as_root[@]}" apt-get install -y -qq chromium >/dev/null
}
echo "setup-browser: $("$browser" --version 2>/dev/null)"
