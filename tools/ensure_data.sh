#!/bin/sh
# vldbook: make sure Fashion-MNIST is there before `make book` / `make test` (the offline profile's data).
#
# Found when VLD_DATA is set (a folder with the four idx files; checked by vldlib at load time) or
# when the Debian package's folder exists. Otherwise: as root, or with passwordless sudo, install
# the package `dataset-fashion-mnist` through apt (after `apt-get update`) and go on; else stop at
# once, printing the one command to run.
# VLD_FMNIST_SYSTEM_DIR overrides the package's folder (tests use it).
set -eu

DIR="${VLD_FMNIST_SYSTEM_DIR:-/usr/share/datasets/fashion-mnist}"
PKG=dataset-fashion-mnist
case "$0" in */*) HERE="${0%/*}" ;; *) HERE=. ;; esac
. "$HERE/apt.sh"

if [ -n "${VLD_DATA:-}" ]; then
    if [ -d "$VLD_DATA" ]; then
        exit 0
    fi
    echo "ensure_data: VLD_DATA=$VLD_DATA is not a folder; point it at the Fashion-MNIST idx files or unset it" >&2
    exit 1
fi
if [ -d "$DIR" ]; then
    exit 0
fi

if ! can_apt; then
    echo "ensure_data: Fashion-MNIST not found ($DIR is missing and VLD_DATA is unset)." >&2
    echo "Run this once, then \`make book\` again:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y $PKG" >&2
    echo "(or set VLD_DATA to a folder holding the four Fashion-MNIST idx files)" >&2
    exit 1
fi

echo "ensure_data: Fashion-MNIST not found; installing $PKG with apt-get" >&2
apt_install "$PKG"
if [ ! -d "$DIR" ]; then
    echo "ensure_data: apt-get installed $PKG but $DIR is still missing; set VLD_DATA to the idx files' folder" >&2
    exit 1
fi
echo "ensure_data: Fashion-MNIST installed in $DIR" >&2
