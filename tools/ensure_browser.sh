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

if [ -x "$BIN" ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    run=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    run="sudo -n"
else
    echo "ensure_browser: Chromium not found ($BIN); the browser tests will skip. To run them:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y $PKGS" >&2
    exit 0
fi

echo "ensure_browser: Chromium not found; installing $PKGS with apt-get" >&2
if [ -n "$run" ]; then
    sudo -n apt-get update && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y $PKGS
else
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $PKGS
fi || echo "ensure_browser: apt-get could not install $PKGS; the browser tests will skip" >&2
exit 0
