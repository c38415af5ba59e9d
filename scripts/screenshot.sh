#!/usr/bin/env bash
# A page rendered by headless chromium at 1280 px wide into a PNG:
#   scripts/screenshot.sh PAGE.html OUT.png [HEIGHT]
# The page's console messages (script errors among them) go to stderr, one
# per line with ":INFO:CONSOLE"; the report test reads them from there.
# Background networking is off: this machine has no network to offer it.
set -uo pipefail
page="$1"; png="$2"; height="${3:-2000}"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
mkdir -p "$(dirname "$png")"
status=0
log="$("${BERTLAB_CHROMIUM:-/usr/bin/chromium}" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
    --enable-logging=stderr --v=0 --user-data-dir="$profile" --window-size="1280,$height" \
    --screenshot="$png" "file://$(realpath "$page")" 2>&1)" || status=$?
printf '%s\n' "$log" | grep ':INFO:CONSOLE' >&2
if [ "$status" -ne 0 ] || [ ! -s "$png" ]; then
    printf '%s\n' "$log" >&2
    echo "screenshot: chromium failed on $page" >&2
    exit 1
fi
echo "wrote $png"
