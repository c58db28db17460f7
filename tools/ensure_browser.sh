#!/bin/sh
# vldbook: headless Chromium for the browser tests of `make test` (tests/test_browser.py).
#
# Found when the Debian package's binary exists. Otherwise: as root, or with passwordless sudo,
# install `chromium` and `chromium-driver` through apt (after `apt-get update`) and go on; else print
# the one command to run and go on anyway: without Chromium the browser tests skip, they do not fail.
# Never `playwright install` (the tests drive the system Chromium).
# VLD_CHROMIUM overrides the binary's path (tests use it).
set -u

BIN="${VLD_CHROMIUM:-/usr/bin/chromium}"
PKGS="chromium chromium-driver"
case "$0" in */*) HERE="${0%/*}" ;; *) HERE=. ;; esac
. "$HERE/apt.sh"

if [ -x "$BIN" ]; then
    exit 0
fi
if ! can_apt; then
    echo "ensure_browser: Chromium not found ($BIN); the browser tests will skip. To run them:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y $PKGS" >&2
    exit 0
fi

echo "ensure_browser: Chromium not found; installing $PKGS with apt-get" >&2
# shellcheck disable=SC2086 # two package names
apt_install $PKGS || echo "ensure_browser: apt-get could not install $PKGS; the browser tests will skip" >&2
exit 0
