#!/usr/bin/env bash
# Installs Debian packages a test needs, as root or through sudo, refreshing
# the package lists only if the first try fails. Used by setup-browser.sh and
# setup-slurm.sh; fails with one line saying what to run where neither root
# nor sudo is at hand.
#
# Usage: scripts/apt-install.sh WHO WHY [APT-GET OPTION...] PACKAGE...
set -euo pipefail
who=$1 why=$2
shift 2
packages=$(printf '%s\n' "$@" | grep -v '^-' | tr '\n' ' ' | sed 's/ $//')
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "$who: installing $packages needs root: run 'sudo apt-get install $packages' ($why)" >&2
    exit 1
fi
echo "$who: installing Debian's $packages ($why)"
export DEBIAN_FRONTEND=noninteractive
install() { "${as_root[@]}" apt-get install -y -qq "$@" >/dev/null; }
install "$@" 2>/dev/null || { "${as_root[@]}" apt-get update -qq >/dev/null; install "$@"; }
