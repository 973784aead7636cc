#!/usr/bin/env bash
# Install (or remove) Stretch Companion as a systemd service on Raspberry Pi OS Bookworm.
# Run from a checkout of the project:  sudo scripts/install-pi.sh [--uninstall [--purge]]
# Safe to run again: it upgrades the installed code and keeps the configuration.
set -euo pipefail

APP=stretch-companion
SERVICE_USER=stretch
DEVICE_GROUPS=(gpio i2c audio)
PREFIX=/opt/$APP
VENV=$PREFIX/venv
CONF_DIR=/etc/$APP
CONF=$CONF_DIR/config.toml
STATE_DIR=/var/lib/$APP
CACHE_DIR=/var/cache/$APP
UNIT=$APP.service
UNIT_DEST=/etc/systemd/system/$UNIT
WEB_DROPIN=/etc/systemd/system/$UNIT.d/web.conf
APT_PACKAGES=(espeak-ng libespeak-ng1 alsa-utils python3-venv python3-dev python3-lgpio i2c-tools)
REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)

usage() {
    cat <<EOF
Usage: sudo $0 [--uninstall [--purge]]

Installs Stretch Companion from this checkout ($REPO):
  - apt packages: ${APT_PACKAGES[*]}
  - system user '$SERVICE_USER' in groups ${DEVICE_GROUPS[*]}
  - a virtualenv in $VENV (with system site packages, for python3-lgpio)
  - $CONF from 'stretch-companion config --default', only if it does not exist
  - I2C turned on (raspi-config) when the config has [sensor] enabled = true
  - the systemd unit $UNIT_DEST, enabled and (re)started
  - with [web] enabled = true: the web extra, a drop-in opening only the page's port,
    and the config directory writable by '$SERVICE_USER' (settings saved from the page)
Running it again upgrades the code and restarts the service; the config is kept.

Options:
  --uninstall   stop and remove the service, the virtualenv, the user and the
                speech cache. Keeps the history ($STATE_DIR) and the config ($CONF_DIR).
  --purge       with --uninstall: also delete the history and the config.
  -h, --help    show this help.
EOF
}

say() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

have_systemd() { [[ -d /run/systemd/system ]]; }

# ---------------------------------------------------------------- install ---

install_packages() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        say "apt packages already installed"
        return
    fi
    say "installing apt packages: ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

create_user() {
    local group
    for group in "${DEVICE_GROUPS[@]}" "$SERVICE_USER"; do
        if ! getent group "$group" >/dev/null; then
            say "creating group $group"
            groupadd --system "$group"
        fi
    done
    local joined
    joined=$(IFS=,; echo "${DEVICE_GROUPS[*]}")
    if id -u "$SERVICE_USER" >/dev/null 2>&1; then
        say "user $SERVICE_USER exists; making sure it is in $joined"
        usermod --append --groups "$joined" "$SERVICE_USER"
    else
        say "creating system user $SERVICE_USER (groups $joined)"
        # Home is the state directory, which systemd creates (StateDirectory=).
        useradd --system --gid "$SERVICE_USER" --groups "$joined" \
            --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "Stretch Companion" "$SERVICE_USER"
    fi
}

install_venv() {
    [[ -f $REPO/pyproject.toml ]] || die "no pyproject.toml in $REPO: run the script from the project checkout"
    if [[ ! -x $VENV/bin/python ]]; then
        say "creating virtualenv $VENV"
        mkdir -p "$PREFIX"
        python3 -m venv --system-site-packages "$VENV"
    else
        say "virtualenv $VENV exists"
    fi
    say "installing stretch-companion[pi] from $REPO into $VENV"
    # A local directory is always rebuilt and reinstalled, so a re-run upgrades.
    local extras=pi
    if web_port >/dev/null; then extras=pi,web; fi
    "$VENV/bin/pip" install --disable-pip-version-check --no-cache-dir "${REPO}[$extras]"
    "$VENV/bin/python" -c 'import lgpio' 2>/dev/null ||
        warn "lgpio cannot be imported in $VENV: the GPIO pins will not work (is python3-lgpio installed?)"
}

write_config() {
    mkdir -p "$CONF_DIR"
    chmod 0755 "$CONF_DIR"
    if [[ -e $CONF ]]; then
        say "keeping existing $CONF"
        return
    fi
    say "writing default configuration to $CONF"
    local tmp
    tmp=$(mktemp "$CONF_DIR/.config.toml.XXXXXX")
    if ! "$VENV/bin/stretch-companion" config --default >"$tmp"; then
        rm -f "$tmp"
        die "'stretch-companion config --default' failed"
    fi
    chmod 0644 "$tmp"
    mv -f "$tmp" "$CONF"
}

