# vldbook: shared by tools/ensure_data.sh and tools/ensure_browser.sh (sourced, not run).
#
# can_apt: whether this user may install with apt - as root, or with passwordless sudo; sets
# APT_AS to "" or "sudo -n". apt_install PKG...: `apt-get update`, then a non-interactive
# `apt-get install -y PKG...` (through APT_AS); its status is apt-get's.

can_apt() {
    if [ "$(id -u)" = 0 ]; then
        APT_AS=""
        return 0
    fi
    if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
        APT_AS="sudo -n"
        return 0
    fi
    return 1
}

apt_install() {
    if [ -n "${APT_AS:-}" ]; then
        sudo -n apt-get update && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
    else
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
    fi
}