sensor_enabled() {
    # true when the [sensor] table of the config has `enabled = true`
    [[ -r $CONF ]] || return 1
    awk '
        /^[[:space:]]*\[/ { in_sensor = ($0 ~ /^[[:space:]]*\[sensor\][[:space:]]*(#.*)?$/) }
        in_sensor && /^[[:space:]]*enabled[[:space:]]*=[[:space:]]*true([[:space:]]|#|$)/ { found = 1 }
        END { exit !found }
    ' "$CONF"
}

web_port() {
    # prints the port of [web] listen and succeeds when the page is on
    [[ -r $CONF ]] || return 1
    python3 - "$CONF" <<'PY'
import sys, tomllib
try:
    with open(sys.argv[1], "rb") as f:
        web = tomllib.load(f).get("web", {})
except (OSError, ValueError):
    sys.exit(1)
if web.get("enabled") is not True:
    sys.exit(1)
print(str(web.get("listen", "0.0.0.0:8321")).rpartition(":")[2])
PY
}

setup_web() {
    local port
    if ! port=$(web_port); then
        rm -f "$WEB_DROPIN"
        return
    fi
    say "phone page on (port $port): opening only that port; config writable by $SERVICE_USER"
    mkdir -p "$(dirname "$WEB_DROPIN")"
    sed "s/@PORT@/$port/" "$REPO/systemd/web.conf" >"$WEB_DROPIN"
    chmod 0644 "$WEB_DROPIN"
    chgrp "$SERVICE_USER" "$CONF_DIR" "$CONF"
    chmod 0775 "$CONF_DIR"
    chmod 0664 "$CONF"
    say "pair a phone with the code the box says, or the one 'sudo $VENV/bin/$APP web-code' prints"
}

enable_i2c() {
    if ! sensor_enabled; then
        say "tension sensor off in $CONF: leaving I2C as it is"
        return
    fi
    if ! command -v raspi-config >/dev/null; then
        warn "tension sensor on, but raspi-config is missing: enable I2C yourself (dtparam=i2c_arm=on)"
        return
    fi
    say "tension sensor on: enabling I2C"
    raspi-config nonint do_i2c 0 # 0 means "enable"
    if [[ ! -e /dev/i2c-1 ]]; then
        warn "/dev/i2c-1 is not there yet: reboot before using the sensor"
    fi
}

install_unit() {
    say "installing $UNIT_DEST"
    install -m 0644 "$REPO/systemd/$UNIT" "$UNIT_DEST"
    if ! have_systemd; then
        warn "systemd is not running (chroot or image build?): enable it later with 'systemctl enable --now $UNIT'"
        systemctl enable "$UNIT" || true
        return
    fi
    systemctl daemon-reload
    systemctl enable "$UNIT"
    # restart rather than start, so that a re-run picks up new code and unit.
    say "starting $UNIT"
    if ! systemctl restart "$UNIT"; then
        systemctl --no-pager --lines=20 status "$UNIT" || true
        die "$UNIT did not start; see 'journalctl -u $APP' (exit status 78 means a bad $CONF)"
    fi
    say "running: 'systemctl status $APP', 'journalctl -u $APP -f'"
}

do_install() {
    if [[ -r /etc/os-release ]]; then
        # shellcheck disable=SC1091
        . /etc/os-release
        if [[ ${VERSION_CODENAME:-} != bookworm ]]; then
            warn "made for Raspberry Pi OS Bookworm; this is ${PRETTY_NAME:-unknown}"
        fi
    fi
    umask 022 # the venv and the config must be readable by $SERVICE_USER
    install_packages
    create_user
    install_venv
    write_config
    enable_i2c
    setup_web
    install_unit
    say "done"
}

# -------------------------------------------------------------- uninstall ---

do_uninstall() {
    local purge=$1
    if [[ -e $UNIT_DEST ]] || systemctl cat "$UNIT" >/dev/null 2>&1; then
        say "stopping and disabling $UNIT"
        if have_systemd; then
            systemctl disable --now "$UNIT" || true
        else
            systemctl disable "$UNIT" || true
        fi
    fi
    rm -f "$UNIT_DEST" "$WEB_DROPIN"
    if have_systemd; then
        systemctl daemon-reload
        systemctl reset-failed "$UNIT" 2>/dev/null || true
    fi
    say "removing $PREFIX and $CACHE_DIR"
    rm -rf -- "$PREFIX" "$CACHE_DIR"
    if id -u "$SERVICE_USER" >/dev/null 2>&1; then
        say "removing user $SERVICE_USER"
        userdel "$SERVICE_USER"
    fi
    if getent group "$SERVICE_USER" >/dev/null; then
        groupdel "$SERVICE_USER" || warn "group $SERVICE_USER kept (still in use)"
    fi
    if [[ $purge == yes ]]; then
        say "purging history $STATE_DIR and config $CONF_DIR"
        rm -rf -- "$STATE_DIR" "$CONF_DIR"
    else
        # On a later install systemd hands the history to the new user (StateDirectory=).
        if [[ -e $STATE_DIR ]]; then
            say "kept history in $STATE_DIR (delete it with --uninstall --purge)"
        fi
        if [[ -e $CONF_DIR ]]; then
            say "kept config in $CONF_DIR"
        fi
    fi
    say "uninstalled (apt packages, the gpio/i2c/audio groups and I2C settings are left as they are)"
}

# ------------------------------------------------------------------- main ---

main() {
    local uninstall=no purge=no arg
    for arg in "$@"; do
        case $arg in
        --uninstall) uninstall=yes ;;
        --purge) purge=yes ;;
        -h | --help)
            usage
            return 0
            ;;
        *)
            usage >&2
            die "unknown option: $arg"
            ;;
        esac
    done
    if [[ $purge == yes && $uninstall == no ]]; then
        die "--purge deletes the history and only goes with --uninstall"
    fi
    ((EUID == 0)) || die "run as root: sudo $0 $*"
    if [[ $uninstall == yes ]]; then
        do_uninstall "$purge"
    else
        do_install
    fi
}

main "$@"
